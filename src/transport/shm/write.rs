//! The write paths of a shared-memory link: a frame encoded into a ring
//! record (waiting for room or not), and a frame too big for the pooled area
//! sent as a sealed memfd of its own (see [`super::large`]).

use std::os::fd::AsFd;

use shm_ring::fdpass::send_fds;
use shm_ring::{Producer, RingError, WriteGrant};
use tokio::io::Interest;
use tokio::sync::TryAcquireError;

use super::large::{self, Blob, Source};
use super::link::{FLAG_LARGE, MARKER_LEN, MSG_FD, ShmLink, Tx, Wrote, next_guess};
use super::txlock::TxGuard;
use crate::codec::DoesNotFit;
use crate::error::{Error, Result};

/// The room a writer that found the ring full waits for: the record that
/// did not fit, or a quarter of the ring if that is more (as a record
/// allows). A stream of small frames against a slower reader then wakes its
/// writer once per quarter ring, not once per record, and the writes after
/// the wake find room at once (no waiting future per message).
pub(super) fn room_to_wait_for(want: usize, producer: &Producer) -> usize {
    let low_water = (producer.capacity() / 4).min(producer.max_record());
    want.max(low_water)
}

/// `Wrote::Large`, noting in `tx.want` that the frame goes past a ring
/// record (of `exact` bytes, or more than `max`): a sender that then finds
/// the pooled area full waits for a segment, not for ring room (`room`).
fn went_large(tx: &mut Tx, exact: Option<usize>, max: usize) -> Wrote {
    tx.want = exact.unwrap_or(max.saturating_add(1));
    Wrote::Large
}

