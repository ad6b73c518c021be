//! The only module that names atomics: `std` normally, `loom` under `--cfg loom`.
//!
//! Everything else in the crate imports its atomics, fences and spin hints from here, so
//! the loom models in `tests/loom.rs` check the very code that ships.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// One iteration of a busy-wait loop (a scheduling point under loom).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Offers the CPU to another runnable thread (a scheduling point under loom).
#[inline]
pub(crate) fn yield_cpu() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// Relaxed load of one 8-byte word of the data area (record headers).
///
/// Record headers are read with atomic loads so that a peer writing them concurrently (a
/// protocol violation) is a value problem, caught by validation, not a data race.
///
/// # Safety
/// `ptr` is 8-aligned and valid for reads of 8 bytes for the duration of the call.
#[inline]
pub(crate) unsafe fn load_word(ptr: *const u64) -> u64 {
    #[cfg(not(loom))]
    {
        // SAFETY: aligned and valid per the caller; all accesses to record-header words
        // are atomic or ordered by the index protocol.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(ptr.cast_mut()) }.load(Ordering::Relaxed)
    }
    #[cfg(loom)]
    {
        // SAFETY: valid per the caller; under loom, access order is checked by the
        // granule tracker in `Region` instead.
        unsafe { ptr.read() }
    }
}

/// Relaxed store of one 8-byte word of the data area (record headers).
///
/// # Safety
/// `ptr` is 8-aligned and valid for writes of 8 bytes for the duration of the call.
#[inline]
pub(crate) unsafe fn store_word(ptr: *mut u64, value: u64) {
    #[cfg(not(loom))]
    {
        // SAFETY: aligned and valid per the caller.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(ptr) }.store(value, Ordering::Relaxed)
    }
    #[cfg(loom)]
    {
        // SAFETY: valid per the caller; ordering is checked by the granule tracker.
        unsafe { ptr.write(value) }
    }
}
