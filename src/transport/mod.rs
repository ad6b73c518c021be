//! The transport contract: what every transport (ZeroMQ TCP, shared memory,
//! the in-process loopback, or one of yours) gives the runtime, so the
//! dispatcher, response table and cohorts never know which one carries a
//! message. `docs/writing-a-transport.md` walks through an implementation.
//!
//! # Plugging a transport in
//! A transport is bound by a [`TransportFactory`] handed to
//! [`ActiveMessageManagerBuilder::transport`](crate::ActiveMessageManagerBuilder::transport):
//! the builder calls it with the manager's [`InstanceId`] and its [`Inbox`].
//! The transport's [`ThinTransport::kind`] names the endpoint scheme it serves
//! ([`TransportKind::Custom`]); its [`ThinTransport::local_endpoint`] is
//! advertised in [`PeerInfo::extra_endpoints`](crate::PeerInfo::extra_endpoints),
//! and a peer's `connect_to_peer` hands endpoints of that scheme to the peer's
//! own transport of the same kind.
//!
//! # Contract
//! - A transport is bound once with an [`Inbox`] and the local [`InstanceId`].
//!   Every frame it sends carries that id as its sender.
//! - [`ThinTransport::connect`] returns a [`PeerLink`] to one peer, or fails
//!   promptly (nothing listening, or another instance answering: a restarted
//!   process is a new instance). Frames sent on one link arrive in order.
//! - Outbound: [`PeerLink::send`] encodes the [`OutFrame`] (with
//!   [`OutFrame::encode_into`] or [`OutFrame::to_vec`]) and waits while the
//!   link is full; [`PeerLink::try_send`] fails with [`Error::Full`](crate::Error::Full)
//!   instead, and [`PeerLink::poll_writable`] then lets the caller wait for
//!   room in its own future, without allocating. Queues are bounded. A broken link fails sends with
//!   [`Error::PeerLost`](crate::Error::PeerLost), a frame over the limit with
//!   [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge).
//! - Inbound frames are checked with [`wire::decode`] against
//!   [`Inbox::max_frame`] before anything else looks at them.
//! - Inbound invocation frames (`OneWay`, `Confirm`, `Request`, `Cancel`, and
//!   a stream's `Credit`) go to
//!   [`Inbox::invocations`], a bounded queue ([`InvocationSender`]), as an [`Inbound`] carrying the
//!   link that replies go back on. When the channel is full the transport
//!   stops reading invocations from that peer (backpressure reaches the
//!   sender); it never drops them and never queues them without bound. A
//!   transport may first offer them to [`Inbox::inline`] ([`InlineDispatch`]).
//! - Inbound replies (`Ack`, `Response`, `Error`, `Receipt`, and a stream's
//!   `StreamItem` and `StreamEnd`: [`wire::Kind::is_reply`]) go to
//!   [`LinkEvents::on_reply`] at once, on the transport's own thread or task, so a
//!   saturated dispatcher never delays a reply.
//! - Heartbeats and goodbyes are the transport's business. When a link to a peer
//!   breaks (process gone, socket closed, heartbeat missed, goodbye received) the
//!   transport calls [`LinkEvents::on_link_lost`] once, promptly.
//! - Malformed frames are counted through [`LinkEvents::on_protocol_error`] and
//!   dropped (answered with an `Error` frame when the header was readable); the
//!   transport keeps serving every other frame and peer. Framing it cannot
//!   resynchronise after (a bad length prefix) closes that one link.
//! - [`ThinTransport::shutdown`] stops accepting and closes every link; peers
//!   see the links lost.

mod invocations;
pub mod local;
mod plug;
pub mod shm;
pub mod zmq;

pub use crate::runtime::run::InPlaceRun;
pub use invocations::{InvocationPermit, InvocationReceiver, InvocationSender, invocation_queue};
pub(crate) use plug::SharedFactory;
pub use plug::{TransportFactory, TransportKind};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};

use crate::handler::PayloadBuf;

