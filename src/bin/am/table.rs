//! Plain-text tables for the terminal.

use std::fmt::Write;

use active_message::StatsSnapshot;

/// The counters of `now` as a two- or three-column table; with `before`,
/// the third column is how much each counter moved since then.
pub fn stats_table(now: &StatsSnapshot, before: Option<&StatsSnapshot>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "instance  {}", now.instance_id);
    let rows = counter_rows(now);
    let old = before.map(counter_rows);
    let _ = writeln!(out, "{:<24} {:>14} {:>10}", "counter", "value", "change");
    for (i, (name, value)) in rows.iter().enumerate() {
        let change = old
            .as_ref()
            .and_then(|o| o.get(i))
            .map(|(_, v)| format!("{:+}", i128::from(*value) - i128::from(*v)))
            .unwrap_or_default();
        let _ = writeln!(out, "{name:<24} {value:>14} {change:>10}");
    }
    let _ = writeln!(out, "{:<24} {:>14}", "calls_in_flight", now.calls_in_flight);
    let _ = writeln!(
        out,
        "{:<24} {:>14}",
        "handlers_running", now.handlers_running
    );
    let _ = writeln!(out, "{:<24} {:>14}", "late_replies", now.late_replies);
    let _ = writeln!(out, "peers ({})", now.peers.len());
    for peer in &now.peers {
        let way = if peer.inbound { "in" } else { "out" };
        let c = &peer.counters;
        let _ = writeln!(
            out,
            "  {}  {:<5} {:<3} out {} in {} timeouts {} protocol_errors {}",
            peer.instance_id,
            peer.transport,
            way,
            c.messages_out,
            c.messages_in,
            c.timeouts,
            c.protocol_errors
        );
    }
    out
}

/// Every counter as (name, value), in name order, read through
/// serde so a counter added to the library shows up here unchanged.
fn counter_rows(snapshot: &StatsSnapshot) -> Vec<(String, u64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&snapshot.counters) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| Some((k, v.as_u64()?)))
        .collect()
}
