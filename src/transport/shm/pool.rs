//! The pooled large-buffer area of one link direction.
//!
//! The sender owns a set of **segments**: sealed memfds (shrink and grow
//! sealed, so a mapping can never SIGBUS), each holding one frame at a time
//! after a one-page control header. A segment is created on first need,
//! passed to the receiver once (its descriptor over the rendezvous socket,
//! announced by a ring record), then reused for every later frame that fits.
//! A frame travels as a small ring record (segment id, generation, offset,
//! length), so its order with small frames holds and nothing but that record
//! crosses per message.
//!
//! Ownership of a segment alternates: the sender writes a frame and publishes
//! generation `g`; the receiver reads it in place and, when the last view is
//! dropped, stores `g` in the segment's `released` word. The sender reuses a
//! segment only when `released` equals the generation it last sent, so a
//! buffer the receiver still holds is never overwritten. The receiver checks
//! every reference against what it mapped (known id, bounds, alignment, the
//! exact next generation, not already held) before reading a byte.
//!
//! Among free segments the sender takes the one it published last: its
//! lines are the likeliest still in cache, and a sender rotating over more
//! large segments than the cache holds copies at memory speed, not cache
//! speed (measured: docs/performance.md, issue 11). For the same reason it
//! keeps at most [`PIPELINE_LARGE`] segments of 4 MiB and more in flight
//! before waiting a while for one to come back. Pages are never dropped on
//! return: re-faulting a 16 MiB segment costs ten times its copy here.
//!
//! The sender's area grows up to a cap; when the cap is reached, free
//! segments of the wrong size are retired (announced, then unmapped) and a
//! sender that finds nothing free waits (backpressure). When a link ends,
//! both sides drop their mappings; the kernel frees a memfd with its last
//! mapping, so a dead peer's buffers are reclaimed with the link.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::error::{Error, Result};

/// Bytes before a segment's data: the control words (one page, so frames
/// start page aligned).
pub(crate) const SEG_HEADER: usize = 4096;
/// Smallest segment data capacity.
const MIN_SEGMENT: usize = 1 << 20;
/// Most segments one receiver maps per link direction.
pub(crate) const MAX_SEGMENTS: usize = 256;
/// Segments of a size that may be in flight (sent, not yet returned) before
/// a sender prefers waiting for a returned one (warm pages) over mapping a
/// fresh one: enough to keep writer and reader both busy.
pub(crate) const PIPELINE: usize = 3;
/// Frames from this size up keep at most [`PIPELINE_LARGE`] segments in
/// flight before a sender waits for a warm one: a larger set of them no
/// longer fits the share of the last-level cache a process gets here.
pub(crate) const LARGE_FRAME: usize = 4 << 20;
/// Segments in flight for frames of [`LARGE_FRAME`] bytes and more: one
/// being read, one being written.
pub(crate) const PIPELINE_LARGE: usize = 2;

/// Segments of a size that may be in flight before a sender prefers a
/// returned one for a frame of `len` bytes.
pub(crate) fn pipeline(len: usize) -> usize {
    if len >= LARGE_FRAME {
        PIPELINE_LARGE
    } else {
        PIPELINE
    }
}
/// Offset in the control page of the `wake` word: set by a sender waiting
/// for this segment, cleared by the receiver that then rings.
const WAKE_AT: usize = 64;
/// Offset in the control page of the `taken` word: the last generation the
/// receiver has read the reference of (a hint for the sender's sizing).
const TAKEN_AT: usize = 128;

/// Data capacity of a segment made for a frame of `len` bytes: a multiple
/// of an eighth of the next power of two (at most 12.5 % unused), >= 1 MiB.
pub(crate) fn capacity_for(len: usize) -> usize {
    let len = len.max(MIN_SEGMENT);
    let step = (len.next_power_of_two() / 8).max(SEG_HEADER);
    len.next_multiple_of(step)
}

/// Process-wide pool levels (all links, both directions), for tests and
/// monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Segments this process created to send from.
    pub tx_segments: u64,
    /// Bytes of those segments (mapped; pages are touched only as written).
    pub tx_bytes: u64,
    /// Segments of peers this process maps to receive from.
    pub rx_segments: u64,
    /// Bytes of those segments.
    pub rx_bytes: u64,
    /// Received frames whose views are still held here.
    pub rx_held: u64,
}

static TX_SEGMENTS: AtomicU64 = AtomicU64::new(0);
static TX_BYTES: AtomicU64 = AtomicU64::new(0);
static RX_SEGMENTS: AtomicU64 = AtomicU64::new(0);
static RX_BYTES: AtomicU64 = AtomicU64::new(0);
static RX_HELD: AtomicU64 = AtomicU64::new(0);

