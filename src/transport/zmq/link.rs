//! The caller's side of a link: encode on the calling task and send it
//! straight into the socket (see `shared`); only when the socket has no room
//! or earlier frames still wait, queue it to the I/O thread through a
//! bounded channel and ring its doorbell.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Weak};

use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::shared::send_direct;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::stats::LinkCounters;
use crate::transport::{BoxFuture, OutFrame, PeerLink, TransportKind};
use crate::wire::Kind;

/// State shared by the I/O thread and every caller: the doorbell and the list
/// of links with work for the I/O thread.
#[derive(Debug)]
pub(crate) struct IoShared {
    /// Doorbell the I/O thread polls (as a raw fd) while it sleeps.
    doorbell: EventFd,
    /// Set by the I/O thread just before it sleeps; whoever clears it rings.
    armed: AtomicBool,
    /// Links with queued frames or a close request. A link is listed at most
    /// once (guarded by its `dirty` flag), so this never outgrows the link count.
    dirty: Mutex<Vec<Arc<ZmqLink>>>,
    /// Set once by `shutdown` (or drop).
    shutdown: AtomicBool,
    /// Outbound links whose peer had not read everything they accepted when
    /// the shutdown drain's deadline passed.
    undrained: std::sync::atomic::AtomicUsize,
    /// Reverse links of the clients the ROUTER knows, by link id (for `stats()`).
    inbound: Mutex<HashMap<u64, Weak<ZmqLink>>>,
    /// A caller sent a frame directly: the application answered, so the I/O
    /// thread stops spinning for it.
    sent: AtomicBool,
}

impl IoShared {
    /// New shared state with a non-blocking eventfd doorbell.
    pub(crate) fn new() -> Result<Self> {
        let doorbell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|err| Error::transport(format!("eventfd: {err}")))?;
        Ok(Self {
            doorbell,
            armed: AtomicBool::new(false),
            dirty: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            undrained: std::sync::atomic::AtomicUsize::new(0),
            inbound: Mutex::new(HashMap::new()),
            sent: AtomicBool::new(false),
        })
    }

    /// Lists a new client's reverse link.
    pub(crate) fn add_inbound(&self, link: &Arc<ZmqLink>) {
        self.inbound.lock().insert(link.id, Arc::downgrade(link));
    }

    /// Unlists a client's reverse link.
    pub(crate) fn remove_inbound(&self, id: u64) {
        self.inbound.lock().remove(&id);
    }

    /// The reverse links of the clients known now.
    pub(crate) fn inbound_links(&self) -> Vec<Arc<ZmqLink>> {
        self.inbound
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The doorbell, for the I/O thread's poll set.
    pub(crate) fn doorbell(&self) -> &EventFd {
        &self.doorbell
    }

    /// Wakes the I/O thread if it is (about to be) asleep.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `arm`: either the I/O thread sees our work
        // when it re-checks after arming, or we see `armed` and ring.
        fence(Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            // The eventfd counter cannot overflow from single increments, and a
            // failed write only leaves the I/O thread to its poll timeout.
            if let Err(err) = self.doorbell.write(1) {
                tracing::warn!(%err, "zmq transport: doorbell write failed");
            }
        }
    }

    /// Called by the I/O thread before sleeping; returns whether work is
    /// already waiting (then it must not sleep).
    pub(crate) fn arm(&self) -> bool {
        self.armed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        !self.dirty.lock().is_empty() || self.is_shut_down()
    }

    /// Called by the I/O thread after its poll returns.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }

    /// Drains the doorbell counter (the I/O thread, after a readable poll).
    pub(crate) fn clear_doorbell(&self) {
        // EAGAIN just means nothing was rung.
        let _ = self.doorbell.read();
    }

    /// Records how many outbound links the shutdown drain left undrained.
    pub(crate) fn set_undrained(&self, links: usize) {
        // Release: pairs with the Acquire in `undrained`, read after the
        // I/O thread signalled it finished.
        self.undrained.store(links, Ordering::Release);
    }

    /// Outbound links the shutdown drain left undrained.
    pub(crate) fn undrained(&self) -> usize {
        self.undrained.load(Ordering::Acquire)
    }

    /// Whether links with work are listed.
    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.lock().is_empty()
    }

    /// Moves the dirty links into `out` (the I/O thread).
    pub(crate) fn take_dirty(&self, out: &mut Vec<Arc<ZmqLink>>) {
        std::mem::swap(&mut *self.dirty.lock(), out);
    }

    /// Lists `link` as having work, once, and wakes the I/O thread.
    fn mark_dirty(&self, link: &ZmqLink) {
        if self.is_shut_down() {
            // Nobody drains the list any more; keep it empty (no Arc cycle).
            return;
        }
        if !link.dirty.swap(true, Ordering::AcqRel) {
            // The link is alive (we were called through it), so this upgrades.
            if let Some(link) = link.me.upgrade() {
                self.dirty.lock().push(link);
            }
            self.wake();
        }
    }

    /// Whether a caller sent directly since the last call (the I/O thread).
    pub(crate) fn take_sent(&self) -> bool {
        // Relaxed: only ends a spin early; nothing is read through it.
        self.sent.swap(false, Ordering::Relaxed)
    }

    /// Asks the I/O thread to shut down.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Whether shutdown was requested.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// Which side of the connection a link sends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Our DEALER to a peer's ROUTER (made by `connect`).
    Outbound,
    /// Back through our ROUTER to the client with this routing id.
    Reverse(Box<[u8]>),
}

