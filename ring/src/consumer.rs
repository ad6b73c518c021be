//! The consumer handle: read a record in place, then release it.

mod grant;

use std::sync::Arc;
use std::time::Duration;

use crate::core::{RingCloser, RingCore};
use crate::counters::HandleCounters;
use crate::doorbell::{Bells, Doorbell};
use crate::error::{Result, RingError, corrupt};
use crate::layout::{RECORD_ALIGN, RECORD_HEADER_SIZE, record_footprint};
use crate::record::{Found, validate};
use crate::region::Region;
use crate::sync::Ordering::*;
use crate::wait::{self, Side, WaitPolicy, WaitSide};

pub use grant::ReadGrant;

/// The reading half of a ring. `Send`, not `Sync`; one per ring.
///
/// Its head is authoritative here, in private memory; the shared copy only publishes it.
/// The producer's tail is cached and reloaded only when the cached view says "empty".
/// Releases are published lazily: the shared head is stored once at least
/// [`release_batch`](Consumer::release_batch) bytes were released, and always before the
/// consumer reports `Empty`/`Closed` or parks, so a producer waiting on a full ring does not
/// steal the head's cache line on every record. Everything read from shared memory is validated; violations give
/// [`RingError::Corrupt`].
pub struct Consumer {
    core: RingCore,
    /// Private head: every record before it was consumed (PADs may be skipped ahead of
    /// the published head).
    head: u64,
    /// Last head stored to shared memory; `head - published <= capacity`.
    published: u64,
    /// Publish once `head - published` reaches this many bytes.
    batch: u64,
    /// Last validated tail; `cached_tail - head <= capacity` always.
    cached_tail: u64,
    policy: WaitPolicy,
    bells: Bells,
    /// Wait and doorbell counters, in this process's memory only.
    counters: Arc<HandleCounters>,
    #[cfg(all(feature = "async", not(loom)))]
    async_data: Option<tokio::io::unix::AsyncFd<Doorbell>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("capacity", &self.core.capacity)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A validated record found at the head.
#[derive(Clone, Copy, Debug)]
struct Rec {
    pos: u64,
    len: usize,
    flags: u16,
}

impl Consumer {
    /// Attaches the consumer side of the ring initialised at `offset` of `region`.
    ///
    /// Validates the header and the current indices; fails with
    /// [`RingError::AlreadyAttached`] if a consumer handle is already attached.
    pub fn attach(region: &Arc<Region>, offset: usize, bells: Bells) -> Result<Self> {
        let core = RingCore::attach(region, offset)?;
        let h = core.header();
        if (h.control.consumer_attached)
            .compare_exchange(0, 1, Acquire, Relaxed)
            .is_err()
        {
            return Err(RingError::AlreadyAttached { side: "consumer" });
        }
        // Our own index is read from shared memory once, here, and never again.
        let head = h.consumer.head.load(Acquire);
        if head % RECORD_ALIGN as u64 != 0 {
            h.control.consumer_attached.store(0, Release);
            return corrupt("head at attach", head);
        }
        let batch = (core.capacity / 16).max(RECORD_ALIGN as u64);
        Ok(Consumer {
            core,
            head,
            published: head,
            batch,
            cached_tail: head,
            policy: WaitPolicy::default(),
            bells,
            counters: Arc::default(),
            #[cfg(all(feature = "async", not(loom)))]
            async_data: None,
        })
    }

    /// Reloads the shared tail; returns whether data is available.
    #[inline]
    fn refresh_tail(&mut self) -> Result<bool> {
        // SYNC POINT C1 (Acquire) pairs with P3: the records before this tail are visible.
        let tail = self.core.header().producer.tail.load(Acquire);
        // The tail only moves forward, and at most `capacity` ahead of our head: it must
        // lie in [cached_tail, head + capacity].
        let limit = self
            .head
            .wrapping_add(self.core.capacity)
            .wrapping_sub(self.cached_tail);
        if tail.wrapping_sub(self.cached_tail) > limit || !tail.is_multiple_of(RECORD_ALIGN as u64)
        {
            return corrupt("tail", tail);
        }
        let avail = tail.wrapping_sub(self.head);
        self.cached_tail = tail;
        Ok(avail != 0)
    }

    /// Finds the next committed record; `Ok(None)` when empty, `Closed` when empty and
    /// closed.
    // Always inlined: returned through memory, the result was read back with
    // wider loads than it was stored with (a store-forwarding stall per record).
    #[inline(always)]
    fn poll_record(&mut self) -> Result<Option<Rec>> {
        // At most two rounds: a PAD is never at offset 0, and after a PAD the head is.
        for _ in 0..2 {
            if self.head == self.cached_tail && !self.refresh_tail()? {
                // Nothing to read: hand every released byte back before reporting it
                // (and before any park).
                self.publish_head();
                // SYNC POINT X2 (Acquire) pairs with X1: after seeing the closed flag, one
                // more tail load sees every commit made before the close.
                if !self.core.closed(Acquire) {
                    return Ok(None);
                }
                if !self.refresh_tail()? {
                    return Err(RingError::Closed);
                }
            }
            let avail = self.cached_tail.wrapping_sub(self.head);
            let hdr = self.core.load_record(self.head);
            let (cap, max) = (self.core.capacity, self.core.max_record);
            match validate(hdr, self.head, avail, cap, max)? {
                Found::Pad { skip } => self.head = self.head.wrapping_add(skip),
                Found::Data { len, flags } => {
                    self.core
                        .track_read(self.head.wrapping_add(RECORD_HEADER_SIZE as u64), len);
                    let pos = self.head;
                    return Ok(Some(Rec { pos, len, flags }));
                }
            }
        }
        corrupt("pad at buffer start", self.head)
    }

