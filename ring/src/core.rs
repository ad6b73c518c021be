//! What both handles share: ring initialisation, attach-time validation, typed access to
//! the header and the data area, and the out-of-band [`RingCloser`].

use std::ptr::NonNull;
use std::sync::Arc;

use crate::doorbell::Bells;
use crate::error::{Result, RingError, bad_layout};
use crate::layout::{
    ControlLine, HEADER_SIZE, LAYOUT_VERSION, LINE, MAGIC, RingConfig, RingHeader, check_geometry,
};
use crate::record::RecordHeader;
use crate::region::Region;
use crate::sync::{Ordering::*, load_word, store_word};

/// Writes a fresh ring header for `config` at `offset` of `region` (head = tail = 0, no
/// flags) and publishes it. Attach handles afterwards with
/// [`Producer::attach`](crate::Producer::attach) / [`Consumer::attach`](crate::Consumer::attach),
/// here or in a process that received the region's fd.
///
/// `offset` must be a multiple of [`LINE`] and leave room for
/// [`RingConfig::footprint`] bytes; [`RegionLayout`](crate::RegionLayout) computes such
/// offsets. Re-initialising a ring that handles are attached to is allowed but makes their
/// view inconsistent: they will report `Corrupt`.
pub fn init_ring(region: &Region, offset: usize, config: RingConfig) -> Result<()> {
    let hdr = header_ptr(region, offset, config.footprint())?;
    #[cfg(loom)]
    // SAFETY: in bounds and aligned (checked by `header_ptr`); loom atomics must be
    // constructed, and loom tests initialise before any handle exists.
    unsafe {
        hdr.as_ptr().write(RingHeader::zeroed())
    };
    // SAFETY: in bounds, aligned, and every byte of `RingHeader` is an atomic, valid for any
    // bit pattern; shared access to atomics over peer-writable memory is sound.
    let h = unsafe { hdr.as_ref() };
    h.meta.version.store(0, Relaxed); // unpublish while rewriting
    h.meta.magic.store(MAGIC, Relaxed);
    h.meta.capacity.store(config.capacity() as u64, Relaxed);
    h.meta.max_record.store(config.max_record() as u64, Relaxed);
    h.producer.tail.store(0, Relaxed);
    h.consumer.head.store(0, Relaxed);
    let c = &h.control;
    for flag in [&c.consumer_waiting, &c.producer_waiting, &c.producer_closed] {
        flag.store(0, Relaxed);
    }
    for flag in [
        &c.consumer_closed,
        &c.producer_attached,
        &c.consumer_attached,
    ] {
        flag.store(0, Relaxed);
    }
    // SYNC POINT I1 (Release) pairs with A1: whoever reads this version reads the fields.
    h.meta.version.store(LAYOUT_VERSION, Release);
    Ok(())
}

/// Bounds- and alignment-checked pointer to a header at `offset` spanning `span` bytes.
fn header_ptr(region: &Region, offset: usize, span: usize) -> Result<NonNull<RingHeader>> {
    if !offset.is_multiple_of(LINE) {
        return bad_layout("ring offset is not 128-byte aligned", offset as u64);
    }
    match offset.checked_add(span) {
        Some(end) if end <= region.len() => {}
        _ => return bad_layout("ring extends past the region", offset as u64),
    }
    // SAFETY: `offset + span <= len`, so the pointer stays inside the region.
    let p = unsafe { region.base().add(offset) };
    // The region base is page-aligned, so `p` is 128-aligned.
    match NonNull::new(p.cast()) {
        Some(p) => Ok(p),
        None => bad_layout("null region base", 0),
    }
}

/// A validated view of one ring inside a region (cheap to clone).
#[derive(Clone)]
pub(crate) struct RingCore {
    region: Arc<Region>,
    hdr: NonNull<RingHeader>,
    /// Region-relative offset of the data area.
    data_off: usize,
    pub(crate) capacity: u64,
    pub(crate) mask: u64,
    pub(crate) max_record: u64,
}

// SAFETY: the pointers target the region kept alive by `region`; all shared state behind
// them is atomics or bytes whose access is ordered by the ring protocol.
unsafe impl Send for RingCore {}
// SAFETY: `&RingCore` only yields `&` to atomics and raw pointers.
unsafe impl Sync for RingCore {}

