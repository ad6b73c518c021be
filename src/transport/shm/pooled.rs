//! Frames larger than a ring record, through the link's pooled large-buffer
//! area ([`super::pool`]): the send side (lease, encode in place, announce,
//! publish a reference record) and the receive side (check a reference,
//! hand the frame over in place).
//!
//! Ring records of this path (all [`RECORD_LEN`] bytes, little-endian):
//! - [`FLAG_POOL`]: `id u32, 0 u32, generation u64, offset u64, length u64`:
//!   a frame at `offset` of segment `id`'s data area (0, or for a loan the
//!   offset that puts its payload at data offset 4096: see `super::loan`).
//! - [`FLAG_SEGMENT`]: `id u32, 0 u32, size u64, 0 u64, 0 u64`: segment `id`
//!   is the next descriptor on the rendezvous socket (sent before the record,
//!   acknowledged like the per-message large frames).
//! - [`FLAG_RETIRE`]: `id u32, 0 ...`: segment `id` is no longer used.
//!
//! A segment's control page holds, as little-endian u64 words: at 0 the last
//! generation the receiver returned, at 64 `wake` (a waiting sender sets it;
//! the receiver that returns the segment clears it and sends the socket
//! message [`MSG_RETURNED`](super::link::MSG_RETURNED)), at 128 the last
//! generation the receiver read the reference of.
//!
//! Frames that cannot fit in the area even when it is empty (over the cap)
//! still travel in a memfd of their own (`link::write_memfd`).

mod receive;

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use shm_ring::RingError;
use shm_ring::fdpass::send_fds;
use tokio::io::Interest;

use super::large::Source;
use super::link::{FLAG_LARGE, MSG_FD, ShmLink};
use super::pool::{Announce, Grow, Lease};
use crate::codec::DoesNotFit;
use crate::error::{Error, Result};

pub(crate) use receive::{Step, bell, max_segment, on_record};

/// Record flag: a frame in a pooled segment.
pub(crate) const FLAG_POOL: u16 = FLAG_LARGE + 1;
/// Record flag: a new pooled segment (its descriptor is next on the socket).
pub(crate) const FLAG_SEGMENT: u16 = FLAG_LARGE + 2;
/// Record flag: a pooled segment is retired.
pub(crate) const FLAG_RETIRE: u16 = FLAG_LARGE + 3;
/// Size of every record of this path.
pub(crate) const RECORD_LEN: usize = 32;
/// Longest pause between two looks for a free segment (rings wake a
/// waiting sender sooner; this covers a ring lost to a full socket).
const POLL: Duration = Duration::from_millis(5);

/// How long a sender waits for a warm segment of a frame of `len` bytes
/// before mapping a fresh one: about the time to write the frame (1 ns a
/// byte), so a reader that keeps pace never makes the area grow, and one
/// that holds its buffers costs a short delay, not a stall.
fn grace(len: usize) -> Duration {
    Duration::from_nanos(len as u64).clamp(Duration::from_micros(200), Duration::from_millis(20))
}

fn record(words: [u64; 4]) -> [u8; RECORD_LEN] {
    let mut out = [0u8; RECORD_LEN];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// Announcements taken from the pool and not yet in the ring: handed back
/// if the write is abandoned, so no reference ever names an unannounced
/// segment.
struct Pending<'a> {
    link: &'a ShmLink,
    announce: Announce,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let announce = std::mem::replace(
            &mut self.announce,
            Announce {
                new: None,
                retired: Vec::new(),
            },
        );
        self.link.pool.restore(announce);
    }
}

impl ShmLink {
    /// Sends a frame too big for a ring record: through the pool, or in a
    /// memfd of its own when it exceeds the pool's cap.
    pub(crate) async fn write_large(&self, src: Source<'_>) -> Result<()> {
        let mut want = src
            .exact_len()
            .unwrap_or_else(|| self.pool.guess(self.max_record));
        loop {
            if !self.pool.fits_cap(want) {
                return self.write_memfd(src).await;
            }
            let mut lease = self.lease(want).await?;
            match self.encode(src, &mut lease, &mut want)? {
                Some(len) => return self.publish(lease, len).await,
                None => continue,
            }
        }
    }

