//! The ROUTER's reader task, on the runtime that bound the transport.
//!
//! tokio's reactor watches a duplicate of the ROUTER's `ZMQ_FD`, so a
//! request wakes that runtime straight from libzmq's I/O thread, where it
//! used to wake our I/O thread first, which then woke the dispatcher. The
//! fd fires only when libzmq's command mailbox goes from idle to busy, so
//! every call on the ROUTER by another thread (a reply sent by its caller,
//! a pong or a queued reply sent by the I/O thread) ends with a look at
//! `ZMQ_EVENTS` that kicks the task when a message waits.
//!
//! While an invocation waits for room in the inbox the task reads nothing
//! and waits for room itself (the I/O thread also retries it on its timer,
//! and kicks the task when it went). An in-place handler's reply that finds
//! its link's queue full is queued, waiting for room, before the task reads
//! on: nothing is dropped and nothing grows.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use super::RouterCore;
use super::read::Read;

/// Frames read per turn before the task yields to its runtime.
const BUDGET: usize = 64;

/// Starts the ROUTER's reader task on the current runtime, once. Without a
/// runtime that drives I/O nothing starts and the I/O thread keeps reading.
pub(crate) fn start(core: &Arc<RouterCore>) {
    let task = &core.shared.router_task;
    if core.shared.is_shut_down() || !task.begin() {
        return;
    }
    let watched = match core.socket.upgrade() {
        Some(socket) => crate::transport::zmq::task::watch(&socket, core.fd),
        None => Err(std::io::Error::other("socket closed")),
    };
    let fd = match watched {
        Ok(fd) => fd,
        Err(err) => {
            tracing::debug!(%err, "zmq: the I/O thread keeps reading the router");
            end_task(core);
            return;
        }
    };
    // Ends the task's turn as reader however it ends (also when its runtime
    // drops it, even before its first poll), so the I/O thread reads again.
    let guard = TaskGuard(Arc::clone(core));
    tokio::spawn(async move {
        run(&guard.0, &fd).await;
        drop(guard);
    });
    // The I/O thread may sleep on the ROUTER still: let it look again.
    core.shared.wake();
}

/// The reader loop: read what is there, then wait for the fd to fire.
///
/// The readiness seen is cleared only after a read that went as far as
/// EAGAIN (which also took libzmq's pending commands), and tokio keeps any
/// readiness that arrived meanwhile: no signal is lost between the two.
async fn run(core: &RouterCore, fd: &AsyncFd<OwnedFd>) {
    let task = &core.shared.router_task;
    // Frames may have come before the task started.
    if read_all(core).await.is_none() {
        return;
    }
    loop {
        let mut guard = tokio::select! {
            biased;
            () = task.stop.notified() => return,
            () = task.kick.notified() => {
                // A message that fired no signal: read it, keep readiness.
                if read_all(core).await.is_none() {
                    return;
                }
                continue;
            }
            ready = fd.readable() => match ready {
                Ok(guard) => guard,
                Err(err) => {
                    tracing::debug!(%err, "zmq: the router's reader task cannot wait on the socket");
                    return;
                }
            },
        };
        if read_all(core).await.is_none() {
            return;
        }
        guard.clear_ready();
    }
}

/// Reads until nothing is left, yielding between budgets and waiting while
/// the inbox is full; `None` when the task should end (shutdown, socket
/// closed).
async fn read_all(core: &RouterCore) -> Option<()> {
    let task = &core.shared.router_task;
    loop {
        if core.shared.is_shut_down() {
            return None;
        }
        let batch = core.read_batch(true, BUDGET);
        if let Some((link, msg)) = batch.deferred
            && let Err(err) = link.queue_msg(msg).await
        {
            tracing::debug!(%err, "zmq: an in-place reply could not be queued");
        }
        match batch.read {
            Read::Drained => return Some(()),
            Read::Budget => tokio::task::yield_now().await,
            Read::Gone => return None,
            Read::Stalled => {
                tokio::select! {
                    biased;
                    () = task.stop.notified() => return None,
                    // The I/O thread's retry handed it over.
                    () = task.kick.notified() => {}
                    room = core.inbox.invocations.reserve() => {
                        // The slot is handed back and taken again under
                        // the state lock, where the stalled frame lives.
                        drop(room);
                        core.unstall(&mut core.state.lock(), Instant::now());
                    }
                }
            }
        }
    }
}

/// Ends the ROUTER's reader task's turn when dropped.
struct TaskGuard(Arc<RouterCore>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        end_task(&self.0);
    }
}

/// The task no longer reads: the I/O thread takes the ROUTER back.
fn end_task(core: &RouterCore) {
    core.shared.router_task.end();
    core.shared.wake();
}
