//! The caller's side of a link: encode on the calling task and send it
//! straight into the socket (see `shared`); only when the socket has no room
//! or earlier frames still wait, queue it to the I/O thread through the
//! link's bounded, preallocated queue (`queue`) and ring its doorbell. A
//! caller that finds the queue full waits for room in its own future
//! (`poll_writable`), without allocating.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

pub(crate) use super::io_shared::IoShared;
use super::queue::{FrameQueue, PushError, QueueClosed};
use super::reader::RxShared;
use super::shared::send_direct;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::stats::LinkCounters;
use crate::transport::{BoxFuture, OutFrame, PeerLink, TransportKind};
use crate::wire::Kind;

/// The socket a link sends on (gone once the I/O thread closed it) and its
/// `ZMQ_FD`.
pub(crate) type SocketRef = (Weak<parking_lot::Mutex<zmq::Socket>>, std::os::fd::RawFd);

/// Which side of the connection a link sends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Our DEALER to a peer's ROUTER (made by `connect`).
    Outbound,
    /// Back through our ROUTER to the client with this routing id.
    Reverse(Box<[u8]>),
}

/// A link to one peer over ZeroMQ. Frames are encoded into a
/// `zmq::Message` on the caller's task and sent directly or queued (bounded)
/// for the I/O thread.
#[derive(Debug)]
pub(crate) struct ZmqLink {
    /// This link, so a send can list it as dirty.
    pub(crate) me: Weak<ZmqLink>,
    /// Unique per transport; tells a link from its successor to the same peer.
    pub(crate) id: u64,
    peer: InstanceId,
    pub(crate) route: Route,
    /// Largest frame this link sends (the smaller of both ends' limits).
    max_frame: usize,
    /// Broken or closed: sends fail.
    closed: AtomicBool,
    /// Lost and still routing what the peer sent before it went: its loss
    /// is not reported yet, so a loss of the same peer reported by another
    /// transport (the in-process one, when the peer's manager shuts down)
    /// must not fail the calls this link may still answer.
    reporting_loss: AtomicBool,
    /// The connection authenticated with the shared secret.
    trusted: AtomicBool,
    /// `close()` was called; the I/O thread says goodbye and tears down.
    pub(crate) close_requested: AtomicBool,
    /// Listed in `IoShared::dirty`; cleared by the I/O thread before draining.
    pub(crate) dirty: AtomicBool,
    /// Frames for the I/O thread to send (bounded, preallocated); it also
    /// counts the frames a direct send must not overtake.
    pub(crate) queue: FrameQueue,
    /// The socket this link sends on (a DEALER, or the ROUTER for a reverse
    /// link), for direct sends; gone once the I/O thread closed it.
    socket: Weak<parking_lot::Mutex<zmq::Socket>>,
    /// That socket's `ZMQ_FD` (valid while `socket` upgrades).
    socket_fd: std::os::fd::RawFd,
    /// What the outbound link's readers tell the I/O thread (`reader`).
    pub(crate) rx: RxShared,
    io: Arc<IoShared>,
    /// Frames and bytes each way on this link.
    pub(crate) counters: LinkCounters,
}

