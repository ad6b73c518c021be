//! Wait and wake-up counters of one ring handle.
//!
//! They live in the handle's own process-private memory (behind an `Arc`, so a
//! monitor can read them while the handle is busy elsewhere), never in the
//! shared header: a peer cannot forge them, and counting costs no cross-process
//! cache traffic. Plain `std` atomics even under loom: they order nothing, so
//! modelling them would only widen the state space.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one handle ([`Producer`](crate::Producer) or
/// [`Consumer`](crate::Consumer)); read them with [`HandleCounters::values`].
#[derive(Debug, Default)]
pub struct HandleCounters {
    waits: AtomicU64,
    parks: AtomicU64,
    doorbell_rings: AtomicU64,
}

/// A copy of a handle's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleStats {
    /// Waits that found the ring not ready at their first look (a producer:
    /// full; a consumer: empty).
    pub waits: u64,
    /// Times the handle parked on its doorbell (after its spin budget, if any).
    pub parks: u64,
    /// Doorbell writes this handle made to wake its parked peer.
    pub doorbell_rings: u64,
}

impl HandleCounters {
    /// Reads every counter.
    pub fn values(&self) -> HandleStats {
        // Relaxed: statistics, not synchronisation.
        HandleStats {
            waits: self.waits.load(Ordering::Relaxed),
            parks: self.parks.load(Ordering::Relaxed),
            doorbell_rings: self.doorbell_rings.load(Ordering::Relaxed),
        }
    }

    #[inline]
    pub(crate) fn waited(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn parked(&self) {
        self.parks.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn rang(&self) {
        self.doorbell_rings.fetch_add(1, Ordering::Relaxed);
    }
}