use crate::codec::{DoesNotFit, Payload};
use crate::error::Result;
use crate::ids::{InstanceId, MessageId};
use crate::stats::LinkCounters;
use crate::wire::{self, FrameRef, Header, ProtocolError};

/// A boxed, sendable future (object-safe async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A payload on its way out.
#[derive(Clone, Copy)]
pub enum PayloadRef<'a> {
    /// Bytes already encoded (raw payloads, replies).
    Bytes(&'a [u8]),
    /// A value archived straight into the transport's buffer when sent.
    Archive(&'a dyn Payload),
    /// Raw bytes in a [`Loan`](crate::Loan): sent in place by the link that
    /// lent it, copied like [`PayloadRef::Bytes`] by every other.
    Loan(&'a crate::Loan),
}

impl fmt::Debug for PayloadRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Archive(_) => f.write_str("Archive"),
            Self::Loan(l) => write!(f, "Loan({} bytes)", l.len()),
        }
    }
}

/// One frame to send, not yet encoded: the link encodes it into its own
/// buffer (a ring slot, a zmq message), archiving the payload in place.
#[derive(Clone, Copy, Debug)]
pub struct OutFrame<'a> {
    /// The header (its payload length is filled in when encoding).
    pub header: Header,
    /// Handler name (empty for replies and control frames).
    pub name: &'a str,
    /// The payload.
    pub payload: PayloadRef<'a>,
}

impl<'a> OutFrame<'a> {
    /// A frame with a byte payload.
    pub fn bytes(header: Header, name: &'a str, payload: &'a [u8]) -> Self {
        Self {
            header,
            name,
            payload: PayloadRef::Bytes(payload),
        }
    }

    /// The encoded size when it is known before encoding (byte payloads).
    pub fn exact_len(&self) -> Option<usize> {
        match self.payload {
            PayloadRef::Bytes(b) => Some(wire::frame_len(self.name.len(), b.len())),
            PayloadRef::Loan(l) => Some(wire::frame_len(self.name.len(), l.len())),
            PayloadRef::Archive(_) => None,
        }
    }

    /// Encodes the frame at the start of `dst` (which must be 16-byte aligned)
    /// and returns its length, or `DoesNotFit` if `dst` is too small.
    pub fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
        let offset = wire::payload_offset(self.name.len());
        if dst.len() < offset {
            return Err(DoesNotFit);
        }
        let payload_len = match self.payload {
            PayloadRef::Bytes(b) => copy_payload(b, &mut dst[offset..])?,
            PayloadRef::Loan(l) => copy_payload(l, &mut dst[offset..])?,
            PayloadRef::Archive(p) => p.encode_into(&mut dst[offset..])?,
        };
        wire::encode_head(&self.header, self.name, payload_len, dst);
        Ok(offset + payload_len)
    }

    /// Encodes the frame into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        Ok(match self.payload {
            PayloadRef::Bytes(b) => wire::encode_to_vec(&self.header, self.name, b),
            PayloadRef::Loan(l) => wire::encode_to_vec(&self.header, self.name, l),
            PayloadRef::Archive(p) => wire::encode_to_vec(&self.header, self.name, &p.encode()?),
        })
    }
}

/// Copies raw payload bytes to the start of `dst`.
fn copy_payload(bytes: &[u8], dst: &mut [u8]) -> Result<usize, DoesNotFit> {
    let room = dst.get_mut(..bytes.len()).ok_or(DoesNotFit)?;
    room.copy_from_slice(bytes);
    Ok(bytes.len())
}

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

