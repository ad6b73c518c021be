//! Per-handler counters and a fixed-bucket latency histogram, kept with the
//! handler's registry entry: recording a call is three relaxed atomic adds,
//! with no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Number of latency buckets: bucket `i` counts calls that took less than
/// `2^i` microseconds (and at least `2^(i-1)`); the last one also takes
/// everything slower (about 8.4 s and up).
pub const LATENCY_BUCKETS: usize = 24;

/// Live counters of one handler.
#[derive(Debug)]
pub(crate) struct HandlerStats {
    calls: AtomicU64,
    errors: AtomicU64,
    latency_sum_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for HandlerStats {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The bucket for a latency: `ceil(log2(us + 1))`, capped at the last.
fn bucket_of(us: u64) -> usize {
    let bits = (u64::BITS - us.leading_zeros()) as usize;
    bits.min(LATENCY_BUCKETS - 1)
}

impl HandlerStats {
    /// One call ran for `elapsed` and failed or not.
    pub(crate) fn record(&self, elapsed: Duration, failed: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Relaxed: statistics, not synchronisation.
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// `calls` calls (`errors` of them failed) ran back to back in one run
    /// of frames for `total`: each is counted at the run's mean latency.
    pub(crate) fn record_run(&self, calls: u64, errors: u64, total: Duration) {
        if calls == 0 {
            return;
        }
        let us = u64::try_from(total.as_micros()).unwrap_or(u64::MAX);
        // Relaxed: statistics, not synchronisation.
        self.calls.fetch_add(calls, Ordering::Relaxed);
        if errors != 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.buckets[bucket_of(us / calls)].fetch_add(calls, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub(crate) fn values(&self, name: &str) -> HandlerStat {
        HandlerStat {
            name: name.to_owned(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            latency_buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// One handler's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerStat {
    /// The handler's name.
    pub name: String,
    /// Invocations that ran the handler (inline or as a task).
    #[serde(default)]
    pub calls: u64,
    /// Of those, the ones that returned an error or panicked.
    #[serde(default)]
    pub errors: u64,
    /// Total time spent in the handler, in microseconds.
    #[serde(default)]
    pub latency_sum_us: u64,
    /// Calls per latency bucket (not cumulative): entry `i` counts calls
    /// under [`HandlerStat::bucket_upper_us`]`(i)` microseconds and not
    /// under the previous bound; the last entry has no upper bound.
    #[serde(default)]
    pub latency_buckets: Vec<u64>,
}

impl HandlerStat {
    /// Upper bound (exclusive) of latency bucket `i` in microseconds;
    /// `None` for the last bucket (unbounded).
    pub fn bucket_upper_us(i: usize) -> Option<u64> {
        (i + 1 < LATENCY_BUCKETS).then(|| 1u64 << i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_log2_bucket() {
        let stats = HandlerStats::default();
        for us in [0, 1, 3, 4, 1000, u64::MAX / 2] {
            stats.record(Duration::from_micros(us), us == 3);
        }
        let v = stats.values("h");
        assert_eq!((v.calls, v.errors), (6, 1));
        let mut expected = vec![0u64; LATENCY_BUCKETS];
        // 0 -> <1; 1 -> <2; 3 -> <4; 4 -> <8; 1000 -> <1024; huge -> last.
        for b in [0, 1, 2, 3, 10, LATENCY_BUCKETS - 1] {
            expected[b] += 1;
        }
        assert_eq!(v.latency_buckets, expected);
        assert_eq!(HandlerStat::bucket_upper_us(10), Some(1024));
        assert_eq!(HandlerStat::bucket_upper_us(LATENCY_BUCKETS - 1), None);
    }

    #[test]
    fn a_run_counts_every_call_at_its_mean_latency() {
        let stats = HandlerStats::default();
        stats.record_run(0, 0, Duration::from_secs(1));
        stats.record_run(4, 1, Duration::from_micros(40));
        let v = stats.values("h");
        assert_eq!((v.calls, v.errors, v.latency_sum_us), (4, 1, 40));
        // 10 us each -> the bucket below 16 us.
        assert_eq!(v.latency_buckets[4], 4);
        assert_eq!(v.latency_buckets.iter().sum::<u64>(), 4);
    }
}
