//! At most one log line per interval for events a peer can trigger at will
//! (malformed frames): a hostile or broken peer must not flood the logs,
//! and the lines it suppresses are counted in the next one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A lock-free "once per interval" gate.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval_ms: u64,
    /// Milliseconds (since [`epoch`]) before which nothing more is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl RateLimit {
    /// One event let through per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log this event now; `Some(n)` with the events suppressed
    /// since the last one logged.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.allow_at(now)
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        // Relaxed: a statistic gate; at worst two threads log in one interval.
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.interval_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_and_the_rest_counted() {
        let gate = RateLimit::new(Duration::from_secs(1));
        assert_eq!(gate.allow_at(10), Some(0));
        assert_eq!(gate.allow_at(20), None);
        assert_eq!(gate.allow_at(1009), None);
        assert_eq!(gate.allow_at(1010), Some(2));
        assert_eq!(gate.allow_at(1011), None);
        assert_eq!(gate.allow_at(5000), Some(1));
    }
}
