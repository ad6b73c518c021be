//! The fuzz driver: a seeded PRNG, a time budget, and byte-level mutations
//! of valid inputs (bit flips, truncations, length-field lies, splices).
//!
//! `AM_FUZZ_SECS` sets the budget of each target (default 2 s);
//! `AM_FUZZ_SEED` replays a run: the seed is printed whenever a case fails.

use std::time::{Duration, Instant};

/// Default budget per fuzz target, in seconds.
const DEFAULT_SECS: f64 = 2.0;

/// A seeded case generator that runs until its time budget is spent.
pub struct Fuzz {
    /// The run's PRNG (seeded from `AM_FUZZ_SEED` or the clock).
    pub rng: fastrand::Rng,
    seed: u64,
    target: &'static str,
    deadline: Instant,
    cases: u64,
}

impl Fuzz {
    /// A driver for `target`, budget from `AM_FUZZ_SECS`.
    pub fn new(target: &'static str) -> Self {
        let secs = std::env::var("AM_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(DEFAULT_SECS);
        let seed = std::env::var("AM_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        Self {
            rng: fastrand::Rng::with_seed(seed),
            seed,
            target,
            deadline: Instant::now() + Duration::from_secs_f64(secs),
            cases: 0,
        }
    }

    /// Whether to run another case; at least `min` cases run whatever the clock
    /// says, so a slow machine still exercises every mutation.
    pub fn next_case(&mut self, min: u64) -> bool {
        self.cases += 1;
        self.cases <= min || Instant::now() < self.deadline
    }

    /// Cases run so far.
    #[allow(dead_code, reason = "not every fuzz binary reads it")]
    pub fn cases(&self) -> u64 {
        self.cases
    }
}

impl Drop for Fuzz {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "fuzz target `{}` failed at case {}: replay with AM_FUZZ_SEED={}",
                self.target, self.cases, self.seed
            );
        } else {
            eprintln!("fuzz target `{}`: {} cases", self.target, self.cases);
        }
    }
}

/// Random bytes of a random length below `max`.
pub fn random_bytes(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
    let len = rng.usize(..max);
    std::iter::repeat_with(|| rng.u8(..)).take(len).collect()
}

/// A value for a length field: small, near a boundary, or huge.
pub fn lying_len(rng: &mut fastrand::Rng, honest: u64) -> u64 {
    match rng.u8(..6) {
        0 => honest.wrapping_add(rng.u64(1..64)),
        1 => honest.wrapping_sub(rng.u64(1..64)),
        2 => u64::MAX - rng.u64(..64),
        3 => 1 << rng.u32(8..64),
        4 => rng.u64(..),
        _ => rng.u64(..4096),
    }
}

/// Applies one to four random mutations to `bytes`; `other` is spliced from.
/// Length lies target the little-endian word at one of `len_fields` (byte
/// offsets of `width`-byte fields), or any aligned word when that is empty.
pub fn mutate(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>, other: &[u8], len_fields: &[usize]) {
    for _ in 0..rng.usize(1..=4) {
        match rng.u8(..7) {
            0 | 1 => flip_bits(rng, bytes),
            2 => bytes.truncate(rng.usize(..=bytes.len())),
            3 => lie_about_a_length(rng, bytes, len_fields),
            4 => splice(rng, bytes, other),
            5 => {
                let extra = random_bytes(rng, 64);
                bytes.extend_from_slice(&extra);
            }
            _ => overwrite_run(rng, bytes),
        }
    }
}

fn flip_bits(rng: &mut fastrand::Rng, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    for _ in 0..rng.usize(1..=8) {
        let at = rng.usize(..bytes.len());
        bytes[at] ^= 1 << rng.u8(..8);
    }
}

fn lie_about_a_length(rng: &mut fastrand::Rng, bytes: &mut [u8], len_fields: &[usize]) {
    let (at, width) = if !len_fields.is_empty() && rng.bool() {
        (len_fields[rng.usize(..len_fields.len())], 8)
    } else {
        // rkyv archives store lengths as aligned u32 words (pointer_width_32).
        (rng.usize(..bytes.len().max(1)) & !3, 4)
    };
    if at + width > bytes.len() {
        return;
    }
    let mut honest = [0u8; 8];
    honest[..width].copy_from_slice(&bytes[at..at + width]);
    let lie = lying_len(rng, u64::from_le_bytes(honest)).to_le_bytes();
    bytes[at..at + width].copy_from_slice(&lie[..width]);
}

fn splice(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    let keep = rng.usize(..=bytes.len());
    let from = rng.usize(..=other.len());
    bytes.truncate(keep);
    bytes.extend_from_slice(&other[from..]);
}

fn overwrite_run(rng: &mut fastrand::Rng, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    let start = rng.usize(..bytes.len());
    let end = (start + rng.usize(1..=16)).min(bytes.len());
    let fill = [0x00, 0xff, rng.u8(..)][rng.usize(..3)];
    bytes[start..end].fill(fill);
}
