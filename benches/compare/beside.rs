//! A memcpy of a large message's size timed between the batches of a one-way
//! case, in the same process: the host moves its vCPUs between fast and slow
//! placements every few seconds, so a baseline measured minutes earlier (the
//! `memcpy_*` rows) can sit in another placement. Pairing each batch with the
//! copies timed right after it gives per-batch ratios.

use std::time::Instant;

use crate::raw::size_label;
use crate::report::{Metric, Row};

/// Untimed copies before the timed ones of each batch.
const WARM: usize = 2;

/// Copies timed after each batch, enough to cover about 64 MiB (1 to 16).
fn copies(size: usize) -> usize {
    ((64 << 20) / size.max(1)).clamp(1, 16)
}

/// The buffers and the per-batch figures of one case.
pub struct MemcpyBeside {
    size: usize,
    src: Vec<u8>,
    dst: Vec<u8>,
    /// Median ns per copy after each timed batch, in batch order.
    per_batch: Vec<f64>,
}

impl MemcpyBeside {
    /// For `size`-byte messages over shm at or above `large`, else `None`.
    pub fn for_case(transport: &str, size: usize, large: usize) -> Option<MemcpyBeside> {
        (transport == "shm" && size >= large).then(|| MemcpyBeside {
            size,
            src: vec![0x5a; size],
            // Written now, so the first timed copy does not fault its pages.
            dst: vec![1; size],
            // Room for every batch, so sampling never allocates.
            per_batch: Vec::with_capacity(64),
        })
    }

    /// Times this batch's copies into the one reused destination (as the
    /// `memcpy_*` rows do) and keeps their median. Two untimed copies go
    /// first: the batch has pushed both buffers out of the caches, and the
    /// first two copies after it run at about half speed (measured:
    /// 2.3-2.5 ms, then 1.2-1.3 ms for 16 MiB), where the `memcpy_*` rows
    /// and the case itself (rewriting warm buffers) run warm.
    pub fn sample(&mut self) {
        for _ in 0..WARM {
            self.dst.copy_from_slice(std::hint::black_box(&self.src));
            std::hint::black_box(&mut self.dst);
        }
        // On the stack: the case counts this process's allocations meanwhile.
        let mut ns = [0f64; 16];
        let ns = &mut ns[..copies(self.size)];
        for slot in ns.iter_mut() {
            let t = Instant::now();
            self.dst.copy_from_slice(std::hint::black_box(&self.src));
            std::hint::black_box(&mut self.dst);
            *slot = t.elapsed().as_nanos() as f64;
        }
        ns.sort_by(f64::total_cmp);
        self.per_batch.push(ns[ns.len() / 2]);
    }

    /// Adds to `row` (whose batches took `per_msg` ns a message, in batch
    /// order) the per-batch ratios memcpy / message, median and lowest.
    pub fn ratios(&self, row: Row, per_msg: &[f64]) -> Row {
        let mut x: Vec<f64> = self
            .per_batch
            .iter()
            .zip(per_msg)
            .map(|(copy, msg)| copy / msg)
            .collect();
        if x.is_empty() {
            return row;
        }
        x.sort_by(f64::total_cmp);
        row.extra("x memcpy beside, median batch", x[x.len() / 2])
            .extra("x memcpy beside, lowest batch", x[0])
    }

    /// The baseline row, keyed `<case key>_memcpy`.
    pub fn row(&self, case_key: &str, case_label: &str) -> Row {
        let mut ns = self.per_batch.clone();
        ns.sort_by(f64::total_cmp);
        let key = format!("{case_key}_memcpy");
        let label = format!(
            "memcpy {} between the batches of: {case_label}",
            size_label(self.size)
        );
        match (ns.get(ns.len() / 2), ns.last()) {
            (Some(&median), Some(&worst)) => Row::new(
                &key,
                label,
                (ns.len() * copies(self.size)) as u64,
                Metric::Rate {
                    size: self.size,
                    median,
                    worst,
                },
            ),
            _ => Row::skipped(&key, label, "no timed batch"),
        }
    }
}
