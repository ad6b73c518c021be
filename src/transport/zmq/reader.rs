//! Reading an outbound link's DEALER without the I/O thread.
//!
//! Once a link is up, a reader task on the runtime that connected it reads
//! the DEALER: tokio's reactor watches the socket's `ZMQ_FD` (a duplicate of
//! it, so closing the socket never leaves a stale registration), and a
//! reply wakes that runtime straight from libzmq's I/O thread, where it used
//! to wake our I/O thread first, which then woke the runtime. The I/O thread
//! leaves the DEALER's input alone while the task runs (it still sends
//! queued frames, probes, watches the monitor, and times the heartbeats),
//! reads it itself again during the shutdown drain and once the task ends
//! (its runtime shut down), reads it before the link is up, and reads what
//! waited a whole heartbeat tick unread (the task's runtime is not running,
//! e.g. a current-thread runtime between `block_on` calls).
//!
//! # Readiness
//! The task sleeps until the `ZMQ_FD` fires, but libzmq fires it only when
//! its command mailbox goes from idle to busy: a command that arrives while
//! another thread is inside a call on the socket (the I/O thread sending or
//! reading `ZMQ_EVENTS`, a caller's direct send) is taken by that call, and
//! a message it makes readable fires nothing. So every call on the DEALER
//! by anyone but the task ends by looking at `ZMQ_EVENTS` and, when a
//! message waits, kicks the task ([`RxShared::kick_if_reading`]). Likewise the task's
//! reads may take the I/O thread's "room to send" signal: while the I/O
//! thread waits for room ([`RxShared::set_wants_room`]), the task rings it
//! after each read.
//!
//! Both readers route a frame with [`route`], so a frame is handled the
//! same whoever read it: replies to the runtime, pongs and every other
//! frame as signs of life for the I/O thread's heartbeat clock (through
//! [`RxShared`]), a goodbye handed to the I/O thread, an invocation (never
//! valid on this side) refused.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::unix::AsyncFd;

use super::frames::{expects_reply, refusal};
use super::link::ZmqLink;
use super::task::ReaderTask;
use crate::transport::LinkEvents;
use crate::wire::{self, FrameRef, Kind, flags};

/// Frames read per turn before the task yields to its runtime.
const BUDGET: usize = 64;

/// What the readers of one outbound link tell the I/O thread.
#[derive(Debug, Default)]
pub(crate) struct RxShared {
    /// Frames read from the peer: any frame is a sign of life.
    frames: AtomicU64,
    /// Correlation id of the last pong read (the shutdown drain's probe).
    last_pong: AtomicU64,
    /// The peer said goodbye.
    goodbye: AtomicBool,
    /// The reader task: while it reads, the I/O thread leaves the input alone.
    task: ReaderTask,
    /// The I/O thread waits for room in the DEALER (a blocked frame).
    wants_room: AtomicBool,
    /// Held by whoever reads (and routes) a batch, so frames are routed in
    /// the order they were read even when both readers are at it.
    reading: parking_lot::Mutex<()>,
}

impl RxShared {
    /// Whether a reader task reads the DEALER now.
    pub(crate) fn task_reads(&self) -> bool {
        self.task.reads()
    }

    /// Frames read so far (the I/O thread compares it with what it saw).
    pub(crate) fn frames(&self) -> u64 {
        // Relaxed: a count compared for change only; nothing is read through it.
        self.frames.load(Ordering::Relaxed)
    }

    /// Whether a pong read answered the probe `id` or a later one: the
    /// peer reads a link's frames in order, so an answer to a later probe
    /// says it read `id` and everything before it too.
    pub(crate) fn pong_answers(&self, id: u64) -> bool {
        // Acquire: pairs with the Release in `record_pong`.
        self.last_pong.load(Ordering::Acquire) >= id
    }

    /// Records a pong answering probe `id`. Probe ids only grow, and the
    /// keep-alive pongs a peer sends unasked answer id 0: the highest is
    /// kept, so neither those nor a reader that reads several pongs before
    /// the I/O thread looks can hide the answer it waits for.
    fn record_pong(&self, id: u64) {
        // Release: pairs with the Acquire in `pong_answers`.
        self.last_pong.fetch_max(id, Ordering::Release);
    }

    /// Whether the peer said goodbye.
    pub(crate) fn said_goodbye(&self) -> bool {
        // Acquire: pairs with the Release in `route` that saw the goodbye.
        self.goodbye.load(Ordering::Acquire)
    }

