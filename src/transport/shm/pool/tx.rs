//! The sender's side of the pooled area: which segment a frame is written
//! into, when the area grows or waits, and what must be announced first.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use super::segment::{Segment, create_segment};
use super::{SEG_HEADER, capacity_for, pipeline};
use crate::error::Result;

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
    pub(super) fn total(&self) -> usize {
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
