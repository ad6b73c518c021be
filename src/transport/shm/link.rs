//! One shared-memory link: the send side (`PeerLink`), liveness and teardown.
//!
//! Frames go into the producer ring encoded in place. A frame larger than a
//! ring record goes through the link's pooled area ([`super::pooled`]); one
//! larger than the whole area travels as a sealed memfd over the rendezvous
//! socket, announced by a marker record (see [`super::large`]). At most
//! [`LARGE_WINDOW`] descriptors (such frames, or new pool segments) are in
//! flight per link, each acknowledged by the receiver.
//!
//! Socket messages after the handshake are single bytes: [`MSG_FD`] carries
//! one descriptor, [`MSG_ACK`] returns a window slot. End of file means the
//! peer is gone.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use rkyv::ser::allocator::Arena;
use shm_ring::{Producer, RingCloser, RingError};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Registry;
use super::large::Source;
use super::txlock::TxLock;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::runtime::deadline;
use crate::stats::LinkCounters;
use crate::transport::{BoxFuture, LinkEvents, OutFrame, PeerLink, TransportKind};
use crate::wire::{Header, Kind, ProtocolError};

/// Record flag: the record is one wire frame.
pub(crate) const FLAG_FRAME: u16 = 0;
/// Record flag: the frame comes as the next descriptor on the socket; the
/// record holds its length (u64 LE) and 8 zero bytes.
pub(crate) const FLAG_LARGE: u16 = 1;
/// Size of a large-frame marker record.
pub(crate) const MARKER_LEN: usize = 16;
/// Large frames in flight (descriptors sent, not yet acknowledged) per link.
pub(crate) const LARGE_WINDOW: usize = 8;
/// Socket message: one descriptor (a large frame) is attached.
pub(crate) const MSG_FD: u8 = b'F';
/// Socket message: the receiver took a large frame.
pub(crate) const MSG_ACK: u8 = b'A';
/// Socket message: a liveness probe (answered with [`MSG_PONG`]).
pub(crate) const MSG_PING: u8 = b'P';
/// Socket message: the answer to a liveness probe.
pub(crate) const MSG_PONG: u8 = b'Q';
/// Socket message: a pooled segment the sender waits for came back.
pub(crate) const MSG_RETURNED: u8 = b'R';
/// Smallest reservation for a frame whose size is unknown before encoding.
const MIN_GUESS: usize = 4096;

/// The producer ring and the adaptive size guess for archives.
pub(crate) struct Tx {
    pub(crate) producer: Producer,
    pub(super) guess: usize,
    /// The record size the last `Full` write needed.
    pub(super) want: usize,
    /// The archiving scratch space of this link's senders (made once).
    pub(super) arena: Arena,
}

impl Tx {
    pub(crate) fn new(producer: Producer) -> Self {
        let guess = MIN_GUESS.min(producer.max_record());
        Self {
            producer,
            guess,
            want: guess,
            arena: Arena::new(),
        }
    }
}

/// What a non-waiting write achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wrote {
    Done,
    Full,
    /// The frame does not fit in a ring record.
    Large,
}

/// A link to one peer over a pair of rings.
pub(crate) struct ShmLink {
    pub(crate) peer: InstanceId,
    pub(crate) local: InstanceId,
    pub(crate) tx: TxLock,
    pub(crate) max_record: usize,
    pub(crate) peer_max_frame: usize,
    pub(crate) stream: UnixStream,
    pub(crate) closers: [RingCloser; 2],
    pub(crate) closed: AtomicBool,
    pub(crate) reported: AtomicBool,
    /// Cancelled when the link goes down (wakes every waiter).
    pub(crate) lost: CancellationToken,
    pub(crate) large_window: Semaphore,
    /// The pooled large-buffer area this side sends from.
    pub(crate) pool: Arc<super::pool::TxPool>,
    pub(crate) events: Arc<dyn LinkEvents>,
    pub(crate) registry: Weak<Registry>,
    pub(crate) serial: u64,
    /// The peer opened this link (we accepted it).
    pub(crate) inbound: bool,
    /// When the link came up; liveness times count from it.
    pub(crate) born: std::time::Instant,
    /// Milliseconds after `born` of the last pong.
    pub(crate) heard_ms: std::sync::atomic::AtomicU64,
    /// Set while the peer answers no liveness probe.
    pub(crate) unresponsive: AtomicBool,
    /// Frames, bytes and the rings' waits on this link.
    pub(crate) counters: LinkCounters,
    /// The consumer ring's reader state, while nobody reads the ring.
    pub(crate) reader: super::reader::ReaderSlot,
}