    /// Non-waiting twin of [`Self::write_large`]: `Full` instead of waiting.
    pub(crate) fn try_write_large(&self, src: Source<'_>) -> Result<()> {
        let mut want = src
            .exact_len()
            .unwrap_or_else(|| self.pool.guess(self.max_record));
        loop {
            if !self.pool.fits_cap(want) {
                return self.try_write_memfd(src);
            }
            let mut lease = self.pool.try_lease(want)?.ok_or(Error::Full)?;
            if let Some(len) = self.encode(src, &mut lease, &mut want)? {
                // Polled once: anything that would wait means the link is full.
                let mut publish = pin!(self.publish(lease, len));
                return match publish
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                {
                    Poll::Ready(sent) => sent,
                    Poll::Pending => Err(Error::Full),
                };
            }
        }
    }

    /// Encodes into the lease; `None` (with `want` raised) when an archive
    /// needs a larger segment.
    fn encode(
        &self,
        src: Source<'_>,
        lease: &mut Lease<'_>,
        want: &mut usize,
    ) -> Result<Option<usize>> {
        match src.encode_into(lease.data_mut()) {
            Ok(len) => {
                // An archive over the peer's limit never reaches it.
                if len > self.peer_max_frame {
                    return Err(Error::PayloadTooLarge {
                        size: len,
                        max: self.peer_max_frame,
                    });
                }
                if src.exact_len().is_none() {
                    self.pool.learn(len);
                }
                Ok(Some(len))
            }
            Err(DoesNotFit) if src.exact_len().is_none() && *want < self.peer_max_frame => {
                *want = want.saturating_mul(4).min(self.peer_max_frame);
                Ok(None)
            }
            Err(DoesNotFit) => Err(src.too_large(self.peer_max_frame)),
        }
    }

