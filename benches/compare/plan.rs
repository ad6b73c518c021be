//! How long each case runs: iteration counts and time budgets of a full or quick run
//! (shared with the `peers/` comparison crate, which includes this file).

use std::time::Duration;

/// Payload sizes of the one-way and memcpy cases.
pub const SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];
/// Sizes of the large one-way cases (pooled area, default configuration),
/// compared with a memcpy of the same size.
pub const LARGE: [usize; 2] = [16 << 20, 256 << 20];

/// Iteration counts: full or quick (`COMPARE_QUICK=1`).
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// A smoke run (`COMPARE_QUICK=1`).
    pub quick: bool,
}

impl Plan {
    /// `full` normally, `full / 10` (at least 1) in a quick run.
    pub fn n(self, full: u64) -> u64 {
        if self.quick { (full / 10).max(1) } else { full }
    }

    /// Warm-up and most timed round trips for a case whose trip costs about
    /// `trip_us`: enough for the time budget, within [2 000, 200 000].
    pub fn trips(self, trip_us: f64) -> (u64, u64) {
        let iters = ((self.budget().as_secs_f64() * 1e6 / trip_us) as u64).clamp(2_000, 200_000);
        (iters / 10, iters)
    }

    /// Time budget of the timed round trips of one case.
    pub fn budget(self) -> Duration {
        Duration::from_millis(if self.quick { 200 } else { 1500 })
    }

    /// Messages in the calibration batch of a one-way stream of `size`-byte messages.
    pub fn first(self, size: usize) -> u64 {
        ((4u64 << 20) / size as u64).clamp(8, 2000)
    }

    /// Target duration of one batch of a one-way stream.
    pub fn batch_time(self) -> Duration {
        Duration::from_millis(if self.quick { 30 } else { 200 })
    }

    /// Timed batches per one-way case.
    pub fn batches(self) -> u64 {
        if self.quick { 2 } else { 5 }
    }
}
