//! Counters: cheap relaxed atomics bumped on the message path, read by
//! `stats()` and the `_stats` system handler.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::transport::TransportKind;

macro_rules! counters {
    ($($name:ident => $doc:literal),* $(,)?) => {
        /// Live counters of one manager.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(#[doc = $doc] pub(crate) $name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct CounterValues {
            $(#[doc = $doc] #[serde(default)] pub $name: u64,)*
        }

        impl Counters {
            /// Reads every counter.
            pub(crate) fn values(&self) -> CounterValues {
                // Relaxed: counters are statistics, not synchronisation.
                CounterValues { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl CounterValues {
            /// Every counter as (name, description, value), in declaration
            /// order: what exporters and tables iterate over.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc, self.$name),)*]
            }
        }
    };
}

counters! {
    messages_sent => "Invocations sent (one-way, confirmed, requests).",
    messages_received => "Invocations received.",
    raw_bytes_sent => "Raw (non-archive) payload bytes sent in invocations.",
    bytes_received => "Payload bytes received in invocations.",
    replies_sent => "Replies (acks, responses, errors, receipts) sent.",
    handler_errors => "Handlers that returned an error.",
    unknown_handler => "Invocations naming no registered handler.",
    refused => "Invocations refused (reserved names, shutting down).",
    protocol_errors => "Malformed frames dropped.",
    peers_lost => "Links lost.",
    timeouts => "Calls that ended in a timeout.",
    expired => "Invocations not run because their caller's deadline had passed.",
}

impl Counters {
    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One connected peer and the transport that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStat {
    /// The peer.
    pub instance_id: InstanceId,
    /// Its transport.
    pub transport: TransportKind,
}

/// A manager's statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// The manager.
    pub instance_id: InstanceId,
    /// Counter values.
    pub counters: CounterValues,
    /// Replies that arrived after their caller stopped waiting.
    pub late_replies: u64,
    /// Outbound calls awaiting a reply.
    pub calls_in_flight: usize,
    /// Handlers running now.
    pub handlers_running: usize,
    /// Connected peers, sorted by id.
    pub peers: Vec<PeerStat>,
}
