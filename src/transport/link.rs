//! A link to one peer ([`PeerLink`]): what it sends, lends and reports.

use std::sync::Arc;
use std::task::{Context, Poll};

#[cfg(doc)]
use super::LinkEvents;
use super::{BoxFuture, OutFrame, PayloadRef, TransportKind};
use crate::error::Result;
use crate::ids::{InstanceId, MessageId};
use crate::stats::LinkCounters;
use crate::wire;

/// A link to one peer. Sending is ordered per link.
pub trait PeerLink: Send + Sync + 'static {
    /// The peer at the other end.
    fn peer(&self) -> InstanceId;
    /// Which transport carries this link.
    fn kind(&self) -> TransportKind;
    /// Sends one frame, waiting while the link is full (backpressure).
    /// Fails with `PeerLost` once the link is broken and `PayloadTooLarge`
    /// for frames over the transport's limit.
    fn send<'a>(&'a self, frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>>;
    /// Sends one frame or fails at once with `Full` when the link is full.
    fn try_send(&self, frame: OutFrame<'_>) -> Result<()>;
    /// Waits for room for `frame` after [`try_send`](Self::try_send) failed
    /// with `Full`, inside the caller's own future (nothing boxed, nothing
    /// allocated): `Ready(Ok(()))` when the caller should try `try_send`
    /// again (it may find the link full again if another sender took the
    /// room; then it polls again); `Pending` with `cx`'s waker registered to
    /// be woken when room may have freed or the link broke (register, then
    /// look again: no wake-up may be lost); `Ready(Err(..))` once the link is
    /// broken. `Ready(Err(Error::Full))` says the link cannot wait this way
    /// for this frame: the caller sends it with [`send`](Self::send) instead.
    /// That is the default, so a transport without it keeps working.
    fn poll_writable(&self, cx: &mut Context<'_>, frame: &OutFrame<'_>) -> Poll<Result<()>> {
        let _ = (cx, frame);
        Poll::Ready(Err(crate::Error::Full))
    }
    /// Sends the frames `frame(i)` for `i` in `from..to`, in order, as one
    /// batch where the transport can (shared memory: written back to back
    /// under one lock and published to the peer together), without waiting:
    /// returns how many it sent, stopping at the first that does not fit now
    /// (`Ok(0)` if that is the first: the caller sends it with
    /// [`send`](Self::send), which waits) or fails (an error only when that is
    /// the first). `frame` may be called more than once for the same `i`. By
    /// default one [`try_send`](Self::try_send) each.
    fn try_send_batch<'f>(
        &self,
        frame: &dyn Fn(usize) -> OutFrame<'f>,
        from: usize,
        to: usize,
    ) -> Result<usize> {
        let mut i = from;
        while i < to {
            match self.try_send(frame(i)) {
                Ok(()) => i += 1,
                Err(crate::Error::Full) => break,
                Err(e) if i == from => return Err(e),
                // Reported when the caller retries it as the next batch's first.
                Err(_) => break,
            }
        }
        Ok(i - from)
    }
    /// Sends, or fails at once with `Full` as [`try_send`](Self::try_send)
    /// does, the frame made of `head` (encoded ahead: a prepared sender's),
    /// message id `id` and `payload` (flag `RAW` unless it is an archive). A
    /// transport that writes frames into its own buffer copies the encoded
    /// head there; by default the frame goes to `try_send`.
    fn try_send_encoded(
        &self,
        head: &wire::EncodedHead,
        id: MessageId,
        payload: PayloadRef<'_>,
    ) -> Result<()> {
        let raw = !matches!(payload, PayloadRef::Archive(_));
        self.try_send(OutFrame {
            header: head.header_for(id, raw),
            name: head.name(),
            payload,
        })
    }
    /// Sends the frames of `head` with the payloads `payload(i)` for `i` in
    /// `from..to` (each frame takes its message id from `next_id`), in order, as one batch where the transport can, without waiting, as
    /// [`try_send_batch`](Self::try_send_batch) does. By default one
    /// [`try_send_encoded`](Self::try_send_encoded) each.
    fn try_send_encoded_batch<'f>(
        &self,
        head: &wire::EncodedHead,
        next_id: &dyn Fn() -> MessageId,
        payload: &dyn Fn(usize) -> PayloadRef<'f>,
        from: usize,
        to: usize,
    ) -> Result<usize> {
        let frame = |i: usize| {
            let raw = !matches!(payload(i), PayloadRef::Archive(_));
            OutFrame {
                header: head.header_for(next_id(), raw),
                name: head.name(),
                payload: payload(i),
            }
        };
        self.try_send_batch(&frame, from, to)
    }
    /// Whether the link is known to be broken.
    fn is_closed(&self) -> bool;
    /// Whether the link has reported its loss through
    /// [`LinkEvents::on_link_lost`], i.e. delivered every reply it will ever
    /// deliver. A transport that drains what its peer sent after the link
    /// closed says `false` until then; the default is [`is_closed`](Self::is_closed).
    fn loss_reported(&self) -> bool {
        self.is_closed()
    }
    /// Whether the peer at the other end is trusted with privileged system
    /// calls (`_request_shutdown`). By default, shared-memory links (their
    /// peer passed the `SO_PEERCRED` uid check: same uid, or a uid explicitly
    /// allowed) and in-process links are; TCP links are only when their
    /// connection authenticated with the shared secret (they override this).
    fn is_trusted(&self) -> bool {
        matches!(self.kind(), TransportKind::Local | TransportKind::Shm)
    }
    /// Whether the peer is known to be alive but not responding (a
    /// liveness probe went unanswered); new calls then fail at once with
    /// `PeerUnresponsive`. Transports without probes never say so.
    fn is_unresponsive(&self) -> bool {
        false
    }
    /// The link's own counters (frames and bytes each way, ring waits, ...),
    /// which the runtime reports per peer. A transport that keeps a
    /// [`LinkCounters`] in each link returns it here (and bumps it on its
    /// send and receive paths); by default a link reports none.
    fn counters(&self) -> Option<&LinkCounters> {
        None
    }
    /// Closes the link (sending a goodbye where possible). Idempotent.
    fn close(&self);
    /// Lets a caller that waits for a reply on this link read the link
    /// itself, on its own thread, instead of waiting to be woken by the
    /// link's reader (a transport whose reader is a ring it can poll).
    /// `until` says whether the caller's outcome is there; the transport
    /// asks it after each reply it routes, and routes every frame it reads
    /// exactly as its reader would. It never waits for anything but the
    /// link's own bytes, and returns [`Driven::Idle`] when it cannot read
    /// now (another thread reads, or what is next needs the reader). By
    /// default a link is never driven.
    fn drive(&self, until: &mut dyn FnMut() -> bool) -> Driven {
        let _ = until;
        Driven::Idle
    }
    /// Lends a writable buffer of `len` payload bytes for a frame to this
    /// peer ([`crate::Loan`]) if it can without waiting, else `Ok(None)`
    /// (then [`PeerLink::loan`] waits). By default a heap buffer, copied
    /// when sent; a transport that can send a buffer of its own in place
    /// (shared memory) lends one and recognises it in [`PeerLink::send`].
    fn try_loan(&self, len: usize) -> Result<Option<crate::Loan>> {
        Ok(Some(crate::Loan::heap(len)))
    }
    /// Lends a buffer as [`PeerLink::try_loan`] does, waiting while none is
    /// free (backpressure).
    fn loan(&self, len: usize) -> BoxFuture<'_, Result<crate::Loan>> {
        Box::pin(async move { Ok(crate::Loan::heap(len)) })
    }
}

/// What a caller's [`PeerLink::drive`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driven {
    /// `until` held: the caller's outcome is there.
    Done,
    /// The link spun a while and gives the thread back; drive again soon.
    Again,
    /// Not driven (or no longer): wait to be woken as usual.
    Idle,
}

/// A shared link handle.
pub type BoxedLink = Arc<dyn PeerLink>;