/// The current pool levels of this process.
pub fn pool_usage() -> PoolUsage {
    // Relaxed: statistics, not synchronisation.
    PoolUsage {
        tx_segments: TX_SEGMENTS.load(Ordering::Relaxed),
        tx_bytes: TX_BYTES.load(Ordering::Relaxed),
        rx_segments: RX_SEGMENTS.load(Ordering::Relaxed),
        rx_bytes: RX_BYTES.load(Ordering::Relaxed),
        rx_held: RX_HELD.load(Ordering::Relaxed),
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport(format!("large-buffer pool: {what}: {e}"))
}

/// One mapped segment (either side); unmapped and uncounted on drop.
#[derive(Debug)]
pub(crate) struct Segment {
    map: MmapRaw,
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
    fn released(&self) -> &AtomicU64 {
        // SAFETY: the mapping is at least SEG_HEADER bytes and page aligned,
        // so offset 0 is a valid, aligned u64 for as long as `self` lives;
        // both processes only ever access it atomically.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }
    }

    /// The word a waiting sender sets so that the release rings it.
    fn wake(&self) -> &AtomicU64 {
        // SAFETY: as in `released`: offset WAKE_AT (8-aligned) lies inside
        // the page-aligned control page, only ever accessed atomically.
        unsafe { &*self.map.as_ptr().add(WAKE_AT).cast::<AtomicU64>() }
    }

    /// The last generation the receiver took (see [`TAKEN_AT`]).
    fn taken(&self) -> &AtomicU64 {
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
    fn data(&self, off: usize, len: usize) -> &[u8] {
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
fn create_segment(capacity: usize) -> Result<(Segment, OwnedFd)> {
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

/// Sender-side state of one segment.
#[derive(Debug)]
struct TxSlot {
    id: u32,
    seg: Arc<Segment>,
    /// Descriptor not yet passed to the receiver.
    fd: Option<OwnedFd>,
    /// Generation of the last frame published from it (0: none yet).
    sent: u64,
    /// Leased to a sender right now.
    busy: bool,
    /// When it was last published, in publications of this pool (0: never):
    /// the most recent is the warmest in the sender's caches.
    stamp: u64,
}

impl TxSlot {
    fn is_free(&self) -> bool {
        // Acquire: pairs with the receiver's Release store in `Held::drop`,
        // so its reads of the old frame happen before we overwrite it.
        !self.busy && self.seg.released().load(Ordering::Acquire) == self.sent
    }

    /// Published and not yet returned by the receiver.
    fn in_flight(&self) -> bool {
        // Relaxed: a sizing hint; `is_free` does the synchronising load.
        self.sent != 0 && self.seg.released().load(Ordering::Relaxed) != self.sent
    }

    /// Published and its reference not yet read by the receiver: the
    /// receiver is behind, and a fresh segment would only queue up too.
    fn queued(&self) -> bool {
        // Relaxed: a sizing hint only.
        self.in_flight() && self.seg.taken().load(Ordering::Relaxed) != self.sent
    }
}

/// Whether a lease may map a fresh segment when none is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grow {
    /// Whenever the cap allows.
    Always,
    /// Unless [`pipeline`] segments of the size are in flight and the
    /// receiver has not even read one of them yet (it is behind: wait, as a
    /// full ring makes a sender wait).
    Paced,
    /// Only while fewer than [`pipeline`] segments of the size are in
    /// flight (else wait for one to come back: its pages are warm).
    Warm,
}

#[derive(Debug, Default)]
struct TxInner {
    slots: Vec<TxSlot>,
    total: usize,
    next_id: u32,
    /// Retired segment ids the receiver has not been told about yet.
    retired: Vec<u32>,
    /// Publications so far (the source of [`TxSlot::stamp`]).
    clock: u64,
}

/// The sender's pool of one link direction.
#[derive(Debug)]
pub(crate) struct TxPool {
    inner: std::sync::Mutex<TxInner>,
    cap: usize,
    /// Segment size to try first for archives (their size is unknown
    /// before encoding): learnt from the last one.
    guess: std::sync::atomic::AtomicUsize,
    /// Notified when the receiver rings after returning a segment.
    returned: tokio::sync::Notify,
}

/// What a lease still has to announce before its reference is sent.
pub(crate) struct Announce {
    /// Segment id and total size, with the descriptor to pass, if new.
    pub(crate) new: Option<(u32, usize, OwnedFd)>,
    /// Segments retired since the last announcement.
    pub(crate) retired: Vec<u32>,
}

impl TxPool {
    /// A pool that maps at most `cap` bytes of segments.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: std::sync::Mutex::default(),
            cap,
            guess: std::sync::atomic::AtomicUsize::new(0),
            returned: tokio::sync::Notify::new(),
        }
    }

    /// Notified when the receiver returns a segment a sender waits for
    /// (see [`Self::arm_wake`]).
    pub(crate) fn returned(&self) -> &tokio::sync::Notify {
        &self.returned
    }

    /// The receiver rang: a segment came back.
    pub(crate) fn on_returned(&self) {
        self.returned.notify_waiters();
    }

    /// Asks the receiver to ring when it returns any segment in flight.
    /// Look for a free segment again after this: a return that raced with
    /// it may not ring.
    pub(crate) fn arm_wake(&self) {
        let inner = self.lock();
        for slot in inner.slots.iter().filter(|s| s.in_flight()) {
            // Relaxed: ordered by the fence below.
            slot.seg.wake().store(1, Ordering::Relaxed);
        }
        // SeqCst: pairs with the receiver's fence in `Held::drop`: either it
        // sees `wake` set, or our next look sees its `released` store.
        fence(Ordering::SeqCst);
    }

    /// Whether a frame of `len` bytes can ever be pooled.
    pub(crate) fn fits_cap(&self, len: usize) -> bool {
        SEG_HEADER + capacity_for(len) <= self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TxInner> {
        // A panic while holding this lock leaves consistent state (every
        // step below is a single assignment), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leases a free segment of at least `len` data bytes, creating one
    /// within the cap, or `Ok(None)` when none is free (wait and retry).
    pub(crate) fn try_lease(&self, len: usize) -> Result<Option<Lease<'_>>> {
        self.try_lease_with(len, Grow::Always)
    }

    /// [`Self::try_lease`], growing only as `grow` allows.
    pub(crate) fn try_lease_with(&self, len: usize, grow: Grow) -> Result<Option<Lease<'_>>> {
        let mut inner = self.lock();
        let fits = |s: &&TxSlot| s.seg.capacity() >= len;
        // The smallest that fits, and of those the one published last: its
        // lines are the likeliest still in cache. Rotating over more large
        // segments than the cache holds halves the copy's speed (see
        // docs/performance.md, issue 11).
        let best = (inner.slots.iter().enumerate())
            .filter(|(_, s)| fits(s) && s.is_free())
            .min_by_key(|(_, s)| (s.seg.capacity(), std::cmp::Reverse(s.stamp)))
            .map(|(i, _)| i);
        if let Some(i) = best {
            return Ok(Some(self.lease_slot(&mut inner, i)));
        }
        let in_flight = || inner.slots.iter().filter(fits).filter(|s| s.in_flight());
        let full = grow != Grow::Always && in_flight().count() >= pipeline(len);
        if full && (grow == Grow::Warm || in_flight().any(|s| s.queued())) {
            return Ok(None);
        }
        let want = SEG_HEADER + capacity_for(len);
        while inner.total + want > self.cap {
            // Make room by retiring a free segment that is too small.
            let Some(i) = inner.slots.iter().position(TxSlot::is_free) else {
                return Ok(None);
            };
            let slot = inner.slots.swap_remove(i);
            inner.total -= SEG_HEADER + slot.seg.capacity();
            if slot.fd.is_none() {
                inner.retired.push(slot.id);
            }
        }
        let (seg, fd) = create_segment(want - SEG_HEADER)?;
        let id = inner.next_id;
        inner.next_id = id.wrapping_add(1);
        inner.total += want;
        inner.slots.push(TxSlot {
            id,
            seg: Arc::new(seg),
            fd: Some(fd),
            sent: 0,
            busy: false,
            stamp: 0,
        });
        let i = inner.slots.len() - 1;
        Ok(Some(self.lease_slot(&mut inner, i)))
    }

    fn lease_slot(&self, inner: &mut TxInner, i: usize) -> Lease<'_> {
        let slot = &mut inner.slots[i];
        slot.busy = true;
        Lease {
            pool: self,
            id: slot.id,
            gen_: slot.sent + 1,
            seg: Arc::clone(&slot.seg),
            published: false,
            detached: false,
        }
    }

    /// Takes what must be announced before a reference to segment `id`.
    pub(crate) fn announcements(&self, id: u32) -> Announce {
        let mut inner = self.lock();
        let retired = std::mem::take(&mut inner.retired);
        let new = inner.slots.iter_mut().find(|s| s.id == id).and_then(|s| {
            let size = SEG_HEADER + s.seg.capacity();
            s.fd.take().map(|fd| (id, size, fd))
        });
        Announce { new, retired }
    }

    /// Hands back announcements a sender took but could not deliver.
    pub(crate) fn restore(&self, announce: Announce) {
        if announce.new.is_none() && announce.retired.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.retired.extend(announce.retired);
        if let Some((id, _, fd)) = announce.new
            && let Some(slot) = inner.slots.iter_mut().find(|s| s.id == id)
        {
            slot.fd = Some(fd);
        }
    }

    /// Data bytes to lease first for an archive (more than a ring record).
    pub(crate) fn guess(&self, max_record: usize) -> usize {
        // Relaxed: a hint only.
        self.guess.load(Ordering::Relaxed).max(max_record + 1)
    }

    /// Remembers the size of an archive just encoded.
    pub(crate) fn learn(&self, len: usize) {
        // Relaxed: a hint only.
        self.guess.store(len + len / 2, Ordering::Relaxed);
    }

    /// Bytes mapped by this pool.
    #[cfg(test)]
    fn total(&self) -> usize {
        self.lock().total
    }
}

/// One segment leased to one sender; returned to the pool on drop
/// (published or not).
pub(crate) struct Lease<'a> {
    pool: &'a TxPool,
    seg: Arc<Segment>,
    pub(crate) id: u32,
    pub(crate) gen_: u64,
    published: bool,
    /// Handed over by [`Lease::detach`]: its new owner gives it back.
    detached: bool,
}