    /// After a call on the DEALER by another thread found a message
    /// waiting: wakes the reader task if one reads (see the module docs).
    /// Returns whether one does.
    pub(crate) fn kick_if_reading(&self, events: zmq::PollEvents) -> bool {
        self.task.kick_if_reading(events)
    }

    /// Records whether the I/O thread waits for room to send.
    pub(crate) fn set_wants_room(&self, wants: bool) {
        // Relaxed: a hint; a missed ring is caught by the I/O thread's tick.
        self.wants_room.store(wants, Ordering::Relaxed);
    }

    /// Asks the reader task, if any, to end (the link is gone).
    pub(crate) fn stop(&self) {
        self.task.stop();
    }
}

/// What a routed frame asks of the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// Handled; `true` when it went to the application (a reply).
    Done(bool),
    /// The peer said goodbye: the link is lost.
    Goodbye,
}

/// Handles one checked frame read from an up outbound link.
pub(crate) fn route(
    link: &ZmqLink,
    events: &dyn LinkEvents,
    socket: &parking_lot::Mutex<zmq::Socket>,
    frame: &FrameRef<'_>,
    len: usize,
) -> Routed {
    let header = &frame.header;
    let rx = &link.rx;
    link.counters.record_received(len);
    rx.frames.fetch_add(1, Ordering::Relaxed);
    match header.kind {
        kind if kind.is_reply() => {
            events.on_reply(header, frame.payload);
            return Routed::Done(true);
        }
        Kind::Heartbeat if header.has(flags::PONG) => rx.record_pong(header.correlation_id.0),
        Kind::Heartbeat => {}
        Kind::Goodbye => {
            // Release: pairs with the Acquire in `said_goodbye`.
            rx.goodbye.store(true, Ordering::Release);
            return Routed::Goodbye;
        }
        kind => {
            // Invocations travel on the peer's ROUTER, never back on our DEALER.
            tracing::warn!(peer = %link.peer_id(), ?kind, "zmq: invocation on an outbound link refused");
            if expects_reply(kind) {
                let answer = refusal(link.local(), header);
                let _ = socket.lock().send(answer, zmq::DONTWAIT);
            }
        }
    }
    Routed::Done(false)
}

/// Why a read stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Nothing more to read now.
    Drained,
    /// The budget ran out with frames left.
    Budget,
    /// The peer said goodbye.
    Goodbye,
}

/// Reads up to a budget of messages from an up DEALER and routes them. The
/// socket is locked per message and not while a frame is routed, so a
/// direct sender woken by a reply never waits for the reader; the link's
/// reading lock is held for the whole batch, so a frame is routed before
/// anyone reads the next. With `wait` false (the I/O thread) nothing is
/// read while the task reads. `delivered` is set when a reply went to the
/// application.
pub(crate) fn read_up(
    link: &ZmqLink,
    socket: &parking_lot::Mutex<zmq::Socket>,
    (events, max_frame, wait): (&dyn LinkEvents, usize, bool),
    body: &mut zmq::Message,
    delivered: &mut bool,
) -> Read {
    let _reading = match wait {
        true => link.rx.reading.lock(),
        false => match link.rx.reading.try_lock() {
            Some(guard) => guard,
            None => return Read::Drained,
        },
    };
    for _ in 0..BUDGET {
        let locked = socket.lock();
        if locked.recv(body, zmq::DONTWAIT).is_err() {
            return Read::Drained;
        }
        let (more, first) = (body.get_more(), body.len());
        let extra = if more {
            super::dealer::skip_rest(&locked, body)
        } else {
            0
        };
        drop(locked);
        if more {
            let err = wire::ProtocolError::LengthMismatch {
                declared: first as u64,
                actual: first + extra,
            };
            link.counters.record_protocol_error();
            events.on_protocol_error(Some(link.peer_id()), &err);
            continue;
        }
        let len = body.len();
        match wire::decode(body, max_frame) {
            Ok(frame) => match route(link, events, socket, &frame, len) {
                Routed::Done(reply) => *delivered |= reply,
                Routed::Goodbye => return Read::Goodbye,
            },
            Err(err) => {
                tracing::debug!(peer = %link.peer_id(), %err, "zmq: malformed frame on dealer");
                link.counters.record_protocol_error();
                events.on_protocol_error(Some(link.peer_id()), &err);
            }
        }
    }
    Read::Budget
}

