//! What the cases interleaved in rounds share: how many rounds, and the
//! per-round ratios written into a row. The host moves its vCPUs between fast
//! and slow placements every few seconds, so two rows timed seconds apart can
//! differ by 20-50 % for that alone; a ratio taken within one round compares
//! two cases in the same placement.

use crate::Plan;
use crate::report::Row;

/// Rounds in a full run.
const FULL: usize = 7;
/// Rounds in a quick run.
const QUICK: usize = 3;

/// How many rounds `plan` makes.
pub fn count(plan: Plan) -> usize {
    if plan.quick { QUICK } else { FULL }
}

/// Which end of the per-round ratios is the worse one, named in the row.
#[derive(Clone, Copy, Debug)]
pub enum Worst {
    /// A slowdown (latency ratio): the highest round.
    Highest,
    /// A speed-up (throughput ratio): the lowest round.
    Lowest,
}

/// Adds `x {base} round N` for every round, then `x {base}, median round` and
/// the worst round (`x {base}, highest round` or `x {base}, lowest round`).
pub fn with_ratios(mut row: Row, base: &str, ratios: &[f64], worst: Worst) -> Row {
    for (i, x) in ratios.iter().enumerate() {
        row = row.extra(&format!("x {base} round {}", i + 1), *x);
    }
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (Some(low), Some(high)) = (sorted.first(), sorted.last()) else {
        return row;
    };
    let median = sorted[sorted.len() / 2];
    let row = row.extra(&format!("x {base}, median round"), median);
    match worst {
        Worst::Highest => row.extra(&format!("x {base}, highest round"), *high),
        Worst::Lowest => row.extra(&format!("x {base}, lowest round"), *low),
    }
}
