//! Results of interleaved rounds: per-case summary, per-round medians, per-round
//! ratios (the host moves the vCPUs between fast and slow placements every few
//! seconds, so only figures from one round compare cleanly), and the CSV.

use std::fmt::Write as _;

use crate::report::{Metric, Row, fmt_ns};

/// Ratios reported per round: (case, baseline, what it answers).
pub const RATIOS: [(&str, &str, &str); 8] = [
    (
        "am_shm_spin_rt",
        "iox_rr",
        "AM Spin round trip / iceoryx2 request-response (bar < 1.0x every round)",
    ),
    (
        "am_shm_spin_rt",
        "ring_pp_spin",
        "AM Spin round trip / our ring ping-pong (bar <= 3x)",
    ),
    (
        "am_shm_adaptive_rt",
        "am_shm_spin_rt",
        "AM default (Adaptive) / AM Spin (bar <= 1.2x)",
    ),
    (
        "iox_rr",
        "ring_pp_spin",
        "iceoryx2 request-response / our ring ping-pong",
    ),
    (
        "iox_ps",
        "ring_pp_spin",
        "iceoryx2 publish-subscribe / our ring ping-pong",
    ),
    (
        "ring_pp_spin",
        "rtrb",
        "our ring (2 processes) / rtrb (2 threads)",
    ),
    ("ring_pp_spin", "floor", "our ring / atomic floor"),
    (
        "rtrb",
        "floor",
        "rtrb (2 threads) / atomic floor (2 processes)",
    ),
];

/// Median and p99 (ns) of a latency row.
fn lat(row: &Row) -> Option<(u64, u64)> {
    match row.metric {
        Ok(Metric::Latency { median, p99 }) => Some((median, p99)),
        _ => None,
    }
}

/// The row `key` of one round.
fn find<'a>(round: &'a [Row], key: &str) -> Option<&'a Row> {
    round.iter().find(|r| r.key == key)
}