/// Starts the reader task of the up outbound link `link` on the current
/// runtime, once per link. Without a runtime that drives I/O, or when the
/// socket is gone, nothing starts and the I/O thread keeps reading.
pub(crate) fn start(link: &Arc<ZmqLink>, events: &Arc<dyn LinkEvents>, max_frame: usize) {
    if link.is_closed_now() || !link.rx.task.begin() {
        return;
    }
    let fd = match watch(link) {
        Ok(fd) => fd,
        Err(err) => {
            tracing::debug!(%err, "zmq: the I/O thread keeps reading this link");
            end_task(link);
            return;
        }
    };
    // Ends the task's turn as reader however it ends (also when its runtime
    // drops it, even before its first poll), so the I/O thread reads again.
    let guard = TaskGuard(Arc::clone(link));
    let events = Arc::clone(events);
    tokio::spawn(async move {
        let link = &guard.0;
        run(link, &fd, (&*events, max_frame)).await;
        drop(guard);
    });
    // The I/O thread may sleep on the DEALER still: let it look again.
    link.wake_io();
}

/// Registers a duplicate of the DEALER's `ZMQ_FD` with the current runtime.
fn watch(link: &ZmqLink) -> std::io::Result<AsyncFd<OwnedFd>> {
    // Held while the fd is duplicated: the socket (and its fd) stays open.
    let socket = link
        .socket()
        .ok_or_else(|| std::io::Error::other("socket closed"))?;
    super::task::watch(&socket, link.socket_fd())
}

/// The reader loop: read what is there, then wait for the fd to fire.
///
/// The readiness seen is cleared only after a read that went as far as
/// EAGAIN (which also took libzmq's pending commands), and tokio keeps any
/// readiness that arrived meanwhile: no signal is lost between the two.
async fn run(link: &ZmqLink, fd: &AsyncFd<OwnedFd>, rx: (&dyn LinkEvents, usize)) {
    // Frames may have come before the task started.
    if read_all(link, rx).await.is_none() {
        return;
    }
    loop {
        let mut guard = tokio::select! {
            biased;
            () = link.rx.task.stop.notified() => return,
            () = link.rx.task.kick.notified() => {
                // A message that fired no signal: read it, keep readiness.
                if read_all(link, rx).await.is_none() {
                    return;
                }
                continue;
            }
            ready = fd.readable() => match ready {
                Ok(guard) => guard,
                Err(err) => {
                    tracing::debug!(%err, "zmq: reader task cannot wait on the socket");
                    return;
                }
            },
        };
        if read_all(link, rx).await.is_none() {
            return;
        }
        guard.clear_ready();
    }
}

/// Reads until nothing is left, yielding between budgets; `None` when the
/// task should end (link closed, socket gone, goodbye).
async fn read_all(link: &ZmqLink, (events, max_frame): (&dyn LinkEvents, usize)) -> Option<()> {
    let mut body = zmq::Message::new();
    loop {
        if link.is_closed_now() {
            return None;
        }
        let socket = link.socket()?;
        let mut delivered = false;
        let read = read_up(
            link,
            &socket,
            (events, max_frame, true),
            &mut body,
            &mut delivered,
        );
        drop(socket);
        if link.rx.wants_room.load(Ordering::Relaxed) {
            // Our reads may have taken the I/O thread's signal of room.
            link.wake_io_now();
        }
        match read {
            Read::Drained => return Some(()),
            Read::Budget => tokio::task::yield_now().await,
            Read::Goodbye => {
                // The I/O thread tears the link down and reports the loss.
                link.wake_io();
                return None;
            }
        }
    }
}

/// Ends a link's reader task's turn when dropped.
struct TaskGuard(Arc<ZmqLink>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        end_task(&self.0);
    }
}

/// The task no longer reads: the I/O thread takes the DEALER back.
fn end_task(link: &ZmqLink) {
    link.rx.task.end();
    link.wake_io();
}

#[cfg(test)]
mod tests {
    use super::RxShared;

    #[test]
    fn a_later_pong_or_a_keep_alive_does_not_hide_the_answer_awaited() {
        let rx = RxShared::default();
        let probe = (1u64 << 63) | 7;
        assert!(!rx.pong_answers(probe));
        rx.record_pong(probe);
        // The peer's unasked keep-alive, read before the I/O thread looks.
        rx.record_pong(0);
        assert!(rx.pong_answers(probe));
        // An answer to a later probe also says the peer read this one.
        let rx = RxShared::default();
        rx.record_pong(probe + 1);
        assert!(rx.pong_answers(probe));
        assert!(!rx.pong_answers(probe + 2));
    }
}