fn ring_io(e: RingError) -> std::io::Error {
    match e {
        RingError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

fn mismatch() -> Error {
    Error::Codec("frame larger than its announced size".into())
}

impl ShmLink {
    async fn lock_tx(&self) -> Result<TxGuard<'_>> {
        let guard = self.tx.lock().await;
        self.check_open()?;
        Ok(guard)
    }

    async fn reserve<'p>(&self, p: &'p mut Producer, len: usize) -> Result<WriteGrant<'p>> {
        p.reserve(len).await.map_err(|e| self.ring_error(e))
    }

    /// Writes one frame into the ring without waiting: the one place a
    /// frame is encoded into a ring record. On `Full`, `tx.want` holds the
    /// record size that did not fit; on `Large`, a size over a record.
    pub(crate) fn write_now(&self, tx: &mut Tx, src: Source<'_>) -> Result<Wrote> {
        let max = self.max_record;
        let exact = src.exact_len();
        if exact.is_some_and(|len| len > max) {
            return Ok(went_large(tx, exact, max));
        }
        let mut len = exact.unwrap_or(tx.guess);
        loop {
            let mut grant = match tx.producer.try_reserve(len) {
                Ok(grant) => grant,
                Err(RingError::Full) => {
                    tx.want = len;
                    return Ok(Wrote::Full);
                }
                Err(e) => return Err(self.ring_error(e)),
            };
            match src.encode_into(&mut grant) {
                Ok(written) => {
                    // Dropped uncommitted: an archive over the peer's limit
                    // never reaches it (it would drop the link).
                    self.check_size(written)?;
                    grant.commit_len(written);
                    self.counters.record_sent_by_sole_writer(written);
                    if exact.is_none() {
                        tx.guess = next_guess(written, max);
                    }
                    return Ok(Wrote::Done);
                }
                Err(DoesNotFit) if exact.is_some() => return Err(mismatch()),
                Err(DoesNotFit) if len < max => len = (len * 4).min(max),
                Err(DoesNotFit) => return Ok(went_large(tx, exact, max)),
            }
        }
    }

    /// Writes one frame, waiting for room (backpressure): [`Self::write_now`]
    /// again each time the ring has room for the record that did not fit.
    pub(crate) async fn write(&self, src: Source<'_>) -> Result<()> {
        self.check_open()?;
        if let Some(len) = src.exact_len() {
            self.check_size(len)?;
        }
        let wrote = {
            let mut tx = self.lock_tx().await?;
            loop {
                match self.write_now(&mut tx, src)? {
                    Wrote::Full => {
                        let want = room_to_wait_for(tx.want, &tx.producer);
                        // Dropped unused (publishes nothing): it only
                        // waited for the room.
                        let _room = self.reserve(&mut tx.producer, want).await?;
                    }
                    wrote => break wrote,
                }
            }
        };
        match wrote {
            Wrote::Large => self.write_large(src).await,
            _ => Ok(()),
        }
    }

    /// Sends a frame too big for the pooled area as a sealed memfd of its own.
    pub(super) async fn write_memfd(&self, src: Source<'_>) -> Result<()> {
        let permit = tokio::select! {
            permit = self.large_window.acquire() => {
                permit.map_err(|_| Error::PeerLost(self.peer))?
            }
            () = self.lost.cancelled() => return Err(Error::PeerLost(self.peer)),
        };
        // Encoded before taking the ring, so other senders are not held up.
        let blob = large::encode(src, self.peer_max_frame)?;
        let mut tx = self.lock_tx().await?;
        let mut marker = self.reserve(&mut tx.producer, MARKER_LEN).await?;
        marker.set_flags(FLAG_LARGE);
        marker[..8].copy_from_slice(&(blob.len as u64).to_le_bytes());
        marker[8..MARKER_LEN].fill(0);
        // The descriptor goes first, so it is there when the marker is read.
        let send = self
            .stream
            .async_io(Interest::WRITABLE, || self.send_fd(&blob));
        tokio::select! {
            sent = send => sent.map_err(|_| Error::PeerLost(self.peer))?,
            () = self.lost.cancelled() => return Err(Error::PeerLost(self.peer)),
        }
        marker.commit_len(MARKER_LEN);
        self.counters.record_large(blob.len);
        permit.forget();
        Ok(())
    }

    fn send_fd(&self, blob: &Blob) -> std::io::Result<()> {
        send_fds(self.stream.as_fd(), &[MSG_FD], &[blob.fd.as_fd()]).map_err(ring_io)
    }

    /// Non-waiting twin of [`Self::write`]: `Full` instead of waiting.
    pub(crate) fn try_write(&self, src: Source<'_>) -> Result<()> {
        self.check_open()?;
        if let Some(len) = src.exact_len() {
            self.check_size(len)?;
        }
        let wrote = {
            let mut tx = self.tx.try_lock().map_err(|_| Error::Full)?;
            self.write_now(&mut tx, src)?
        };
        match wrote {
            Wrote::Done => Ok(()),
            Wrote::Full => Err(Error::Full),
            Wrote::Large => self.try_write_large(src),
        }
    }

    pub(super) fn try_write_memfd(&self, src: Source<'_>) -> Result<()> {
        let permit = self.large_window.try_acquire().map_err(|e| match e {
            TryAcquireError::NoPermits => Error::Full,
            TryAcquireError::Closed => Error::PeerLost(self.peer),
        })?;
        let blob = large::encode(src, self.peer_max_frame)?;
        let mut tx = self.tx.try_lock().map_err(|_| Error::Full)?;
        let mut marker = match tx.producer.try_reserve(MARKER_LEN) {
            Ok(grant) => grant,
            Err(RingError::Full) => return Err(Error::Full),
            Err(e) => return Err(self.ring_error(e)),
        };
        marker.set_flags(FLAG_LARGE);
        marker[..8].copy_from_slice(&(blob.len as u64).to_le_bytes());
        marker[8..MARKER_LEN].fill(0);
        match self
            .stream
            .try_io(Interest::WRITABLE, || self.send_fd(&blob))
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Error::Full),
            Err(_) => return Err(Error::PeerLost(self.peer)),
        }
        marker.commit_len(MARKER_LEN);
        self.counters.record_large(blob.len);
        permit.forget();
        Ok(())
    }
}