fn median_f(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// Every case key in the order of its first appearance.
fn keys(rounds: &[Vec<Row>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in rounds.iter().flatten() {
        if !out.iter().any(|(k, _)| *k == r.key) {
            out.push((r.key.clone(), r.label.clone()));
        }
    }
    out
}

/// A table as (aligned text, markdown).
fn render(head: &[String], body: &[Vec<String>]) -> (String, String) {
    let all: Vec<&[String]> = std::iter::once(head)
        .chain(body.iter().map(Vec::as_slice))
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let (mut text, mut md) = (String::new(), String::new());
    for (i, r) in all.iter().enumerate() {
        for (c, cell) in r.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            let _ = if c == 0 || c + 1 == r.len() {
                write!(text, "{cell}{pad}  ")
            } else {
                write!(text, "{pad}{cell}  ")
            };
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        let _ = writeln!(md, "| {} |", r.join(" | "));
        if i == 0 {
            text.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            text.push('\n');
            let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
        }
    }
    (text, md)
}

/// Per case: rounds, median of the per-round medians (and their range), median of
/// the per-round p99s, the notes (counters) of the last round.
pub fn summary(rounds: &[Vec<Row>]) -> (String, String) {
    let head = [
        "case",
        "rounds",
        "median",
        "range of round medians",
        "p99",
        "notes (last round)",
    ];
    let body = keys(rounds)
        .into_iter()
        .map(|(key, label)| {
            let rows: Vec<&Row> = rounds.iter().filter_map(|r| find(r, &key)).collect();
            let lats: Vec<(u64, u64)> = rows.iter().filter_map(|r| lat(r)).collect();
            let mut med: Vec<f64> = lats.iter().map(|l| l.0 as f64).collect();
            let mut p99: Vec<f64> = lats.iter().map(|l| l.1 as f64).collect();
            let lo = med.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = med.iter().copied().fold(0.0, f64::max);
            let why = rows.iter().find_map(|r| r.metric.as_ref().err()).cloned();
            let notes = rows.last().map_or(String::new(), |r| {
                let ex: Vec<String> = r
                    .extras
                    .iter()
                    .map(|(n, v)| format!("{n} {v:.3}"))
                    .collect();
                ex.join(", ")
            });
            match (median_f(&mut med), median_f(&mut p99)) {
                (Some(m), Some(p)) => vec![
                    label,
                    lats.len().to_string(),
                    fmt_ns(m),
                    format!("{} - {}", fmt_ns(lo), fmt_ns(hi)),
                    fmt_ns(p),
                    notes,
                ],
                _ => vec![
                    label,
                    "0".into(),
                    "not measured".into(),
                    "-".into(),
                    "-".into(),
                    why.unwrap_or_default(),
                ],
            }
        })
        .collect::<Vec<_>>();
    render(&head.map(String::from), &body)
}

/// Median of every case in every round (one column per round).
pub fn per_round(rounds: &[Vec<Row>]) -> (String, String) {
    let mut head = vec!["case".to_string()];
    head.extend((1..=rounds.len()).map(|i| format!("round {i}")));
    let body = keys(rounds)
        .into_iter()
        .map(|(key, _)| {
            let mut line = vec![key.clone()];
            line.extend(rounds.iter().map(|r| {
                find(r, &key)
                    .and_then(lat)
                    .map_or("-".into(), |l| fmt_ns(l.0 as f64))
            }));
            line
        })
        .collect::<Vec<_>>();
    render(&head, &body)
}

/// The ratios of [`RATIOS`] in every round, their median and range.
pub fn ratios(rounds: &[Vec<Row>]) -> (String, String) {
    let mut head = vec!["ratio (medians, same round)".to_string()];
    head.extend((1..=rounds.len()).map(|i| format!("r{i}")));
    head.extend(["median".into(), "range".into()]);
    let body = RATIOS
        .iter()
        .map(|(a, b, text)| {
            let per: Vec<Option<f64>> = rounds
                .iter()
                .map(|r| {
                    let (x, y) = (lat(find(r, a)?)?.0, lat(find(r, b)?)?.0);
                    Some(x as f64 / y.max(1) as f64)
                })
                .collect();
            let mut line = vec![(*text).to_string()];
            line.extend(
                per.iter()
                    .map(|x| x.map_or("-".into(), |x| format!("{x:.2}x"))),
            );
            let mut got: Vec<f64> = per.into_iter().flatten().collect();
            let lo = got.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = got.iter().copied().fold(0.0, f64::max);
            match median_f(&mut got) {
                Some(m) => line.extend([format!("{m:.2}x"), format!("{lo:.2}-{hi:.2}x")]),
                None => line.extend(["-".into(), "-".into()]),
            }
            line
        })
        .collect::<Vec<_>>();
    render(&head, &body)
}

/// Every row of every round as CSV.
pub fn csv(rounds: &[Vec<Row>]) -> String {
    let mut out = format!("round,{}\n", crate::report::CSV_HEAD);
    for (i, round) in rounds.iter().enumerate() {
        for row in round {
            let fields: Vec<String> = crate::report::csv_fields(row, round)
                .iter()
                .map(|f| crate::report::csv_field(f))
                .collect();
            let _ = writeln!(out, "{},{}", i + 1, fields.join(","));
        }
    }
    out
}

/// iceoryx2 publishes half of a request-response round trip as its latency; the
/// figure it would publish for this run.
pub fn half_rtt_note(rounds: &[Vec<Row>]) -> String {
    let mut med: Vec<f64> = rounds
        .iter()
        .filter_map(|r| lat(find(r, "iox_rr")?))
        .map(|l| l.0 as f64)
        .collect();
    match median_f(&mut med) {
        Some(m) => format!(
            "Note: iceoryx2's published \"request-response latency\" is half a round trip; \
             by that measure this run's iceoryx2 figure is {} (round trip {}).\n",
            fmt_ns(m / 2.0),
            fmt_ns(m)
        ),
        None => String::new(),
    }
}