impl Lease<'_> {
    /// The segment's data area, to write a frame into (page aligned).
    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        let cap = self.seg.capacity();
        // SAFETY: the lease is exclusive (the slot is `busy`, and the
        // receiver released the previous generation: see `TxSlot::is_free`),
        // the range is inside the sealed mapping, and `&mut self` keeps this
        // the only live slice into it on our side.
        unsafe { std::slice::from_raw_parts_mut(self.seg.map.as_mut_ptr().add(SEG_HEADER), cap) }
    }

    /// Marks the frame as sent: the segment stays the receiver's until it
    /// returns this generation.
    pub(crate) fn published(mut self) {
        self.published = true;
    }
}

impl Lease<'_> {
    /// Detaches the lease from its borrow of the pool: the caller owes
    /// [`TxPool::give_back`] with these parts.
    pub(crate) fn detach(mut self) -> (u32, u64, Arc<Segment>) {
        self.detached = true;
        (self.id, self.gen_, Arc::clone(&self.seg))
    }
}

impl TxPool {
    /// Returns a leased segment; `published`: its generation was sent.
    pub(crate) fn give_back(&self, id: u32, gen_: u64, published: bool) {
        let mut inner = self.lock();
        inner.clock += u64::from(published);
        let clock = inner.clock;
        if let Some(slot) = inner.slots.iter_mut().find(|s| s.id == id) {
            slot.busy = false;
            if published {
                slot.sent = gen_;
                slot.stamp = clock;
            }
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.detached {
            self.pool.give_back(self.id, self.gen_, self.published);
        }
    }
}

/// Receiver-side state of one peer segment.
pub(crate) struct RxSeg {
    seg: Segment,
    /// Holders ([`Held`] and its clones) of the current generation alive
    /// here: the segment goes back to the sender when the last one drops.
    holders: AtomicUsize,
    /// Last generation taken (only the link's reader touches it).
    last: AtomicU64,
    /// Tells the sender a segment it waits for came back.
    bell: Bell,
}

impl std::fmt::Debug for RxSeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxSeg")
            .field("capacity", &self.seg.capacity())
            .finish_non_exhaustive()
    }
}

