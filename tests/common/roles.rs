//! Allocation counts by the role of the thread that made them (the client's
//! runtime, the server's, any other thread), for the allocation tests that
//! run a client and a server in one process. A test binary counts with
//! `#[global_allocator] static GLOBAL: counting::CountingWith =
//! counting::CountingWith(roles::count);` (or a function of its own that
//! calls [`count`]), builds each side's runtime with [`runtime`], and reads
//! [`snapshot`] around its measured stretches.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::runtime::Runtime;

/// Which side a thread works for.
pub const OTHER: usize = 0;
pub const CLIENT: usize = 1;
pub const SERVER: usize = 2;

thread_local! {
    pub static ROLE: Cell<usize> = const { Cell::new(OTHER) };
}

static ALLOCATIONS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts one allocation for the calling thread's role.
pub fn count() {
    // A thread being torn down has no role left: it counts as other.
    let role = ROLE.try_with(Cell::get).unwrap_or(OTHER);
    // Relaxed: a tally, read after the measured messages were handled.
    ALLOCATIONS[role].fetch_add(1, Ordering::Relaxed);
}

/// The allocations so far, by role (`OTHER`, `CLIENT`, `SERVER`).
pub fn snapshot() -> [u64; 3] {
    [0, 1, 2].map(|i| ALLOCATIONS[i].load(Ordering::Relaxed))
}

/// A one-worker runtime whose threads count for `role`.
pub fn runtime(role: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || ROLE.set(role))
        .build()
        .unwrap()
}
