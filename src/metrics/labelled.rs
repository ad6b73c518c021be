//! Per-peer and per-handler families. Label cardinality stays bounded: the
//! first [`MAX_LABELLED`] peers (by id) and handlers (by name) get their own
//! series; the rest are summed into `peer="other"` / `handler="other"`.

use std::collections::BTreeMap;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use crate::stats::{HandlerStat, LATENCY_BUCKETS, LinkCounterValues, PeerStat};

/// Series per family before the rest is summed into `other`.
pub(crate) const MAX_LABELLED: usize = 64;

/// (peer, transport) -> counters, at most `MAX_LABELLED` peers named.
fn peer_series(peers: &[PeerStat]) -> BTreeMap<(String, String), LinkCounterValues> {
    let mut out = BTreeMap::<(String, String), LinkCounterValues>::new();
    for (i, peer) in peers.iter().enumerate() {
        let name = if i < MAX_LABELLED {
            peer.instance_id.to_string()
        } else {
            "other".to_owned()
        };
        let entry = out.entry((name, peer.transport.to_string())).or_default();
        entry.accumulate(&peer.counters);
    }
    out
}

/// `am_peer_<counter>_total{peer,transport}` for every link counter.
pub(crate) fn encode_peers(enc: &mut DescriptorEncoder, peers: &[PeerStat]) -> std::fmt::Result {
    let series = peer_series(peers);
    for (index, (name, help, _)) in LinkCounterValues::default()
        .fields()
        .into_iter()
        .enumerate()
    {
        let metric = format!("am_peer_{name}");
        let mut family = enc.encode_descriptor(&metric, help, None, MetricType::Counter)?;
        for ((peer, transport), values) in &series {
            let labels = [("peer", peer.as_str()), ("transport", transport.as_str())];
            let value = values.fields()[index].2;
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A per-handler counter family: name, help, and how to read it.
type HandlerCounter = (&'static str, &'static str, fn(&HandlerStat) -> u64);

/// `am_handler_calls_total`, `am_handler_errors_total` and the
/// `am_handler_latency_seconds` histogram, labelled by handler.
pub(crate) fn encode_handlers(
    enc: &mut DescriptorEncoder,
    handlers: &[HandlerStat],
) -> std::fmt::Result {
    let mut series = BTreeMap::<String, HandlerStat>::new();
    for (i, h) in handlers.iter().enumerate() {
        let name = if i < MAX_LABELLED {
            h.name.clone()
        } else {
            "other".to_owned()
        };
        let entry = series.entry(name).or_default();
        entry.calls += h.calls;
        entry.errors += h.errors;
        entry.latency_sum_us += h.latency_sum_us;
        entry.latency_buckets.resize(LATENCY_BUCKETS, 0);
        for (sum, b) in entry.latency_buckets.iter_mut().zip(&h.latency_buckets) {
            *sum += b;
        }
    }
    let counters: [HandlerCounter; 2] = [
        (
            "am_handler_calls",
            "Invocations that ran the handler.",
            |h| h.calls,
        ),
        (
            "am_handler_errors",
            "Handler runs that failed or panicked.",
            |h| h.errors,
        ),
    ];
    for (name, help, get) in counters {
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (handler, stat) in &series {
            let labels = [("handler", handler.as_str())];
            ConstCounter::new(get(stat)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = enc.encode_descriptor(
        "am_handler_latency_seconds",
        "Time spent in the handler.",
        None,
        MetricType::Histogram,
    )?;
    for (handler, stat) in &series {
        let labels = [("handler", handler.as_str())];
        let buckets: Vec<(f64, u64)> = stat
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                // Per-bucket counts: the encoder makes them cumulative.
                let upper = HandlerStat::bucket_upper_us(i).map_or(f64::MAX, |us| us as f64 / 1e6);
                (upper, n)
            })
            .collect();
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                stat.latency_sum_us as f64 / 1e6,
                stat.calls,
                &buckets,
                None,
            )?;
    }
    Ok(())
}