impl std::fmt::Debug for ShmLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLink")
            .field("peer", &self.peer)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

pub(super) fn next_guess(written: usize, max: usize) -> usize {
    (written + written / 2)
        .next_power_of_two()
        .clamp(MIN_GUESS.min(max), max)
}

impl ShmLink {
    pub(super) fn check_open(&self) -> Result<()> {
        // Acquire: pairs with the AcqRel swap in `shut`.
        if self.closed.load(Ordering::Acquire) {
            Err(Error::PeerLost(self.peer))
        } else {
            Ok(())
        }
    }

    pub(super) fn check_size(&self, len: usize) -> Result<()> {
        if len > self.peer_max_frame {
            Err(Error::PayloadTooLarge {
                size: len,
                max: self.peer_max_frame,
            })
        } else {
            Ok(())
        }
    }

    /// Maps a ring failure to the caller's error; corruption drops the link.
    pub(super) fn ring_error(&self, e: RingError) -> Error {
        match e {
            RingError::Closed => Error::PeerLost(self.peer),
            RingError::Corrupt { .. } => {
                self.violation(ProtocolError::Link(e.to_string()));
                Error::PeerLost(self.peer)
            }
            other => Error::Transport(other.to_string()),
        }
    }

    /// The peer broke the protocol: report it and drop the link.
    pub(crate) fn violation(&self, err: ProtocolError) {
        tracing::warn!(peer = %self.peer, %err, "shm link dropped: protocol violation");
        self.counters.record_protocol_error();
        self.events.on_protocol_error(Some(self.peer), &err);
        self.shut();
    }

    /// Sends a one-byte socket message if the socket takes it now (probes
    /// and pongs: a full socket is itself no answer, so nothing waits).
    pub(crate) fn send_byte_now(&self, byte: u8) {
        use nix::sys::socket::{MsgFlags, send};
        let sent = self.stream.try_io(Interest::WRITABLE, || {
            send(self.stream.as_raw_fd(), &[byte], MsgFlags::MSG_NOSIGNAL)
                .map(drop)
                .map_err(std::io::Error::from)
        });
        if let Err(e) = sent {
            tracing::trace!(peer = %self.peer, %e, "socket message not sent");
        }
    }

    /// Tells the sender a large frame was taken (returns a window slot).
    pub(crate) async fn ack_large(&self) {
        use nix::sys::socket::{MsgFlags, send};
        let ack = self.stream.async_io(Interest::WRITABLE, || {
            send(self.stream.as_raw_fd(), &[MSG_ACK], MsgFlags::MSG_NOSIGNAL)
                .map(drop)
                .map_err(std::io::Error::from)
        });
        tokio::select! {
            sent = ack => if let Err(e) = sent {
                tracing::debug!(peer = %self.peer, %e, "large-frame ack not sent");
            },
            () = self.lost.cancelled() => {}
        }
    }