/// A transport: binds endpoints at construction and connects to peers.
pub trait ThinTransport: Send + Sync + 'static {
    /// Which transport this is; its [`TransportKind::scheme`] is the scheme
    /// of every endpoint it serves. At most one transport per scheme is bound
    /// on a manager.
    fn kind(&self) -> TransportKind;
    /// The endpoint peers should use to reach this transport (routable, never
    /// `0.0.0.0`), if it listens; it starts with `<scheme>://`.
    fn local_endpoint(&self) -> Option<String>;
    /// Connects to the peer `peer` listening at `endpoint`. Fails promptly when
    /// nothing answers there, or when the instance found there is not `peer`.
    /// With `peer` nil ([`InstanceId::nil`]) the link goes to whichever
    /// instance answers, and [`PeerLink::peer`] names it (how
    /// [`NetworkClient::connect_to_address`](crate::NetworkClient::connect_to_address)
    /// learns a peer from its address); transports that cannot tell fail.
    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<BoxedLink>>;
    /// Stops accepting, says goodbye on every link, closes sockets. Idempotent.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// After `shutdown`: how many links could not confirm, before the
    /// shutdown deadline, that their peer read everything they accepted
    /// (the manager's `shutdown()` then reports it). Transports whose peers
    /// drain what was sent on their own say 0.
    fn undelivered(&self) -> usize {
        0
    }
    /// Links that peers opened to this manager and that are still up (a
    /// server's callers, a worker's leader): listed by `stats()` beside the
    /// links this manager opened. Transports that keep no such links say none.
    fn inbound_links(&self) -> Vec<BoxedLink> {
        Vec::new()
    }
}

/// A shared transport handle.
pub type BoxedTransport = Arc<dyn ThinTransport>;

/// One inbound invocation frame with the link to answer on.
#[derive(Clone)]
pub struct Inbound {
    /// The decoded header.
    pub header: Header,
    /// The whole frame (header, name, payload): `Bytes`, or a frame read in
    /// place from a peer's shared-memory pool.
    pub frame: PayloadBuf,
    /// Offset of the payload in `frame`.
    pub payload_offset: usize,
    /// Length of the handler name.
    pub name_len: usize,
    /// The link replies go back on.
    pub reply_link: BoxedLink,
    /// When the caller gives up (from the header's budget, counted from
    /// arrival, or its absolute deadline); `None` without a budget.
    pub deadline: Option<tokio::time::Instant>,
}

impl Inbound {
    /// Builds an inbound frame from checked frame bytes.
    pub fn from_frame(
        frame: impl Into<PayloadBuf>,
        view: &FrameRef<'_>,
        reply_link: BoxedLink,
    ) -> Self {
        let frame = frame.into();
        Self {
            deadline: crate::runtime::deadline::deadline_of(
                &view.header,
                tokio::time::Instant::now(),
            ),
            header: view.header,
            payload_offset: view.payload_offset,
            name_len: view.name.len(),
            frame,
            reply_link,
        }
    }

    /// The handler name.
    pub fn name(&self) -> &str {
        let bytes = &self.frame[wire::HEADER_LEN..wire::HEADER_LEN + self.name_len];
        // The frame was checked by `wire::decode` before this value was built.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_offset..]
    }

    /// The payload, sharing the frame's memory (no copy, no allocation).
    pub fn payload_bytes(&self) -> PayloadBuf {
        self.frame.slice(self.payload_offset..)
    }
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("header", &self.header)
            .field("name", &self.name())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// Callbacks a transport makes into the runtime. They must not block.
pub trait LinkEvents: Send + Sync + 'static {
    /// A reply (`Ack`, `Response`, `Error`, `Receipt`) arrived.
    fn on_reply(&self, header: &Header, payload: &[u8]);
    /// A reply whose frame is already shared (a mapped large frame):
    /// `payload` lies inside `frame`, so the response can keep it without a
    /// copy. Defaults to [`on_reply`](Self::on_reply).
    fn on_reply_shared(&self, header: &Header, payload: &[u8], frame: &PayloadBuf) {
        let _ = frame;
        self.on_reply(header, payload);
    }
    /// The link to `peer` is broken; fail everything pending on it.
    fn on_link_lost(&self, peer: InstanceId);
    /// A frame was malformed and dropped.
    fn on_protocol_error(&self, peer: Option<InstanceId>, error: &ProtocolError);
    /// The peer stopped answering liveness probes: fail what is pending on
    /// it with `PeerUnresponsive` (the link stays up). Ignored unless
    /// overridden.
    fn on_peer_unresponsive(&self, peer: InstanceId) {
        let _ = peer;
    }
    /// A frame was refused before reaching the dispatcher (its connection
    /// did not authenticate). Ignored unless overridden.
    fn on_refused(&self, peer: Option<InstanceId>) {
        let _ = peer;
    }
}

