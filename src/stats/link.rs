//! Per-link counters: held by the link object itself, so the message path
//! bumps a relaxed atomic it already has a reference to (no map lookup, no
//! lock, no allocation per message).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use shm_ring::HandleCounters;

use super::counters;

counters! {
    /// What the link's own send and receive paths count.
    pub(crate) struct Tally;
    /// A copy of one link's counters at one moment: what
    /// [`PeerStat::counters`](crate::PeerStat::counters) reports.
    struct LinkCounterValues;
    messages_out => "Frames written to the link (invocations, replies, control frames).",
    bytes_out => "Wire bytes of the frames written (headers included).",
    messages_in => "Frames read from the link.",
    bytes_in => "Wire bytes of the frames read (headers included).",
    send_errors => "Sends on this link that failed (peer lost, frame too large, link full for a try-send).",
    timeouts => "Sends on this link that ran out of their caller's deadline waiting for room.",
    protocol_errors => "Malformed frames from this peer, dropped.",
    ring_full_waits => "Shared memory: writes that found the ring full and had to wait for space.",
    parks => "Shared memory: times the reader parked on its doorbell after its spin budget.",
    doorbell_rings => "Shared memory: doorbell writes this side made to wake its parked peer.",
    large_frames => "Shared memory: frames too large for a ring record, sent on the large-frame path.",
    large_bytes => "Shared memory: bytes of the frames sent on the large-frame path.",
}

/// Live counters of one link. A transport keeps one in each link and hands it
/// out through [`PeerLink::counters`](crate::transport::PeerLink::counters);
/// the runtime then reports them per peer in `stats()`, `_stats` and the
/// Prometheus exporter.
#[derive(Debug, Default)]
pub struct LinkCounters {
    tally: Tally,
    /// Frames written by one writer at a time (see
    /// [`LinkCounters::record_sent_by_sole_writer`]), added to `tally`'s
    /// `messages_out` and `bytes_out` when read.
    sole_sent: SoleSent,
    /// The ring handles' own counters (shared-memory links only).
    rings: OnceLock<RingHandles>,
}

/// Sent-frame counts with one writer at a time.
#[derive(Debug, Default)]
struct SoleSent {
    messages: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug)]
struct RingHandles {
    producer: Arc<HandleCounters>,
    consumer: Arc<HandleCounters>,
}

impl LinkCounters {
    /// Counters that also read a ring pair's wait and doorbell counters.
    pub(crate) fn with_rings(producer: Arc<HandleCounters>, consumer: Arc<HandleCounters>) -> Self {
        let this = Self::default();
        let _ = this.rings.set(RingHandles { producer, consumer });
        this
    }

    /// One frame of `bytes` wire bytes was written.
    #[inline]
    pub fn record_sent(&self, bytes: usize) {
        add(&self.tally.messages_out, 1);
        add(&self.tally.bytes_out, bytes as u64);
    }

    /// One frame of `bytes` wire bytes was written by the link's sole writer
    /// of the moment: the holder of the lock that every caller of this
    /// method holds (a shared-memory link's producer). A load and a store
    /// instead of a read-modify-write: on x86 a locked add waits for the
    /// frame's own stores into the ring to drain first, which cost a
    /// one-way stream more than the rest of its write.
    #[inline]
    pub(crate) fn record_sent_by_sole_writer(&self, bytes: usize) {
        bump_sole(&self.sole_sent.messages, 1);
        bump_sole(&self.sole_sent.bytes, bytes as u64);
    }

    /// One frame of `bytes` wire bytes was read.
    #[inline]
    pub fn record_received(&self, bytes: usize) {
        add(&self.tally.messages_in, 1);
        add(&self.tally.bytes_in, bytes as u64);
    }

    /// `frames` frames of `bytes` wire bytes in all were read (one run of
    /// records, counted once).
    #[inline]
    pub(crate) fn record_received_run(&self, frames: u64, bytes: u64) {
        if frames != 0 {
            add(&self.tally.messages_in, frames);
            add(&self.tally.bytes_in, bytes);
        }
    }

    /// One frame of `bytes` bytes was sent on the large-frame path (counted
    /// as sent too).
    #[inline]
    pub fn record_large(&self, bytes: usize) {
        self.record_sent(bytes);
        add(&self.tally.large_frames, 1);
        add(&self.tally.large_bytes, bytes as u64);
    }

    /// A send failed (not a timeout).
    pub(crate) fn record_send_error(&self) {
        add(&self.tally.send_errors, 1);
    }

    /// A send ran out of its caller's deadline.
    pub(crate) fn record_timeout(&self) {
        add(&self.tally.timeouts, 1);
    }

    /// A malformed frame from this peer was dropped.
    pub fn record_protocol_error(&self) {
        add(&self.tally.protocol_errors, 1);
    }

    /// Reads every counter.
    pub fn values(&self) -> LinkCounterValues {
        let mut values = self.tally.load();
        // Relaxed: statistics, not synchronisation.
        values.messages_out += self.sole_sent.messages.load(Ordering::Relaxed);
        values.bytes_out += self.sole_sent.bytes.load(Ordering::Relaxed);
        if let Some(rings) = self.rings.get() {
            let (p, c) = (rings.producer.values(), rings.consumer.values());
            values.ring_full_waits = p.waits;
            values.parks = c.parks;
            values.doorbell_rings = p.doorbell_rings + c.doorbell_rings;
        }
        values
    }
}

/// Adds `n` to a counter that has one writer at a time (its callers hold
/// one lock), so no update is lost between the load and the store.
#[inline]
fn bump_sole(counter: &AtomicU64, n: u64) {
    // Relaxed: statistics, not synchronisation; the writers' lock orders
    // one writer's store before the next one's load.
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

#[inline]
fn add(counter: &AtomicU64, n: u64) {
    // Relaxed: statistics, not synchronisation.
    counter.fetch_add(n, Ordering::Relaxed);
}