    /// Leases a segment, waiting while the area is at its cap and every
    /// segment is still held by the receiver (backpressure; the caller's
    /// deadline bounds the wait). While [`super::pool::pipeline`] segments of the
    /// size are in flight, it waits for one to come back (its pages are
    /// mapped and warm) rather than mapping a fresh one: for as long as the
    /// receiver has not read one of them (it is behind), else up to
    /// [`grace`] (it may be holding them). The receiver rings when it
    /// returns a segment (see `TxPool::arm_wake`); a slow poll covers a
    /// lost ring.
    pub(crate) async fn lease(&self, len: usize) -> Result<Lease<'_>> {
        let warm_until = tokio::time::Instant::now() + grace(len);
        loop {
            let grow = if tokio::time::Instant::now() < warm_until {
                Grow::Warm
            } else {
                Grow::Paced
            };
            let returned = self.pool.returned().notified();
            let mut returned = pin!(returned);
            returned.as_mut().enable();
            if let Some(lease) = self.pool.try_lease_with(len, grow)? {
                return Ok(lease);
            }
            self.pool.arm_wake();
            if let Some(lease) = self.pool.try_lease_with(len, grow)? {
                return Ok(lease);
            }
            let until = match grow {
                Grow::Warm => warm_until,
                Grow::Paced | Grow::Always => tokio::time::Instant::now() + POLL,
            };
            tokio::select! {
                () = returned => {}
                () = tokio::time::sleep_until(until) => {}
                () = self.lost.cancelled() => return Err(Error::PeerLost(self.peer)),
            }
        }
    }

    /// Announces what the lease needs, then writes its reference record.
    async fn publish(&self, lease: Lease<'_>, len: usize) -> Result<()> {
        self.publish_ref(lease.id, lease.gen_, 0, len).await?;
        lease.published();
        Ok(())
    }

    /// Announces what a reference to segment `id` needs, then writes the
    /// reference record (a frame of `len` bytes at data offset `offset`).
    /// Dropped half way, it leaves every announcement owed to the pool.
    pub(crate) async fn publish_ref(
        &self,
        id: u32,
        gen_: u64,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        let mut tx = self.tx.lock().await;
        if self.is_closed_now() {
            return Err(Error::PeerLost(self.peer));
        }
        let mut pending = Pending {
            link: self,
            announce: self.pool.announcements(id),
        };
        while let Some(&retired) = pending.announce.retired.last() {
            self.put_record(&mut tx.producer, FLAG_RETIRE, [u64::from(retired), 0, 0, 0])
                .await?;
            pending.announce.retired.pop();
        }
        // Borrowed, not taken: if this future is dropped half way, `pending`
        // hands the descriptor back to the pool.
        if let Some((id, size, fd)) = &pending.announce.new {
            self.announce_segment(&mut tx.producer, *id, *size, fd)
                .await?;
            pending.announce.new = None;
        }
        let words = [u64::from(id), gen_, offset as u64, len as u64];
        self.put_record(&mut tx.producer, FLAG_POOL, words).await?;
        self.counters.record_large(len);
        Ok(())
    }

    /// Publishes a loan's reference at once when nothing must go before it
    /// (no segment to announce or retire) and the ring has room: `Ok(false)`
    /// when it must wait (then `publish_ref` does it).
    pub(crate) fn try_publish_ref(
        &self,
        id: u32,
        gen_: u64,
        offset: usize,
        len: usize,
    ) -> Result<bool> {
        let Ok(mut tx) = self.tx.try_lock() else {
            return Ok(false);
        };
        if self.is_closed_now() {
            return Err(Error::PeerLost(self.peer));
        }
        let announce = self.pool.announcements(id);
        if announce.new.is_some() || !announce.retired.is_empty() {
            self.pool.restore(announce);
            return Ok(false);
        }
        let mut grant = match tx.producer.try_reserve(RECORD_LEN) {
            Ok(grant) => grant,
            Err(shm_ring::RingError::Full) => return Ok(false),
            Err(e) => return Err(self.ring_error(e)),
        };
        grant.set_flags(FLAG_POOL);
        let words = [u64::from(id), gen_, offset as u64, len as u64];
        grant[..RECORD_LEN].copy_from_slice(&record(words));
        grant.commit_len(RECORD_LEN);
        self.counters.record_large(len);
        Ok(true)
    }

    async fn put_record(
        &self,
        producer: &mut shm_ring::Producer,
        flags: u16,
        words: [u64; 4],
    ) -> Result<()> {
        let mut grant = producer
            .reserve(RECORD_LEN)
            .await
            .map_err(|e| self.ring_error(e))?;
        grant.set_flags(flags);
        grant[..RECORD_LEN].copy_from_slice(&record(words));
        grant.commit_len(RECORD_LEN);
        Ok(())
    }

    /// Passes a new segment's descriptor, then commits its record.
    async fn announce_segment(
        &self,
        producer: &mut shm_ring::Producer,
        id: u32,
        size: usize,
        fd: &OwnedFd,
    ) -> Result<()> {
        let permit = tokio::select! {
            permit = self.large_window.acquire() => {
                permit.map_err(|_| Error::PeerLost(self.peer))?
            }
            () = self.lost.cancelled() => return Err(Error::PeerLost(self.peer)),
        };
        let mut grant = producer
            .reserve(RECORD_LEN)
            .await
            .map_err(|e| self.ring_error(e))?;
        grant.set_flags(FLAG_SEGMENT);
        grant[..RECORD_LEN].copy_from_slice(&record([u64::from(id), size as u64, 0, 0]));
        let send = self.stream.async_io(Interest::WRITABLE, || {
            send_fds(self.stream.as_fd(), &[MSG_FD], &[fd.as_fd()]).map_err(|e| match e {
                RingError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            })
        });
        tokio::select! {
            sent = send => sent.map_err(|_| Error::PeerLost(self.peer))?,
            () = self.lost.cancelled() => return Err(Error::PeerLost(self.peer)),
        }
        grant.commit_len(RECORD_LEN);
        permit.forget();
        Ok(())
    }

    fn is_closed_now(&self) -> bool {
        crate::transport::PeerLink::is_closed(self)
    }
}