/// Runs cheap handlers on the transport's own thread or task, over the
/// payload in place: no channel hop, no task, no copy.
///
/// Only transports whose links are all trusted (see
/// [`PeerLink::is_trusted`]: shared memory, in-process) may call it: a
/// handler run inline is told its caller is trusted.
pub trait InlineDispatch: Send + Sync + 'static {
    /// Runs the invocation inline if it can (a synchronous or zero-copy
    /// handler, a concurrency permit free, no receipt asked, admitting),
    /// handing the reply frame, if any, to `reply` before returning true.
    /// Returns false, having done nothing, when the invocation must go
    /// through [`Inbox::invocations`] instead. `Cancel` and `Credit` frames
    /// are always handled here (they must not wait behind the concurrency
    /// limit), and so
    /// are requests whose caller's deadline has passed (dropped, counted).
    fn try_inline(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool;

    /// Like [`try_inline`](Self::try_inline), and may also run async
    /// handlers in place: `owned` gives the payload as a shared [`PayloadBuf`] (made
    /// at most once, only if a handler needs it), `reply_link` the link a
    /// reply that cannot be given at once goes back on. By default the same
    /// as `try_inline`.
    fn try_in_place(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        let _ = (owned, reply_link);
        self.try_inline(header, name, payload, reply)
    }

    /// Like [`try_in_place`](Self::try_in_place), for a frame of a run read
    /// back to back: what only matters in aggregate (counters, handler
    /// statistics, the handler lookup) may be gathered in `run` until
    /// [`end_run`](Self::end_run), which the reader calls before it waits.
    /// By default the same as `try_in_place`.
    #[allow(clippy::too_many_arguments)]
    fn try_in_run(
        &self,
        run: &mut InPlaceRun,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        let _ = run;
        self.try_in_place(header, name, payload, owned, reply_link, reply)
    }

    /// Runs again, the same way, a one-way frame of the same shape as the
    /// run's last frame (the same kind, flags and handler name, byte for
    /// byte), which [`try_in_run`](Self::try_in_run) ran in place: only
    /// the checks that can change between two such frames are made again.
    /// Returns false, having done nothing, when the frame must take
    /// `try_in_run` (the default: always).
    fn repeat_in_run(
        &self,
        run: &mut InPlaceRun,
        header: &Header,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
    ) -> bool {
        let _ = (run, header, payload, owned);
        false
    }

    /// Publishes what `run` gathered (see [`try_in_run`](Self::try_in_run)).
    fn end_run(&self, run: &mut InPlaceRun) {
        let _ = run;
    }
}

/// Late-bound [`InlineDispatch`] (the dispatcher is built after the transports).
#[derive(Default)]
pub struct InlineSlot(OnceLock<Weak<dyn InlineDispatch>>);

impl InlineSlot {
    /// Sets the dispatcher; later calls are ignored.
    pub fn set(&self, dispatch: Weak<dyn InlineDispatch>) {
        let _ = self.0.set(dispatch);
    }

    /// The dispatcher, while it lives.
    pub fn get(&self) -> Option<Arc<dyn InlineDispatch>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

/// Where a transport delivers what it receives.
#[derive(Clone)]
pub struct Inbox {
    /// Invocations for the dispatcher: a bounded queue, preallocated (see
    /// [`invocation_queue`]); when it is full, stop reading.
    pub invocations: InvocationSender,
    /// Replies and link events.
    pub events: Arc<dyn LinkEvents>,
    /// Inline execution of synchronous handlers (transports may ignore it).
    pub inline: Arc<InlineSlot>,
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}
