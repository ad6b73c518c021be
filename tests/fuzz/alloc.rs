//! A counting global allocator: while a thread is inside [`measure`], every
//! allocation it makes is recorded (largest single request, live bytes, peak
//! live bytes), so a fuzz target can assert that hostile input never makes the
//! decoder allocate more than the configured cap.
//!
//! Counters are per thread: the test harness runs tests on parallel threads,
//! and a global counter would charge one test for another's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator and counts for threads inside [`measure`].
pub struct CountingAlloc;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// What one measured closure allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Largest single allocation (or reallocation target), in bytes.
    pub largest: usize,
    /// Highest number of bytes live at once, counted from the start of the scope.
    pub peak_live: isize,
    /// Bytes still live when the scope ended (allocated minus freed inside it).
    pub net: isize,
    /// Number of allocations and reallocations.
    pub count: usize,
}

fn record(grow: isize, request: usize) {
    // `try_with`: a thread being torn down has no thread-locals left; its
    // allocations are simply not counted.
    let _ = ACTIVE.try_with(|active| {
        if !active.get() {
            return;
        }
        if request > 0 {
            LARGEST.set(LARGEST.get().max(request));
            COUNT.set(COUNT.get() + 1);
        }
        let live = LIVE.get() + grow;
        LIVE.set(live);
        PEAK.set(PEAK.get().max(live));
    });
}

// SAFETY: every method forwards to `System` with the caller's own arguments;
// the counting only touches const-initialised thread-local `Cell`s, which
// never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize), 0);
        // SAFETY: `ptr` came from `System` with this layout (all our methods forward).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as isize - layout.size() as isize, new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` with this thread's allocations counted from zero.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    LARGEST.set(0);
    LIVE.set(0);
    PEAK.set(0);
    COUNT.set(0);
    ACTIVE.set(true);
    let out = f();
    ACTIVE.set(false);
    let usage = Usage {
        largest: LARGEST.get(),
        peak_live: PEAK.get(),
        net: LIVE.get(),
        count: COUNT.get(),
    };
    (out, usage)
}
