//! Counters: cheap relaxed atomics bumped on the message path, read by
//! `stats()` and the `_stats` system handler.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;
use crate::transport::TransportKind;

mod handler;
mod link;

pub(crate) use handler::HandlerStats;
pub use handler::{HandlerStat, LATENCY_BUCKETS};
pub use link::{LinkCounterValues, LinkCounters};

/// Declares a live counter struct (relaxed atomics) and its value twin.
macro_rules! counters {
    ($(#[$live_doc:meta])* $vis:vis struct $live:ident;
     $(#[$values_doc:meta])* struct $values:ident;
     $($name:ident => $doc:literal),* $(,)?) => {
        $(#[$live_doc])*
        #[derive(Debug, Default)]
        $vis struct $live {
            $(#[doc = $doc] pub(crate) $name: AtomicU64,)*
        }

        $(#[$values_doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $values {
            $(#[doc = $doc] #[serde(default)] pub $name: u64,)*
        }

        impl $live {
            /// Reads every counter.
            pub(crate) fn load(&self) -> $values {
                // Relaxed: counters are statistics, not synchronisation.
                $values { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl $values {
            /// Every counter as (name, description, value), in declaration
            /// order: what exporters and tables iterate over.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc, self.$name),)*]
            }

            /// Adds `other` field by field (aggregating).
            pub fn accumulate(&mut self, other: &Self) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

pub(crate) use counters;

counters! {
    /// Live counters of one manager.
    pub(crate) struct Counters;
    /// A copy of a manager's counters at one moment.
    struct CounterValues;
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
    /// Reads every counter.
    pub(crate) fn values(&self) -> CounterValues {
        self.load()
    }

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
    /// The peer opened this link (one of our callers); `false` for links
    /// this manager opened. A peer linked both ways is listed twice.
    #[serde(default)]
    pub inbound: bool,
    /// The link's counters (zero for transports that keep none, see
    /// [`PeerLink::counters`](crate::transport::PeerLink::counters)).
    #[serde(default)]
    pub counters: LinkCounterValues,
    /// Calls to this peer awaiting a reply.
    #[serde(default)]
    pub calls_in_flight: usize,
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
    /// Registered handlers and their calls, errors and latencies, by name.
    #[serde(default)]
    pub handlers: Vec<HandlerStat>,
}