    /// Returns the next record, or fails at once with `Empty`, `Closed` (empty and
    /// closed) or `Corrupt`. Dropping the grant without releasing keeps the record.
    #[inline]
    pub fn try_read(&mut self) -> Result<ReadGrant<'_>> {
        match self.poll_record()? {
            Some(rec) => Ok(ReadGrant {
                consumer: self,
                rec,
            }),
            None => Err(RingError::Empty),
        }
    }

    /// Returns the next record, waiting per the policy while the ring is empty
    /// (`Timeout` after `timeout`, if given).
    pub fn read_blocking(&mut self, timeout: Option<Duration>) -> Result<ReadGrant<'_>> {
        let rec = wait::wait_blocking(self, timeout, Consumer::poll_record)?;
        Ok(ReadGrant {
            consumer: self,
            rec,
        })
    }

    /// Returns the next record, waiting asynchronously while the ring is empty.
    /// Cancel-safe.
    #[cfg(all(feature = "async", not(loom)))]
    pub async fn read(&mut self) -> Result<ReadGrant<'_>> {
        let rec = wait::wait_async(self, Consumer::poll_record).await?;
        Ok(ReadGrant {
            consumer: self,
            rec,
        })
    }

    /// Frees `rec` and everything before it (published lazily, see the type docs).
    #[inline]
    fn release_rec(&mut self, rec: Rec) {
        self.head = rec.pos.wrapping_add(record_footprint(rec.len) as u64);
        if self.head.wrapping_sub(self.published) >= self.batch {
            self.publish_head();
        }
    }

    /// Stores the private head to shared memory if it moved, and notifies a parked
    /// producer.
    #[inline]
    fn publish_head(&mut self) {
        if self.head == self.published {
            return;
        }
        self.published = self.head;
        // SYNC POINT C3 (Release) pairs with P1: we are done reading the freed bytes.
        self.core.header().consumer.head.store(self.head, Release);
        if self.policy.notifies() {
            wait::notify(
                &self.core,
                Side::Producer,
                &self.bells.space,
                &self.counters,
            );
        }
    }

    /// Makes every released byte visible to the producer now. Releases are otherwise
    /// published once [`release_batch`](Self::release_batch) bytes accumulate or when the
    /// ring runs empty, so a consumer that stops reading with records still queued (e.g.
    /// to apply backpressure) hides up to that much free space from the producer until it
    /// calls this or reads on.
    pub fn publish(&mut self) {
        self.publish_head();
    }

    /// Bytes released before the shared head is updated (default: capacity / 16).
    pub fn release_batch(&self) -> usize {
        self.batch as usize
    }

    /// Sets the release batch, clamped to `16..=capacity`: 16 publishes every release,
    /// `capacity` only when the ring runs empty. Larger batches cost the producer up to
    /// that much visible space while the consumer is busy; they never deadlock, since
    /// the consumer publishes before it reports `Empty` or parks.
    pub fn set_release_batch(&mut self, bytes: usize) {
        self.batch = (bytes as u64).clamp(RECORD_ALIGN as u64, self.core.capacity);
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

    /// Closes the consumer side: the producer's reserves fail with `Closed`. Also done
    /// on drop.
    pub fn close(&self) {
        self.core.ctl().consumer_closed.store(1, Release);
        self.bells.space.ring();
    }

    /// True once either side (or a closer) closed the ring. Records committed before
    /// the close can still be read.
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

impl Drop for Consumer {
    fn drop(&mut self) {
        self.publish_head();
        self.close();
        self.core.ctl().consumer_attached.store(0, Release);
    }
}

impl WaitSide for Consumer {
    fn core(&self) -> &RingCore {
        &self.core
    }
    fn side(&self) -> Side {
        Side::Consumer
    }
    fn policy(&self) -> WaitPolicy {
        self.policy
    }
    fn bell(&self) -> &Doorbell {
        &self.bells.data
    }
    fn wait_counters(&self) -> &HandleCounters {
        &self.counters
    }
}

#[cfg(all(feature = "async", not(loom)))]
impl wait::AsyncWaitSide for Consumer {
    fn async_bell(&mut self) -> Result<&tokio::io::unix::AsyncFd<Doorbell>> {
        let afd = match self.async_data.take() {
            Some(afd) => afd,
            None => wait::register(&self.bells.data)?,
        };
        Ok(self.async_data.insert(afd))
    }
}