    /// Marks the link down: senders fail with `PeerLost`, both rings close
    /// (waking every parked reader and writer), the socket shuts so the peer
    /// sees end of file. Idempotent. The reader task then drains what was
    /// committed and reports the loss once ([`Self::finish`]).
    pub(crate) fn shut(&self) {
        // AcqRel: pairs with the Acquire loads in `check_open` / `is_closed`.
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for closer in &self.closers {
            closer.close();
        }
        let _ =
            nix::sys::socket::shutdown(self.stream.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        self.lost.cancel();
        self.wake_senders();
    }

    /// Called once by the reader task when it ends: reports the loss exactly
    /// once and forgets the link.
    pub(crate) fn finish(&self) {
        self.shut();
        self.report_lost();
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.serial);
        }
    }

    /// Reports the loss to the runtime, once (the first caller does).
    pub(crate) fn report_lost(&self) {
        // AcqRel: exactly one caller reports.
        if !self.reported.swap(true, Ordering::AcqRel) {
            tracing::debug!(peer = %self.peer, "shm link lost");
            self.events.on_link_lost(self.peer);
        }
    }

    /// Best effort: a goodbye frame if the ring takes it right now.
    fn say_goodbye(&self) {
        if let Ok(mut tx) = self.tx.try_lock() {
            let header = Header::new(Kind::Goodbye, MessageId(1), self.local);
            let frame = OutFrame::bytes(header, "", &[]);
            let _ = self.write_now(&mut tx, Source::Frame(&frame));
        }
    }
}

impl PeerLink for ShmLink {
    fn peer(&self) -> InstanceId {
        self.peer
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Shm
    }

    fn send<'a>(&'a self, mut frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        // Both ends share this host's clock (see `runtime::deadline`).
        deadline::to_monotonic(&mut frame.header);
        Box::pin(async move { self.write_frame(&frame).await })
    }

    fn try_send(&self, mut frame: OutFrame<'_>) -> Result<()> {
        deadline::to_monotonic(&mut frame.header);
        if let Some(loan) = self.lent_here(&frame) {
            // A loan goes out in place; when its reference must wait (ring
            // full, a segment to announce), `Full` sends the caller to `send`.
            return match self.try_send_loaned(&frame, loan)? {
                true => Ok(()),
                false => Err(Error::Full),
            };
        }
        self.try_write(Source::Frame(&frame))
    }

    fn poll_writable(
        &self,
        cx: &mut std::task::Context<'_>,
        frame: &OutFrame<'_>,
    ) -> std::task::Poll<Result<()>> {
        self.poll_room(cx, frame)
    }

    fn try_send_batch<'f>(
        &self,
        frame: &dyn Fn(usize) -> OutFrame<'f>,
        from: usize,
        to: usize,
    ) -> Result<usize> {
        self.write_batch(frame, from, to)
    }

    fn try_send_encoded(
        &self,
        head: &crate::wire::EncodedHead,
        id: MessageId,
        payload: crate::transport::PayloadRef<'_>,
    ) -> Result<()> {
        self.try_write_encoded(head, id, payload)
    }

    fn try_send_encoded_batch<'f>(
        &self,
        head: &crate::wire::EncodedHead,
        next_id: &dyn Fn() -> MessageId,
        payload: &dyn Fn(usize) -> crate::transport::PayloadRef<'f>,
        from: usize,
        to: usize,
    ) -> Result<usize> {
        self.write_encoded_batch(head, next_id, payload, from, to)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn loss_reported(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `report_lost`, which the
        // reader makes only after draining what the peer committed.
        self.reported.load(Ordering::Acquire)
    }

    fn counters(&self) -> Option<&LinkCounters> {
        Some(&self.counters)
    }

    fn is_unresponsive(&self) -> bool {
        // Acquire: pairs with the AcqRel swaps in `liveness`.
        self.unresponsive.load(Ordering::Acquire)
    }

    fn close(&self) {
        if !self.is_closed() {
            self.say_goodbye();
            self.shut();
        }
    }

    fn drive(&self, until: &mut dyn FnMut() -> bool) -> crate::transport::Driven {
        self.drive_ring(until)
    }

    fn try_loan(&self, len: usize) -> Result<Option<crate::Loan>> {
        self.try_lend(len)
    }

    fn loan(&self, len: usize) -> BoxFuture<'_, Result<crate::Loan>> {
        Box::pin(self.lend(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_grow_with_frames_and_stay_bounded() {
        assert_eq!(next_guess(100, 1 << 19), MIN_GUESS);
        assert_eq!(next_guess(5000, 1 << 19), 8192);
        assert_eq!(next_guess(400_000, 1 << 19), 1 << 19);
        assert_eq!(next_guess(100, 2032), 2032);
    }
}