impl ZmqLink {
    /// A new link whose queue holds `capacity` frames.
    pub(crate) fn new(
        id: u64,
        peer: InstanceId,
        route: Route,
        max_frame: usize,
        capacity: usize,
        ((socket, socket_fd), io): (SocketRef, Arc<IoShared>),
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            id,
            peer,
            route,
            max_frame,
            closed: AtomicBool::new(false),
            reporting_loss: AtomicBool::new(false),
            trusted: AtomicBool::new(false),
            close_requested: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            queue: FrameQueue::new(capacity),
            socket,
            socket_fd,
            rx: RxShared::default(),
            io,
            counters: LinkCounters::default(),
        })
    }

    /// The peer (for readers that do not go through the trait).
    pub(crate) fn peer_id(&self) -> InstanceId {
        self.peer
    }

    /// The instance this link sends as.
    pub(crate) fn local(&self) -> InstanceId {
        self.io.local
    }

    /// The socket this link sends on, unless the I/O thread closed it.
    pub(crate) fn socket(&self) -> Option<Arc<parking_lot::Mutex<zmq::Socket>>> {
        self.socket.upgrade()
    }

    /// The socket's `ZMQ_FD` (open only while [`Self::socket`] upgrades).
    pub(crate) fn socket_fd(&self) -> std::os::fd::RawFd {
        self.socket_fd
    }

    /// Whether the link is closed (broken, or closed by us).
    pub(crate) fn is_closed_now(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes the I/O thread (if asleep) without listing the link.
    pub(crate) fn wake_io_now(&self) {
        self.io.wake();
    }

    /// Lists the link for the I/O thread's next turn and wakes it.
    pub(crate) fn wake_io(&self) {
        self.io.mark_dirty(self);
    }

    /// Removes this reverse link from the transport's list of inbound links.
    pub(crate) fn unlist_inbound(&self) {
        self.io.remove_inbound(self.id);
    }

    /// Records whether the connection authenticated (before the link is handed out).
    pub(crate) fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::Release);
    }

    /// Marks the link broken (the I/O thread, or `close`).
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Marks the link lost with its loss not reported yet (the I/O thread,
    /// before it closes the link and drains its input); cleared by
    /// [`Self::loss_reporting_done`] just before `on_link_lost`.
    pub(crate) fn begin_loss_report(&self) {
        // Release: stored before `mark_closed`, so whoever sees the link
        // closed (Acquire) also sees the report pending.
        self.reporting_loss.store(true, Ordering::Release);
    }

    /// The loss is about to be reported: the link's input is drained.
    pub(crate) fn loss_reporting_done(&self) {
        // Release: pairs with the Acquire load in `loss_reported`.
        self.reporting_loss.store(false, Ordering::Release);
    }

    /// The error for a send on a closed link.
    fn closed_error(&self) -> Error {
        if self.io.is_shut_down() {
            Error::ShuttingDown
        } else {
            Error::PeerLost(self.peer)
        }
    }

    /// Encodes `frame` into a zmq message, refusing frames on a closed link
    /// and frames over the limit. Byte payloads are written straight into a
    /// message of the exact size; archives are serialized once and the
    /// buffer handed to libzmq without a copy.
    fn encode(&self, frame: &OutFrame<'_>) -> Result<zmq::Message> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let too_large = |size| Error::PayloadTooLarge {
            size,
            max: self.max_frame,
        };
        match frame.exact_len() {
            Some(len) if len > self.max_frame => Err(too_large(len)),
            Some(len) => {
                let mut msg = zmq::Message::with_size(len);
                frame
                    .encode_into(&mut msg)
                    .map_err(|_| Error::Codec("frame did not fit its exact size".into()))?;
                Ok(msg)
            }
            None => {
                if let Some(msg) = super::scratch::encode(frame, self.max_frame) {
                    return Ok(msg);
                }
                let bytes = frame.to_vec()?;
                if bytes.len() > self.max_frame {
                    return Err(too_large(bytes.len()));
                }
                Ok(zmq::Message::from(bytes))
            }
        }
    }

    /// Sends `msg` into the socket now if it may; gives it back otherwise.
    ///
    /// One-way frames always take the queue: a stream of them is batched by
    /// the I/O thread on its own core, which a direct send per frame (a mutex
    /// and two `ZMQ_EVENTS` reads, each a `poll(2)` in libzmq) would undo;
    /// whatever waits for an answer (requests, replies) goes direct.
    fn try_direct(&self, kind: Kind, msg: zmq::Message) -> std::result::Result<(), zmq::Message> {
        if kind == Kind::OneWay {
            return Err(msg);
        }
        let identity = match &self.route {
            Route::Outbound => None,
            Route::Reverse(identity) => Some(&**identity),
        };
        let len = msg.len();
        let readable = send_direct(&self.socket, identity, &self.queue, msg)?;
        self.counters.record_sent(len);
        self.io.sent.store(true, Ordering::Relaxed);
        // Our send may have taken the readiness its reader sleeps on: the
        // link's reader task, or else the I/O thread.
        let task = match self.route {
            Route::Outbound => self.rx.kick_if_reading(readable),
            Route::Reverse(_) => self.io.router_task.kick_if_reading(readable),
        };
        if !task && readable.contains(zmq::POLLIN) {
            self.io.wake();
        }
        Ok(())
    }

    /// The frame was queued: count it and list the link for the I/O thread.
    fn queued(&self, len: usize) {
        self.counters.record_sent(len);
        self.io.mark_dirty(self);
    }

    /// Sends directly, or waits for room in the queue and queues the frame.
    async fn send_inner(&self, frame: OutFrame<'_>) -> Result<()> {
        let msg = self.encode(&frame)?;
        let Err(msg) = self.try_direct(frame.header.kind, msg) else {
            return Ok(());
        };
        let len = msg.len();
        self.queue
            .push(msg)
            .await
            .map_err(|_| self.closed_error())?;
        self.queued(len);
        Ok(())
    }

    /// Sends an in-place handler's reply now: directly, or through the
    /// queue; gives the encoded message back when the queue is full (the
    /// reader queues it with [`Self::queue_msg`] before it reads on).
    pub(crate) fn reply_now(&self, frame: OutFrame<'_>) -> Result<Option<zmq::Message>> {
        let msg = self.encode(&frame)?;
        let Err(msg) = self.try_direct(frame.header.kind, msg) else {
            return Ok(None);
        };
        let len = msg.len();
        match self.queue.try_push(msg) {
            Ok(()) => {
                self.queued(len);
                Ok(None)
            }
            Err(PushError::Full(msg)) => Ok(Some(msg)),
            Err(PushError::Closed(_)) => Err(self.closed_error()),
        }
    }

    /// Waits for room in the queue inside the caller's own future (see
    /// [`PeerLink::poll_writable`]): the waker goes into the queue's slots,
    /// nothing is allocated. A frame over the limit fails at once; a link
    /// closed before or during the wait gives the error `send` gives.
    fn poll_room(&self, cx: &mut Context<'_>, frame: &OutFrame<'_>) -> Poll<Result<()>> {
        if let Some(size) = frame.exact_len()
            && size > self.max_frame
        {
            let max = self.max_frame;
            return Poll::Ready(Err(Error::PayloadTooLarge { size, max }));
        }
        if self.is_closed_now() {
            return Poll::Ready(Err(self.closed_error()));
        }
        // Looked at under the queue's lock after the waker is kept: the
        // teardown closes the queue after marking the link, and wakes it.
        match self.queue.poll_room(cx) {
            Poll::Ready(Ok(())) if self.is_closed_now() => Poll::Ready(Err(self.closed_error())),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(QueueClosed)) => Poll::Ready(Err(self.closed_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Queues an encoded message, waiting for room.
    pub(crate) async fn queue_msg(&self, msg: zmq::Message) -> Result<()> {
        let len = msg.len();
        self.queue
            .push(msg)
            .await
            .map_err(|_| self.closed_error())?;
        self.queued(len);
        Ok(())
    }

    fn try_send_inner(&self, frame: OutFrame<'_>) -> Result<()> {
        let msg = self.encode(&frame)?;
        let Err(msg) = self.try_direct(frame.header.kind, msg) else {
            return Ok(());
        };
        let len = msg.len();
        self.queue.try_push(msg).map_err(|err| match err {
            PushError::Full(_) => Error::Full,
            PushError::Closed(_) => self.closed_error(),
        })?;
        self.queued(len);
        Ok(())
    }
}

impl PeerLink for ZmqLink {
    fn peer(&self) -> InstanceId {
        self.peer
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn send<'a>(&'a self, frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.send_inner(frame))
    }

    fn try_send(&self, frame: OutFrame<'_>) -> Result<()> {
        self.try_send_inner(frame)
    }

    fn poll_writable(&self, cx: &mut Context<'_>, frame: &OutFrame<'_>) -> Poll<Result<()>> {
        self.poll_room(cx, frame)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn loss_reported(&self) -> bool {
        // Acquire: pairs with the Release stores of `begin_loss_report`
        // (made before `mark_closed`) and `loss_reporting_done`.
        self.is_closed() && !self.reporting_loss.load(Ordering::Acquire)
    }

    fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    fn counters(&self) -> Option<&LinkCounters> {
        Some(&self.counters)
    }

    fn close(&self) {
        if !self.close_requested.swap(true, Ordering::AcqRel) {
            self.mark_closed();
            self.io.mark_dirty(self);
        }
    }
}
