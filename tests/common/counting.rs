//! A global allocator that counts every allocation of the process, for the
//! allocation-count tests. A test binary opts in with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and reads
//! [`allocations`]; the count covers every thread, so such a binary runs
//! nothing beside its measured loop.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts every allocation (and reallocation) of the process.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator, which
// upholds `GlobalAlloc`'s contract; the counter is a plain atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a tally, read after the measured loop has finished.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout obligations pass straight through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (i.e. from `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (i.e. from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations (and reallocations) so far.
pub fn allocations() -> u64 {
    // Relaxed: a tally, read after the measured loop has finished.
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// A global allocator that calls a counting function of the test's own
/// (per thread role, say) on every allocation and reallocation, then
/// forwards to the system allocator: `#[global_allocator] static GLOBAL:
/// CountingWith = CountingWith(count);`. The function must not allocate
/// (or must guard against its own recursion).
pub struct CountingWith(pub fn());

// SAFETY: forwards every call unchanged to the system allocator, which
// upholds `GlobalAlloc`'s contract; the counting function is the test's,
// which promises not to recurse into the allocator.
unsafe impl GlobalAlloc for CountingWith {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.0)();
        // SAFETY: the caller's layout obligations pass straight through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.0)();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.0)();
        // SAFETY: `ptr` came from this allocator (i.e. from `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (i.e. from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
