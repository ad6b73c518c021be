//! The receiver's side of the pooled area: the table of a peer's segments,
//! the checks on every reference, and the held frames that return a
//! segment to its sender when the last view drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use super::segment::Segment;
use super::{MAX_SEGMENTS, RX_HELD};

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
