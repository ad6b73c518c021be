//! Prometheus exposition of a manager's counters (feature `metrics`).
//!
//! [`register`] adds a collector to a `prometheus_client` registry that the
//! application owns, so our metrics sit beside its own; every scrape reads
//! [`ActiveMessageManager::stats`] afresh (relaxed loads, no lock on the
//! message path). [`MetricsServer`] serves a registry at `/metrics` over
//! HTTP for tools without a server of their own (`am serve --metrics`).
//!
//! Names: every counter of [`crate::stats::CounterValues`] as
//! `am_<name>_total`; gauges `am_calls_in_flight`, `am_handlers_running`,
//! `am_peers{transport}`; counter `am_late_replies_total`. Per link:
//! `am_peer_<counter>_total{peer,transport}` for every
//! [`crate::LinkCounterValues`] field. Per handler:
//! `am_handler_calls_total{handler}`, `am_handler_errors_total{handler}` and
//! the histogram `am_handler_latency_seconds{handler}`. At most 64 peers and
//! 64 handlers are named; the rest are summed under `other`.
//! `docs/counters.md` says where each counter is incremented.

mod http;
mod labelled;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use http::{MetricsError, MetricsServer};

use crate::ActiveMessageManager;

/// Reads a manager's statistics at each scrape.
#[derive(Clone)]
struct ManagerCollector {
    // A clone keeps the manager's state alive as long as the registry: a
    // scrape after shutdown reads the final values instead of failing.
    manager: ActiveMessageManager,
}

impl std::fmt::Debug for ManagerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerCollector")
            .field("instance", &self.manager.instance_id())
            .finish()
    }
}

/// Registers `manager`'s metrics (prefix `am_`) in `registry`.
pub fn register(registry: &mut Registry, manager: &ActiveMessageManager) {
    registry.register_collector(Box::new(ManagerCollector {
        manager: manager.clone(),
    }));
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(v);
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: usize) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ManagerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let stats = self.manager.stats();
        for (name, help, value) in stats.counters.fields() {
            // The text encoder appends `_total` to counters.
            counter(&mut enc, &format!("am_{name}"), help, value)?;
        }
        let late = "Replies that arrived after their caller stopped waiting.";
        counter(&mut enc, "am_late_replies", late, stats.late_replies)?;
        let in_flight = "Outbound calls awaiting a reply.";
        gauge(
            &mut enc,
            "am_calls_in_flight",
            in_flight,
            stats.calls_in_flight,
        )?;
        let running = "Handlers running now.";
        gauge(
            &mut enc,
            "am_handlers_running",
            running,
            stats.handlers_running,
        )?;
        // Distinct peers: one linked both ways counts once.
        let links = stats
            .peers
            .iter()
            .map(|p| (p.transport.to_string(), p.instance_id));
        let distinct = links.collect::<std::collections::BTreeSet<_>>();
        let mut by_transport = std::collections::BTreeMap::<String, i64>::new();
        for (transport, _) in distinct {
            *by_transport.entry(transport).or_default() += 1;
        }
        let peers = ConstGauge::new(0i64);
        let mut family = enc.encode_descriptor(
            "am_peers",
            "Connected peers by transport.",
            None,
            peers.metric_type(),
        )?;
        for (transport, count) in by_transport {
            let labels = [("transport", transport)];
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        labelled::encode_peers(&mut enc, &stats.peers)?;
        labelled::encode_handlers(&mut enc, &stats.handlers)
    }
}