impl RingCore {
    /// Checks the ring header at `offset`: version first (Acquire), then magic, geometry and
    /// that the whole ring lies inside the region. Nothing the header says is trusted
    /// before it is checked.
    pub(crate) fn attach(region: &Arc<Region>, offset: usize) -> Result<Self> {
        let hdr = header_ptr(region, offset, HEADER_SIZE)?;
        // SAFETY: in bounds and aligned; all-atomic struct (see `init_ring`).
        let h = unsafe { hdr.as_ref() };
        // SYNC POINT A1 (Acquire) pairs with I1.
        let version = h.meta.version.load(Acquire);
        if version == 0 {
            return bad_layout("ring is not initialised", 0);
        }
        if version != LAYOUT_VERSION {
            return Err(RingError::VersionMismatch {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let magic = h.meta.magic.load(Relaxed);
        if magic != MAGIC {
            return bad_layout("bad magic", magic);
        }
        let capacity = h.meta.capacity.load(Relaxed);
        let max_record = h.meta.max_record.load(Relaxed);
        check_geometry(capacity, max_record)?;
        header_ptr(region, offset, HEADER_SIZE + capacity as usize)?;
        Ok(RingCore {
            region: region.clone(),
            hdr,
            data_off: offset + HEADER_SIZE,
            capacity,
            mask: capacity - 1,
            max_record,
        })
    }

    /// The header (all atomics).
    #[inline]
    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: validated in `attach`; the region outlives `self`; all-atomic struct.
        unsafe { self.hdr.as_ref() }
    }

    /// The control line (waiter and closed flags).
    #[inline]
    pub(crate) fn ctl(&self) -> &ControlLine {
        &self.header().control
    }

    /// True once either closed flag is set.
    #[inline]
    pub(crate) fn closed(&self, order: crate::sync::Ordering) -> bool {
        let c = self.ctl();
        (c.producer_closed.load(order) | c.consumer_closed.load(order)) != 0
    }

    /// Pointer to the data byte at free-running position `pos`.
    #[inline]
    pub(crate) fn data_ptr(&self, pos: u64) -> *mut u8 {
        let off = self.data_off + (pos & self.mask) as usize;
        // SAFETY: `pos & mask < capacity` and `attach` checked the data area is in bounds.
        unsafe { self.region.base().add(off) }
    }

    /// Reads the record header at `pos` (16-aligned).
    #[inline]
    pub(crate) fn load_record(&self, pos: u64) -> RecordHeader {
        debug_assert!(pos.is_multiple_of(16));
        self.track_read(pos, 16);
        let p = self.data_ptr(pos).cast::<u64>();
        // SAFETY: 16-aligned offset inside the data area (capacity is a multiple of 16),
        // so both words are aligned and in bounds.
        let words = unsafe { [load_word(p), load_word(p.add(1))] };
        RecordHeader::from_words(words)
    }

    /// Writes the record header at `pos` (16-aligned).
    #[inline]
    pub(crate) fn store_record(&self, pos: u64, hdr: RecordHeader) {
        debug_assert!(pos.is_multiple_of(16));
        let p = self.data_ptr(pos).cast::<u64>();
        let [w0, w1] = hdr.to_words();
        // SAFETY: as in `load_record`; the producer owns these bytes until it publishes.
        unsafe {
            store_word(p, w0);
            store_word(p.add(1), w1);
        }
    }

    /// Loom: note a write of `len` data bytes at `pos` (never crosses the end).
    #[inline]
    pub(crate) fn track_write(&self, pos: u64, len: usize) {
        let off = self.data_off + (pos & self.mask) as usize;
        self.region.track_write(off, len);
    }

    /// Loom: note a read of `len` data bytes at `pos` (never crosses the end).
    #[inline]
    pub(crate) fn track_read(&self, pos: u64, len: usize) {
        let off = self.data_off + (pos & self.mask) as usize;
        self.region.track_read(off, len);
    }
}

/// Closes a ring from outside either handle, e.g. when a liveness watcher learns that the
/// peer process died (its socket reached EOF): sets both closed flags and rings both
/// doorbells, so a parked or spinning peer returns [`RingError::Closed`] (a consumer after
/// draining what was committed). Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct RingCloser {
    core: RingCore,
    bells: Bells,
}

impl std::fmt::Debug for RingCloser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingCloser")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl RingCloser {
    pub(crate) fn new(core: RingCore, bells: Bells) -> Self {
        RingCloser { core, bells }
    }

    /// Marks the ring closed for both sides and wakes both.
    pub fn close(&self) {
        let c = self.core.ctl();
        // SYNC POINT X1 (Release) pairs with X2: a consumer that sees the flag also sees
        // every commit that preceded the close in the closing thread.
        c.producer_closed.store(1, Release);
        c.consumer_closed.store(1, Release);
        self.bells.data.ring();
        self.bells.space.ring();
    }

    /// True once either side (or a closer) closed the ring.
    pub fn is_closed(&self) -> bool {
        self.core.closed(Acquire)
    }
}
