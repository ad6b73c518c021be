//! The producer handle: reserve a record in place, fill it, commit it.

mod grant;

use std::sync::Arc;
use std::time::Duration;

use crate::core::{RingCloser, RingCore};
use crate::counters::HandleCounters;
use crate::doorbell::{Bells, Doorbell};
use crate::error::{Result, RingError, corrupt};
use crate::layout::{RECORD_ALIGN, RECORD_HEADER_SIZE, record_footprint};
use crate::record::{KIND_DATA, KIND_PAD, RecordHeader};
use crate::region::Region;
use crate::sync::Ordering::*;
use crate::wait::{self, Side, WaitPolicy, WaitSide};

pub use grant::WriteGrant;

/// The writing half of a ring. `Send`, not `Sync`; one per ring.
///
/// Its tail is authoritative here, in private memory; the shared copy only publishes it.
/// The consumer's head is cached and reloaded only when the cached view says "full".
pub struct Producer {
    core: RingCore,
    /// Private tail: every byte before it is committed.
    tail: u64,
    /// Last head seen; `tail - cached_head <= capacity` always.
    cached_head: u64,
    /// Last tail stored to shared memory (behind `tail` only while holding).
    published: u64,
    /// Commits are held back until [`Producer::flush`] (see [`Producer::hold`]).
    holding: bool,
    policy: WaitPolicy,
    bells: Bells,
    /// Wait and doorbell counters, in this process's memory only.
    counters: Arc<HandleCounters>,
    #[cfg(all(feature = "async", not(loom)))]
    async_space: Option<tokio::io::unix::AsyncFd<Doorbell>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .field("capacity", &self.core.capacity)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Where a reserved record goes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Position of the record header.
    pos: u64,
    /// Bytes of PAD written before it (at the old tail), 0 if none.
    pad: u64,
}

impl Producer {
    /// Attaches the producer side of the ring initialised at `offset` of `region`.
    ///
    /// Validates the header (see [`init_ring`](crate::init_ring)) and the current indices;
    /// fails with [`RingError::AlreadyAttached`] if a producer handle is already attached.
    pub fn attach(region: &Arc<Region>, offset: usize, bells: Bells) -> Result<Self> {
        let core = RingCore::attach(region, offset)?;
        let h = core.header();
        if (h.control.producer_attached)
            .compare_exchange(0, 1, Acquire, Relaxed)
            .is_err()
        {
            return Err(RingError::AlreadyAttached { side: "producer" });
        }
        // Our own index is read from shared memory once, here, and never again.
        let tail = h.producer.tail.load(Acquire);
        // SYNC POINT P1 (Acquire) pairs with C3.
        let head = h.consumer.head.load(Acquire);
        if tail.wrapping_sub(head) > core.capacity || (tail | head) % 16 != 0 {
            h.control.producer_attached.store(0, Release);
            return corrupt("tail at attach", tail);
        }
        Ok(Producer {
            core,
            tail,
            cached_head: head,
            published: tail,
            holding: false,
            policy: WaitPolicy::default(),
            bells,
            counters: Arc::default(),
            #[cfg(all(feature = "async", not(loom)))]
            async_space: None,
        })
    }