/// How a receiver rings its sender (a byte on the link's socket).
pub(crate) type Bell = Arc<dyn Fn() + Send + Sync>;

/// The receiver's table of one link direction (owned by the reader task).
pub(crate) struct RxPool {
    segs: std::collections::HashMap<u32, Arc<RxSeg>>,
    max_segment: usize,
    bell: Bell,
}

impl RxPool {
    /// A table accepting segments of at most `max_segment` bytes, whose
    /// sender is never rung (it polls).
    #[cfg(test)]
    pub(crate) fn new(max_segment: usize) -> Self {
        Self::with_bell(max_segment, Arc::new(|| {}))
    }

    /// A table accepting segments of at most `max_segment` bytes; `bell`
    /// rings the sender when a segment it waits for comes back.
    pub(crate) fn with_bell(max_segment: usize, bell: Bell) -> Self {
        Self {
            segs: std::collections::HashMap::new(),
            max_segment,
            bell,
        }
    }

    /// Largest segment size accepted.
    pub(crate) fn max_segment(&self) -> usize {
        self.max_segment
    }

    /// Adds a peer segment under `id`.
    pub(crate) fn add(&mut self, id: u32, seg: Segment) -> std::result::Result<(), String> {
        if self.segs.len() >= MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} pool segments"));
        }
        if self.segs.contains_key(&id) {
            return Err(format!("pool segment {id} announced twice"));
        }
        let rx = RxSeg {
            seg,
            holders: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            bell: Arc::clone(&self.bell),
        };
        self.segs.insert(id, Arc::new(rx));
        Ok(())
    }

    /// Forgets segment `id` (views still alive keep it mapped).
    pub(crate) fn retire(&mut self, id: u32) -> std::result::Result<(), String> {
        self.segs
            .remove(&id)
            .map(drop)
            .ok_or_else(|| format!("retired unknown pool segment {id}"))
    }

    /// Checks a reference and takes the frame it names.
    pub(crate) fn take(&self, r: Ref) -> std::result::Result<Held, String> {
        let rx = self
            .segs
            .get(&r.id)
            .ok_or_else(|| format!("reference to unknown pool segment {}", r.id))?;
        let in_bounds = r
            .offset
            .checked_add(r.len)
            .is_some_and(|end| end <= rx.seg.capacity());
        if !in_bounds || !r.offset.is_multiple_of(16) || r.len < crate::wire::HEADER_LEN {
            return Err(format!(
                "pool reference {}+{} outside segment {} ({} bytes)",
                r.offset,
                r.len,
                r.id,
                rx.seg.capacity()
            ));
        }
        // Relaxed: only this reader task reads or writes `last`.
        let expected = rx.last.load(Ordering::Relaxed) + 1;
        if r.gen_ != expected {
            return Err(format!(
                "pool segment {} generation {} (expected {expected})",
                r.id, r.gen_
            ));
        }
        // Acquire: pairs with the last holder's Release decrement in
        // `Held::drop`, so its reads of the old frame happen before ours.
        if rx
            .holders
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(format!("pool segment {} reused while held", r.id));
        }
        rx.last.store(r.gen_, Ordering::Relaxed);
        // Relaxed: a hint for the sender's sizing (see `TxSlot::queued`).
        rx.seg.taken().store(r.gen_, Ordering::Relaxed);
        RX_HELD.fetch_add(1, Ordering::Relaxed);
        Ok(Held {
            rx: Arc::clone(rx),
            gen_: r.gen_,
            offset: r.offset,
            len: r.len,
        })
    }
}