/// A link to one peer over ZeroMQ. Frames are encoded into a
/// `zmq::Message` on the caller's task and queued (bounded) for the I/O thread.
#[derive(Debug)]
pub(crate) struct ZmqLink {
    /// This link, so a send can list it as dirty.
    me: Weak<ZmqLink>,
    /// Unique per transport; tells a link from its successor to the same peer.
    pub(crate) id: u64,
    peer: InstanceId,
    pub(crate) route: Route,
    /// Largest frame this link sends (the smaller of both ends' limits).
    max_frame: usize,
    /// Broken or closed: sends fail.
    closed: AtomicBool,
    /// The connection authenticated with the shared secret.
    trusted: AtomicBool,
    /// `close()` was called; the I/O thread says goodbye and tears down.
    pub(crate) close_requested: AtomicBool,
    /// Listed in `IoShared::dirty`; cleared by the I/O thread before draining.
    pub(crate) dirty: AtomicBool,
    tx: mpsc::Sender<zmq::Message>,
    /// The socket this link sends on (a DEALER, or the ROUTER for a reverse
    /// link), for direct sends; gone once the I/O thread closed it.
    socket: Weak<parking_lot::Mutex<zmq::Socket>>,
    /// Frames queued for the I/O thread and not yet in the socket; a direct
    /// send only overtakes nothing (changed by the I/O thread under the
    /// socket's mutex).
    pub(crate) queued: AtomicUsize,
    io: Arc<IoShared>,
    /// Frames and bytes each way on this link.
    pub(crate) counters: LinkCounters,
}

impl ZmqLink {
    /// A new link and the receiving end of its send queue (for the I/O thread).
    pub(crate) fn new(
        id: u64,
        peer: InstanceId,
        route: Route,
        max_frame: usize,
        capacity: usize,
        (socket, io): (Weak<parking_lot::Mutex<zmq::Socket>>, Arc<IoShared>),
    ) -> (Arc<Self>, mpsc::Receiver<zmq::Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        let link = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            id,
            peer,
            route,
            max_frame,
            closed: AtomicBool::new(false),
            trusted: AtomicBool::new(false),
            close_requested: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            tx,
            socket,
            queued: AtomicUsize::new(0),
            io,
            counters: LinkCounters::default(),
        });
        (link, rx)
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
        let readable = send_direct(&self.socket, identity, &self.queued, msg)?;
        self.counters.record_sent(len);
        self.io.sent.store(true, Ordering::Relaxed);
        if readable {
            // Our send may have taken the readiness the I/O thread sleeps on.
            self.io.wake();
        }
        Ok(())
    }

    /// Queues `msg` for the I/O thread behind a reserved slot.
    fn enqueue(&self, permit: mpsc::Permit<'_, zmq::Message>, msg: zmq::Message) {
        self.counters.record_sent(msg.len());
        // Relaxed: read under the socket's mutex, which orders it.
        self.queued.fetch_add(1, Ordering::Relaxed);
        permit.send(msg);
        self.io.mark_dirty(self);
    }

    /// Sends directly, or waits for room in the queue and queues the frame.
    async fn send_inner(&self, frame: OutFrame<'_>) -> Result<()> {
        let msg = self.encode(&frame)?;
        let Err(msg) = self.try_direct(frame.header.kind, msg) else {
            return Ok(());
        };
        let permit = self.tx.reserve().await.map_err(|_| self.closed_error())?;
        self.enqueue(permit, msg);
        Ok(())
    }

    fn try_send_inner(&self, frame: OutFrame<'_>) -> Result<()> {
        let msg = self.encode(&frame)?;
        let Err(msg) = self.try_direct(frame.header.kind, msg) else {
            return Ok(());
        };
        let permit = self.tx.try_reserve().map_err(|err| match err {
            TrySendError::Full(()) => Error::Full,
            TrySendError::Closed(()) => self.closed_error(),
        })?;
        self.enqueue(permit, msg);
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

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
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