    /// Finds room for a `len`-byte record; `Ok(None)` when full.
    // Always inlined: returned through memory, the result was read back with
    // wider loads than it was stored with (a store-forwarding stall per record).
    #[inline(always)]
    fn poll_space(&mut self, len: usize) -> Result<Option<Slot>> {
        if len as u64 > self.core.max_record {
            return Err(RingError::TooLarge {
                len,
                max: self.core.max_record as usize,
            });
        }
        if self.core.closed(Relaxed) {
            return Err(RingError::Closed);
        }
        let cap = self.core.capacity;
        let footprint = record_footprint(len) as u64;
        let rest = cap - (self.tail & self.core.mask);
        let (pad, need) = if footprint <= rest {
            (0, footprint)
        } else {
            (rest, rest + footprint)
        };
        if cap - self.tail.wrapping_sub(self.cached_head) < need {
            // SYNC POINT P1 (Acquire) pairs with C3: bytes behind the new head are no
            // longer read by the consumer, so we may overwrite them.
            let head = self.core.header().consumer.head.load(Acquire);
            // The head only moves forward, and never past our tail: it must lie in
            // [cached_head, tail] (a span of at most `capacity`).
            let moved = head.wrapping_sub(self.cached_head);
            if moved > self.tail.wrapping_sub(self.cached_head)
                || !head.is_multiple_of(RECORD_ALIGN as u64)
            {
                return corrupt("head", head);
            }
            let used = self.tail.wrapping_sub(head);
            self.cached_head = head;
            if cap - used < need {
                // Whoever waits for room next needs the consumer to free it,
                // so it must see every record held back so far.
                self.publish_tail();
                return Ok(None);
            }
        }
        self.core.track_write(self.tail, pad as usize);
        self.core
            .track_write(self.tail.wrapping_add(pad), footprint as usize);
        Ok(Some(Slot {
            pos: self.tail.wrapping_add(pad),
            pad,
        }))
    }

