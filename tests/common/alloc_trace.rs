//! Allocation traces for the counting allocator of an `alloc_*` test: with
//! [`TRACE`] on, the first few allocations are kept with the thread that
//! made them (its role, from `roles.rs`) and the library frames of their
//! backtrace. Included by path next to `counting.rs` and `roles.rs`.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::roles::{self, OTHER, ROLE};

/// The roles' names, for traces.
const SIDES: [&str; 3] = ["other", "client", "server"];

thread_local! {
    /// Set while this thread records a trace (its own allocations are not traced).
    static TRACING: Cell<bool> = const { Cell::new(false) };
}
/// Whether allocations are being traced now.
pub static TRACE: AtomicBool = AtomicBool::new(false);
/// The traces kept while [`TRACE`] was on (the test takes them).
pub static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MAX_TRACES: usize = 12;

/// The allocator's hook: counts for the thread's role, and traces while
/// [`TRACE`] is on.
pub fn count() {
    // The tracer's own allocations are not the runtime's.
    if TRACING.try_with(Cell::get) == Ok(true) {
        return;
    }
    roles::count();
    // Relaxed: switched on and off between stretches by the test's thread.
    if TRACE.load(Ordering::Relaxed) && TRACING.try_with(|t| !t.replace(true)) == Ok(true) {
        // A thread being torn down has no role left: it counts as other.
        record(ROLE.try_with(Cell::get).unwrap_or(OTHER));
        TRACING.set(false);
    }
}

/// Keeps the thread and backtrace of one allocation (the first few).
fn record(role: usize) {
    let mut traces = TRACES.lock().unwrap_or_else(|e| e.into_inner());
    if traces.len() < MAX_TRACES {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("?").to_owned();
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        // The frames of the libraries, not of the allocator and std.
        let frames: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("active_message") || l.contains("tokio") || l.contains("zmq"))
            .take(16)
            .collect();
        traces.push(format!(
            "[{}] thread {name}\n{}",
            SIDES[role],
            frames.join("\n")
        ));
    }
}