/// A reference as carried by a ring record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ref {
    pub(crate) id: u32,
    pub(crate) gen_: u64,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// A received frame in a peer's segment, read in place; returns the
/// segment to the sender when the last clone is dropped. A clone or a
/// slice costs one atomic increment (the count lives in the segment's
/// long-lived record), never an allocation. Holders keep the mapping alive
/// (an `Arc` of the record), so a frame kept past its link's end stays
/// valid memory, and its segment is never recycled while held.
#[derive(Debug)]
pub(crate) struct Held {
    rx: Arc<RxSeg>,
    gen_: u64,
    offset: usize,
    len: usize,
}

impl Held {
    /// Another holder of `len` bytes at `offset` inside this frame
    /// (checked by the caller).
    pub(crate) fn sub(&self, offset: usize, len: usize) -> Held {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // Relaxed: a new holder is made from a live one, which already
        // keeps the count above zero (as `Arc::clone` does).
        self.rx.holders.fetch_add(1, Ordering::Relaxed);
        Held {
            rx: Arc::clone(&self.rx),
            gen_: self.gen_,
            offset: self.offset + offset,
            len,
        }
    }
}

impl Clone for Held {
    fn clone(&self) -> Self {
        self.sub(0, self.len)
    }
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        self.rx.seg.data(self.offset, self.len)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Release: our reads of the frame happen before the last holder's
        // return below (which Acquires them with the fence), as in `Arc`.
        if self.rx.holders.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire: pairs with every other holder's Release decrement.
        fence(Ordering::Acquire);
        RX_HELD.fetch_sub(1, Ordering::Relaxed);
        // Release: pairs with the sender's Acquire in `TxSlot::is_free`: all
        // holders' reads of this frame happen before it writes the next one.
        self.rx.seg.released().store(self.gen_, Ordering::Release);
        // SeqCst: pairs with the sender's fence in `TxPool::arm_wake`.
        fence(Ordering::SeqCst);
        let wake = self.rx.seg.wake();
        // Relaxed: ordered by the fence; the swap makes one ring per arming.
        if wake.load(Ordering::Relaxed) != 0 && wake.swap(0, Ordering::Relaxed) != 0 {
            (self.rx.bell)();
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
