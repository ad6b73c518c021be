//! Counters: cheap relaxed atomics bumped on the message path, read by
//! `stats()` and the `_stats` system handler.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::transport::TransportKind;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one manager.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $($(#[$doc])* pub(crate) $name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct CounterValues {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Reads every counter.
            pub(crate) fn values(&self) -> CounterValues {
                // Relaxed: counters are statistics, not synchronisation.
                CounterValues { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Invocations sent (one-way, confirmed, requests).
    messages_sent,
    /// Invocations received.
    messages_received,
    /// Raw (non-archive) payload bytes sent in invocations.
    raw_bytes_sent,
    /// Payload bytes received in invocations.
    bytes_received,
    /// Replies (acks, responses, errors, receipts) sent.
    replies_sent,
    /// Handlers that returned an error.
    handler_errors,
    /// Invocations naming no registered handler.
    unknown_handler,
    /// Invocations refused (reserved names, shutting down).
    refused,
    /// Malformed frames dropped.
    protocol_errors,
    /// Links lost.
    peers_lost,
    /// Calls that ended in a timeout.
    timeouts,
    /// Invocations not run because their caller's deadline had passed.
    expired,
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
