//! A link's bounded queue of frames for the I/O thread.
//!
//! Preallocated to its capacity when the link is made, so queuing a frame
//! never allocates (tokio's mpsc channel allocates a block per 32 messages,
//! a few hundredths of an allocation per one-way message). It keeps what
//! the channel gave: a bound (a full queue makes `push` wait and `try_push`
//! fail), first-in first-out order, and a close after which nothing is
//! accepted and waiting senders are told at once.
//!
//! It also counts the frames accepted and not yet in the socket, which is
//! what a direct send must not overtake (see `shared::send_direct`): the
//! count goes up under the queue's lock, before the I/O thread can take the
//! frame, so the I/O thread's decrement never comes first.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why a frame was not queued (the frame is given back).
pub(crate) enum PushError {
    /// The queue holds its capacity.
    Full(zmq::Message),
    /// The link is closed; nothing is accepted any more.
    Closed(zmq::Message),
}

struct Inner {
    frames: VecDeque<zmq::Message>,
    closed: bool,
}

/// The bounded, preallocated frame queue of one link.
pub(crate) struct FrameQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Senders waiting for room; woken once the queue is down to half.
    room: Notify,
    /// Frames accepted and not yet moved into the socket.
    unsent: AtomicUsize,
}

impl std::fmt::Debug for FrameQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameQueue")
            .field("capacity", &self.capacity)
            .field("unsent", &self.unsent.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FrameQueue {
    /// An empty queue of `capacity` frames (at least one), allocated now.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Mutex::new(Inner {
                frames: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            capacity,
            room: Notify::new(),
            unsent: AtomicUsize::new(0),
        }
    }

    /// Queues `msg` if there is room now.
    pub(crate) fn try_push(&self, msg: zmq::Message) -> Result<(), PushError> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(PushError::Closed(msg));
        }
        if inner.frames.len() >= self.capacity {
            return Err(PushError::Full(msg));
        }
        // Relaxed: read under the socket's mutex by direct senders, and the
        // I/O thread only decrements after taking the frame under this lock.
        self.unsent.fetch_add(1, Ordering::Relaxed);
        // Within the preallocated capacity: no allocation.
        inner.frames.push_back(msg);
        Ok(())
    }

    /// Queues `msg`, waiting while the queue is full; gives it back once
    /// the queue is closed. Dropping the future drops the frame unqueued.
    pub(crate) async fn push(&self, mut msg: zmq::Message) -> Result<(), zmq::Message> {
        loop {
            // Registered before the attempt, so a frame taken between the
            // attempt and the wait still wakes us.
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            match self.try_push(msg) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(back)) => return Err(back),
                Err(PushError::Full(back)) => msg = back,
            }
            room.await;
        }
    }

    /// Takes the oldest frame (the I/O thread); once the queue is down to
    /// half its capacity, wakes the senders waiting for room.
    pub(crate) fn pop(&self) -> Option<zmq::Message> {
        let (msg, left) = {
            let mut inner = self.inner.lock();
            let msg = inner.frames.pop_front()?;
            (msg, inner.frames.len())
        };
        // Not one sender per slot freed: a sender that outruns the I/O thread
        // would then wait once per message (each wait costs its caller a
        // boxed future). Woken at half, it queues half a queue at once. A
        // waiter registers before it finds the queue full, so it sees every
        // pop from then on, and the queue only gets below half through one.
        if left <= self.capacity / 2 {
            self.room.notify_waiters();
        }
        Some(msg)
    }

    /// Whether no frame waits in the queue.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.lock().frames.is_empty()
    }

    /// Frames accepted and not yet in the socket (a direct send waits
    /// behind them).
    pub(crate) fn unsent(&self, order: Ordering) -> usize {
        self.unsent.load(order)
    }

    /// The I/O thread moved one taken frame into the socket.
    pub(crate) fn sent_one(&self) {
        // Release (under the socket's mutex): a direct send that sees the
        // count drop sees this frame in the socket before its own.
        self.unsent.fetch_sub(1, Ordering::Release);
    }

    /// Closes the queue: drops what it holds, refuses what comes, and
    /// tells every waiting sender.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            std::mem::take(&mut inner.frames)
        };
        drop(dropped);
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(byte: u8) -> zmq::Message {
        zmq::Message::from(&[byte][..])
    }

    #[test]
    fn frames_leave_in_order_and_the_bound_holds() {
        let queue = FrameQueue::new(2);
        assert!(queue.try_push(msg(1)).is_ok());
        assert!(queue.try_push(msg(2)).is_ok());
        assert!(matches!(queue.try_push(msg(3)), Err(PushError::Full(_))));
        assert_eq!(queue.unsent(Ordering::Relaxed), 2);
        assert_eq!(&queue.pop().unwrap()[..], &[1]);
        queue.sent_one();
        assert!(queue.try_push(msg(3)).is_ok());
        assert_eq!(&queue.pop().unwrap()[..], &[2]);
        assert_eq!(&queue.pop().unwrap()[..], &[3]);
        assert!(queue.pop().is_none());
        assert!(queue.is_empty());
    }

    #[test]
    fn a_waiting_sender_waits_until_half_the_queue_is_free() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let queue = FrameQueue::new(4);
        for byte in 0..4 {
            queue.try_push(msg(byte)).ok().unwrap();
        }
        let mut push = std::pin::pin!(queue.push(msg(9)));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(push.as_mut().poll(&mut cx).is_pending());
        queue.pop().unwrap();
        assert!(
            push.as_mut().poll(&mut cx).is_pending(),
            "woken for one free slot"
        );
        queue.pop().unwrap();
        assert!(
            push.as_mut().poll(&mut cx).is_ready(),
            "half the queue free"
        );
        assert_eq!(queue.unsent(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_or_the_close() {
        let queue = std::sync::Arc::new(FrameQueue::new(1));
        queue.try_push(msg(1)).ok().unwrap();
        let waiter = {
            let queue = std::sync::Arc::clone(&queue);
            tokio::spawn(async move { queue.push(msg(2)).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert_eq!(&queue.pop().unwrap()[..], &[1]);
        assert!(waiter.await.unwrap(), "room freed by the pop");
        let closed = {
            let queue = std::sync::Arc::clone(&queue);
            tokio::spawn(async move { queue.push(msg(3)).await.is_err() })
        };
        tokio::task::yield_now().await;
        queue.close();
        assert!(
            closed.await.unwrap(),
            "the close reached the waiting sender"
        );
        assert!(matches!(queue.try_push(msg(4)), Err(PushError::Closed(_))));
        assert!(queue.is_empty());
    }
}
