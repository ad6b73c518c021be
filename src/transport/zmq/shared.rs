//! A libzmq socket shared by the I/O thread and the callers' tasks, so a
//! caller can send on it directly instead of handing every frame to the I/O
//! thread first.
//!
//! libzmq allows a socket to be used from several threads one at a time when
//! each hand-over is a full memory barrier: every use goes through one mutex,
//! whose lock and unlock give that barrier. Nothing ever waits on a libzmq
//! call while holding it (every call is `DONTWAIT`).
//!
//! # The readiness trap
//! The I/O thread sleeps in `poll(2)` on the socket's `ZMQ_FD`, which only
//! says that libzmq has *commands* to process, and any call on the socket
//! (our direct `send` too) processes them and resets it. So a direct sender
//! looks at `ZMQ_EVENTS` after its send and rings the I/O thread's doorbell
//! when a message is waiting to be read, and the I/O thread reads
//! `ZMQ_EVENTS` before it sleeps and after it wakes, never trusting the fd
//! alone.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, MutexGuard};

use super::queue::FrameQueue;
use crate::error::{Error, Result};

/// A socket behind the mutex every thread takes to use it.
pub(crate) struct SharedSocket {
    inner: Arc<Mutex<zmq::Socket>>,
    /// The socket's `ZMQ_FD` (signals pending libzmq commands).
    fd: RawFd,
}

impl SharedSocket {
    /// Wraps `socket`; the I/O thread holds the only strong reference, so
    /// dropping this closes the socket once no direct send is under way.
    pub(crate) fn new(socket: zmq::Socket) -> Result<Self> {
        let fd = socket
            .get_fd()
            .map_err(|err| Error::transport(format!("zmq socket fd: {err}")))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(socket)),
            fd,
        })
    }

    /// The socket's `ZMQ_FD`.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The mutex itself (for readers that lock per message).
    pub(crate) fn mutex(&self) -> &Mutex<zmq::Socket> {
        &self.inner
    }

    /// Takes the socket for one use.
    pub(crate) fn lock(&self) -> MutexGuard<'_, zmq::Socket> {
        self.inner.lock()
    }

    /// What the links keep: a direct send finds the socket gone once the I/O
    /// thread has torn it down.
    pub(crate) fn weak(&self) -> Weak<Mutex<zmq::Socket>> {
        Arc::downgrade(&self.inner)
    }

    /// The poll item of the socket's `ZMQ_FD` (the I/O thread reads
    /// `ZMQ_EVENTS` after it fires; see the module docs).
    pub(crate) fn poll_item(&self, listen: bool) -> zmq::PollItem<'static> {
        let events = if listen {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        };
        zmq::PollItem::from_fd(self.fd, events)
    }

    /// The socket's `ZMQ_EVENTS` within `wanted` (none when it cannot be read).
    pub(crate) fn ready(&self, wanted: zmq::PollEvents) -> zmq::PollEvents {
        if wanted.is_empty() {
            return wanted;
        }
        let events = self.lock().get_events();
        events.map_or(zmq::PollEvents::empty(), |events| events & wanted)
    }
}

/// Why a send through the ROUTER did not happen.
pub(crate) enum RouteError {
    /// The client's pipe is full: try again later (the message is returned).
    Full(zmq::Message),
    /// The client is gone (unroutable or the socket failed).
    Gone,
}

/// Sends `msg` to the client `identity` through a ROUTER without blocking.
pub(crate) fn route(
    socket: &zmq::Socket,
    identity: &[u8],
    msg: zmq::Message,
) -> std::result::Result<(), RouteError> {
    // With ROUTER_MANDATORY the routing-id part fails (EAGAIN: full,
    // EHOSTUNREACH: unknown) before anything is queued, so `msg` is kept.
    match socket.send(identity, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Err(RouteError::Full(msg)),
        Err(_) => return Err(RouteError::Gone),
    }
    socket.send(msg, zmq::DONTWAIT).map_err(|err| {
        tracing::warn!(%err, "zmq: router send failed after the routing id");
        RouteError::Gone
    })
}

/// Sends a caller's frame straight into the socket when nothing queued
/// before it waits for the I/O thread (the link's queue's unsent frames,
/// taken off only under the socket's mutex by the I/O thread) and the
/// socket has room. Returns the
/// message when it must go through the queue instead; otherwise the
/// socket's events after the send (a message waiting to be read then needs
/// its reader rung: the send may have taken its signal).
pub(crate) fn send_direct(
    socket: &Weak<Mutex<zmq::Socket>>,
    identity: Option<&[u8]>,
    queue: &FrameQueue,
    msg: zmq::Message,
) -> std::result::Result<zmq::PollEvents, zmq::Message> {
    // Relaxed: a hint only; the authoritative check is under the mutex.
    if queue.unsent(Ordering::Relaxed) != 0 {
        return Err(msg);
    }
    let Some(socket) = socket.upgrade() else {
        return Err(msg);
    };
    let socket = socket.lock();
    // Acquire: pairs with the I/O thread's Release (`FrameQueue::sent_one`)
    // when it moved the last queued frame into the socket (under this mutex
    // as well).
    if queue.unsent(Ordering::Acquire) != 0 {
        return Err(msg);
    }
    let sent = match identity {
        Some(identity) => {
            // Full or unknown: the queued path decides (it waits for room, or
            // fails once the I/O thread has found the client gone).
            if socket.send(identity, zmq::SNDMORE | zmq::DONTWAIT).is_err() {
                return Err(msg);
            }
            socket.send(msg, zmq::DONTWAIT)
        }
        None => {
            // `send` consumes the message even when it fails, so look first.
            let writable = socket
                .get_events()
                .is_ok_and(|events| events.contains(zmq::POLLOUT));
            if !writable {
                return Err(msg);
            }
            socket.send(msg, zmq::DONTWAIT)
        }
    };
    if let Err(err) = sent {
        // Only a socket being torn down fails here; the I/O thread reports
        // the link's end on its next use of it.
        tracing::warn!(%err, "zmq: direct send failed");
        return Ok(zmq::POLLIN);
    }
    Ok(socket.get_events().unwrap_or(zmq::POLLIN))
}
