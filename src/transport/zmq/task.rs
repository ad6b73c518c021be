//! What the runtime's reader tasks share, whichever socket they read: the
//! flag by which a task takes a socket's input from the I/O thread, the
//! signals that stop or kick it, and the registration of a socket's
//! `ZMQ_FD` with the runtime's reactor.
//!
//! A DEALER's reader task (`reader`) and the ROUTER's (`router::task`)
//! follow the same rule: libzmq fires `ZMQ_FD` only when its command
//! mailbox goes from idle to busy, so every call on the socket by another
//! thread ends by looking at `ZMQ_EVENTS` and, when a message waits,
//! kicks the task ([`ReaderTask::kick_if_reading`]).

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// A socket's reader task, as the other threads see it.
#[derive(Debug, Default)]
pub(crate) struct ReaderTask {
    /// A reader task reads the socket; the I/O thread leaves its input alone.
    reads: AtomicBool,
    /// Tells the task to end.
    pub(crate) stop: Notify,
    /// Tells the task a message waits that fired no signal.
    pub(crate) kick: Notify,
}

impl ReaderTask {
    /// Whether a reader task reads the socket now.
    pub(crate) fn reads(&self) -> bool {
        // Acquire: pairs with the Release in `end`, so once the I/O thread
        // sees the task gone it reads whatever the task left.
        self.reads.load(Ordering::Acquire)
    }

    /// Claims the socket for a task; false when one reads it already.
    pub(crate) fn begin(&self) -> bool {
        // AcqRel: one caller wins; the Release half pairs with the I/O
        // thread's Acquire in `reads`.
        !self.reads.swap(true, Ordering::AcqRel)
    }

    /// The task no longer reads: the I/O thread takes the socket back.
    pub(crate) fn end(&self) {
        // Release: pairs with the Acquire in `reads`.
        self.reads.store(false, Ordering::Release);
    }

    /// After a call on the socket by another thread found `events`: wakes
    /// the task if one reads and a message waits. Returns whether one reads.
    pub(crate) fn kick_if_reading(&self, events: zmq::PollEvents) -> bool {
        let reading = self.reads();
        if reading && events.contains(zmq::POLLIN) {
            // Keeps a permit when the task is not waiting yet.
            self.kick.notify_one();
        }
        reading
    }

    /// Asks the task, if any, to end.
    pub(crate) fn stop(&self) {
        // `notify_one` keeps a permit, so a task not waiting yet still sees it.
        self.stop.notify_one();
    }
}

/// Registers a duplicate of a socket's `ZMQ_FD` with the current runtime.
///
/// `socket` must be the socket (held open by the caller while this runs)
/// whose `ZMQ_FD` is `fd`. Fails without a runtime, or with one that does
/// not drive I/O (then the I/O thread keeps reading).
pub(crate) fn watch(
    socket: &parking_lot::Mutex<zmq::Socket>,
    fd: RawFd,
) -> std::io::Result<AsyncFd<OwnedFd>> {
    tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let _open = socket;
    // SAFETY: `fd` is the `ZMQ_FD` of `socket`, which the caller holds open
    // until after this returns; it is only borrowed to make the duplicate.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed.try_clone_to_owned()?;
    // tokio panics when the runtime does not drive I/O (built without
    // `enable_io`); the I/O thread then keeps reading instead.
    let register = || {
        // SAFETY: the `AsyncFd` takes the `OwnedFd` (our own duplicate),
        // which therefore stays open and refers to the same eventfd for the
        // `AsyncFd`'s whole life, and `as_raw_fd` always returns it.
        unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(register))
        .map_err(|_| std::io::Error::other("the runtime does not drive I/O"))?
        .map_err(std::io::Error::from)
}