    /// Reserves a record of `len` payload bytes, or fails at once with `Full`, `Closed`
    /// or `TooLarge`. The grant may be committed shorter than `len`.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        match self.poll_space(len)? {
            Some(slot) => Ok(WriteGrant::new(self, slot, len)),
            None => Err(RingError::Full),
        }
    }

    /// Reserves a record, waiting per the policy while the ring is full (`Timeout` after
    /// `timeout`, if given).
    pub fn reserve_blocking(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<WriteGrant<'_>> {
        let slot = wait::wait_blocking(self, timeout, |p| p.poll_space(len))?;
        Ok(WriteGrant::new(self, slot, len))
    }

    /// Reserves a record, waiting asynchronously while the ring is full. Cancel-safe.
    #[cfg(all(feature = "async", not(loom)))]
    pub async fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        let slot = wait::wait_async(self, |p| p.poll_space(len)).await?;
        Ok(WriteGrant::new(self, slot, len))
    }

    /// Whether a record of `len` payload bytes fits now, without reserving it:
    /// `Ready(Ok(()))` if so, else `Pending` with `cx` woken when the consumer frees
    /// room or the ring closes (a spurious wake is possible: poll again). For a
    /// caller that waits for room inside a future of its own (no future of the
    /// ring's to keep). Errors as [`try_reserve`](Self::try_reserve) (but `Full`).
    #[cfg(all(feature = "async", not(loom)))]
    pub fn poll_room(
        &mut self,
        cx: &mut std::task::Context<'_>,
        len: usize,
    ) -> std::task::Poll<Result<()>> {
        wait::poll_wait(self, cx, |p| Ok(p.poll_space(len)?.map(drop)))
    }

    /// Copies `bytes` into a new record and commits it, or fails at once.
    pub fn try_push(&mut self, bytes: &[u8]) -> Result<()> {
        let mut g = self.try_reserve(bytes.len())?;
        g.copy_from_slice(bytes);
        g.commit();
        Ok(())
    }

    /// Copies `bytes` into a new record and commits it, waiting for space.
    pub fn push_blocking(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<()> {
        let mut g = self.reserve_blocking(bytes.len(), timeout)?;
        g.copy_from_slice(bytes);
        g.commit();
        Ok(())
    }

    /// Copies `bytes` into a new record and commits it, waiting asynchronously for space.
    #[cfg(all(feature = "async", not(loom)))]
    pub async fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let mut g = self.reserve(bytes.len()).await?;
        g.copy_from_slice(bytes);
        g.commit();
        Ok(())
    }

    /// Publishes the record in `slot` with a `len`-byte payload.
    #[inline]
    fn commit_slot(&mut self, slot: Slot, len: usize, flags: u16) {
        if slot.pad != 0 {
            let pad = RecordHeader {
                len: (slot.pad - RECORD_HEADER_SIZE as u64) as u32,
                kind: KIND_PAD,
                flags: 0,
                pos: self.tail,
            };
            self.core.store_record(self.tail, pad);
        }
        let hdr = RecordHeader {
            len: len as u32,
            kind: KIND_DATA,
            flags,
            pos: slot.pos,
        };
        self.core.store_record(slot.pos, hdr);
        self.tail = slot.pos.wrapping_add(record_footprint(len) as u64);
        if !self.holding {
            self.publish_tail();
        }
    }

    /// Stores the private tail to shared memory if it moved, and notifies a parked
    /// consumer.
    #[inline]
    fn publish_tail(&mut self) {
        if self.published == self.tail {
            return;
        }
        self.published = self.tail;
        // SYNC POINT P3 (Release) pairs with C1: the record (and PAD) bytes are visible
        // to a consumer that sees this tail (every record before it, held or not).
        self.core.header().producer.tail.store(self.tail, Release);
        if self.policy.notifies() {
            wait::notify(&self.core, Side::Consumer, &self.bells.data, &self.counters);
        }
    }

    /// Holds commits back: records committed from now on become visible to the
    /// consumer together, at the next [`flush`](Self::flush), with one tail store and
    /// at most one doorbell for all of them. A reserve that finds the ring full
    /// publishes what is held before it reports `Full` or waits (so a held batch never
    /// waits for room it holds itself), and closing or dropping the producer publishes
    /// too. Holding is for a writer that commits a known run of records back to back;
    /// it must flush when the run ends.
    #[inline]
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Publishes every record held back by [`hold`](Self::hold) and stops holding.
    #[inline]
    pub fn flush(&mut self) {
        self.holding = false;
        self.publish_tail();
    }

    /// Data capacity of the ring in bytes.
    pub fn capacity(&self) -> usize {
        self.core.capacity as usize
    }

    /// Largest payload a record may carry.
    pub fn max_record(&self) -> usize {
        self.core.max_record as usize
    }

    /// The wait policy (see [`WaitPolicy`] on pairing `Spin`).
    pub fn policy(&self) -> WaitPolicy {
        self.policy
    }

    /// Sets the wait policy.
    pub fn set_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// Closes the producer side: the consumer drains what was committed, then sees
    /// `Closed`; further reserves fail with `Closed`. Also done on drop.
    pub fn close(&self) {
        if self.published != self.tail {
            // SYNC POINT P3 (Release) pairs with C1: held records are published
            // before the close, so the consumer drains them (X1/X2 below).
            self.core.header().producer.tail.store(self.tail, Release);
        }
        // SYNC POINT X1 (Release) pairs with X2 (consumer's closed check).
        self.core.ctl().producer_closed.store(1, Release);
        self.bells.data.ring();
    }

    /// True once either side (or a closer) closed the ring.
    pub fn is_closed(&self) -> bool {
        self.core.closed(Acquire)
    }

    /// This handle's wait and doorbell counters (shared, so they can be read
    /// while the handle is in use elsewhere).
    pub fn counters(&self) -> Arc<HandleCounters> {
        Arc::clone(&self.counters)
    }

    /// A handle that can close the ring from another thread (e.g. a liveness watcher).
    pub fn closer(&self) -> RingCloser {
        RingCloser::new(self.core.clone(), self.bells.clone())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
        self.core.ctl().producer_attached.store(0, Release);
    }
}

impl WaitSide for Producer {
    fn core(&self) -> &RingCore {
        &self.core
    }
    fn side(&self) -> Side {
        Side::Producer
    }
    fn policy(&self) -> WaitPolicy {
        self.policy
    }
    fn bell(&self) -> &Doorbell {
        &self.bells.space
    }
    fn wait_counters(&self) -> &HandleCounters {
        &self.counters
    }
}

#[cfg(all(feature = "async", not(loom)))]
impl wait::AsyncWaitSide for Producer {
    fn async_bell(&mut self) -> Result<&tokio::io::unix::AsyncFd<Doorbell>> {
        let afd = match self.async_space.take() {
            Some(afd) => afd,
            None => wait::register(&self.bells.space)?,
        };
        Ok(self.async_space.insert(afd))
    }
}
