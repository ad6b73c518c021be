//! One mapped segment of the pooled area (either side): creating and
//! sealing it, mapping a peer's after checking it, and its control words.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::{RX_BYTES, RX_SEGMENTS, SEG_HEADER, TX_BYTES, TX_SEGMENTS};
use crate::error::{Error, Result};

/// Offset in the control page of the `wake` word: set by a sender waiting
/// for this segment, cleared by the receiver that then rings.
const WAKE_AT: usize = 64;
/// Offset in the control page of the `taken` word: the last generation the
/// receiver has read the reference of (a hint for the sender's sizing).
const TAKEN_AT: usize = 128;

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport(format!("large-buffer pool: {what}: {e}"))
}

/// One mapped segment (either side); unmapped and uncounted on drop.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(super) map: MmapRaw,
    tx: bool,
}

impl Segment {
    fn counted(map: MmapRaw, tx: bool) -> Self {
        let (segs, bytes) = if tx {
            (&TX_SEGMENTS, &TX_BYTES)
        } else {
            (&RX_SEGMENTS, &RX_BYTES)
        };
        segs.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(map.len() as u64, Ordering::Relaxed);
        Self { map, tx }
    }

    /// Data capacity (after the header).
    pub(crate) fn capacity(&self) -> usize {
        self.map.len() - SEG_HEADER
    }

    /// The word where the receiver returns generations.
    pub(super) fn released(&self) -> &AtomicU64 {
        // SAFETY: the mapping is at least SEG_HEADER bytes and page aligned,
        // so offset 0 is a valid, aligned u64 for as long as `self` lives;
        // both processes only ever access it atomically.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }
    }

    /// The word a waiting sender sets so that the release rings it.
    pub(super) fn wake(&self) -> &AtomicU64 {
        // SAFETY: as in `released`: offset WAKE_AT (8-aligned) lies inside
        // the page-aligned control page, only ever accessed atomically.
        unsafe { &*self.map.as_ptr().add(WAKE_AT).cast::<AtomicU64>() }
    }

    /// The last generation the receiver took (see [`TAKEN_AT`]).
    pub(super) fn taken(&self) -> &AtomicU64 {
        // SAFETY: as in `released`: offset TAKEN_AT (8-aligned) lies inside
        // the page-aligned control page, only ever accessed atomically.
        unsafe { &*self.map.as_ptr().add(TAKEN_AT).cast::<AtomicU64>() }
    }

    /// Start of the data area (page aligned, `capacity()` bytes).
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // SAFETY: SEG_HEADER < map.len() (a segment has data bytes), so the
        // offset stays inside the mapping.
        unsafe { self.map.as_mut_ptr().add(SEG_HEADER) }
    }

    /// `len` data bytes at data offset `off` (checked by the caller).
    pub(super) fn data(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.capacity());
        // SAFETY: in bounds (checked by every caller against `capacity`); the
        // memfd is sealed against shrinking, so the pages stay; the bytes may
        // only change if a same-uid peer breaks the protocol, which the
        // trust model accepts (docs/security.md), and are never torn apart
        // from Rust's view because they are plain bytes.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(SEG_HEADER + off), len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let (segs, bytes) = if self.tx {
            (&TX_SEGMENTS, &TX_BYTES)
        } else {
            (&RX_SEGMENTS, &RX_BYTES)
        };
        segs.fetch_sub(1, Ordering::Relaxed);
        bytes.fetch_sub(self.map.len() as u64, Ordering::Relaxed);
    }
}

/// Creates a sealed segment with `capacity` data bytes; returns it mapped
/// and its descriptor (to pass to the receiver once).
pub(super) fn create_segment(capacity: usize) -> Result<(Segment, OwnedFd)> {
    let fd = memfd_create(
        "am-pool",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| io("memfd_create", e))?;
    let file = File::from(fd);
    file.set_len((SEG_HEADER + capacity) as u64)
        .map_err(|e| io("sizing", e))?;
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| io("sealing", e))?;
    let map = MmapOptions::new()
        .map_raw(&file)
        .map_err(|e| io("mmap", e))?;
    Ok((Segment::counted(map, true), file.into()))
}

/// Maps a peer's segment after checking its seals and size.
pub(crate) fn map_peer_segment(fd: OwnedFd, size: usize, max: usize) -> Result<Segment> {
    if size <= SEG_HEADER || size > max || !size.is_multiple_of(SEG_HEADER) {
        return Err(io("announced size", size));
    }
    let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(|e| io("seals", e))?;
    let needed = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    if !SealFlag::from_bits_truncate(seals).contains(needed) {
        return Err(io("seals", format!("{seals:#x} lacks shrink/grow")));
    }
    let file = File::from(fd);
    let real = file.metadata().map_err(|e| io("fstat", e))?.len();
    if real != size as u64 {
        return Err(io("size", format!("{real} bytes, {size} announced")));
    }
    let map = MmapOptions::new()
        .map_raw(&file)
        .map_err(|e| io("mmap", e))?;
    Ok(Segment::counted(map, false))
}
