//! A link's bounded queue of frames for the I/O thread.
//!
//! Preallocated to its capacity when the link is made, so queuing a frame
//! never allocates (tokio's mpsc channel allocates a block per 32 messages,
//! a few hundredths of an allocation per one-way message). It keeps what
//! the channel gave: a bound (a full queue makes `push` wait and `try_push`
//! fail), first-in first-out order, and a close after which nothing is
//! accepted and waiting senders are told at once.
//!
//! A sender that finds it full waits for room inside its own future
//! ([`FrameQueue::poll_room`]): its task's waker goes into a fixed set of
//! slots under the queue's lock (`invocations::slots`), so the wait
//! allocates nothing, and the look for room happens under the same lock as
//! the I/O thread's `pop`, so no wake-up is lost between them.
//!
//! It also counts the frames accepted and not yet in the socket, which is
//! what a direct send must not overtake (see `shared::send_direct`): the
//! count goes up under the queue's lock, before the I/O thread can take the
//! frame, so the I/O thread's decrement never comes first.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use parking_lot::Mutex;

use crate::transport::invocations::slots::{self, WakerSlots};

/// Why a frame was not queued (the frame is given back).
pub(crate) enum PushError {
    /// The queue holds its capacity.
    Full(zmq::Message),
    /// The link is closed; nothing is accepted any more.
    Closed(zmq::Message),
}

/// The queue is closed: nothing is accepted any more.
#[derive(Debug)]
pub(crate) struct QueueClosed;

struct Inner {
    frames: VecDeque<zmq::Message>,
    closed: bool,
    /// Senders waiting for room (taken out and woken at half, or at close).
    waiting: WakerSlots,
}

/// The bounded, preallocated frame queue of one link.
pub(crate) struct FrameQueue {
    inner: Mutex<Inner>,
    capacity: usize,
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
                waiting: WakerSlots::default(),
            }),
            capacity,
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

    /// Ready once the queue has room for a frame (or is closed); otherwise
    /// keeps the task's waker, woken once the queue is down to half its
    /// capacity or closed. Allocates nothing. The caller tries its push
    /// again when ready: another sender may have taken the room first.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), QueueClosed>> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Poll::Ready(Err(QueueClosed));
        }
        if inner.frames.len() < self.capacity {
            return Poll::Ready(Ok(()));
        }
        // Registered under the lock `pop` takes: a frame taken after this
        // look finds the waker.
        if !inner.waiting.register(cx.waker()) {
            drop(inner);
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Queues `msg`, waiting while the queue is full; gives it back once
    /// the queue is closed. Dropping the future drops the frame unqueued.
    pub(crate) async fn push(&self, mut msg: zmq::Message) -> Result<(), zmq::Message> {
        loop {
            match self.try_push(msg) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(back)) => return Err(back),
                Err(PushError::Full(back)) => msg = back,
            }
            // A close is reported by the next `try_push`.
            let _ = poll_fn(|cx| self.poll_room(cx)).await;
        }
    }

    /// Takes the oldest frame (the I/O thread); once the queue is down to
    /// half its capacity, wakes the senders waiting for room.
    pub(crate) fn pop(&self) -> Option<zmq::Message> {
        let (msg, taken) = {
            let mut inner = self.inner.lock();
            let msg = inner.frames.pop_front()?;
            // Not one sender per slot freed: a sender that outruns the I/O
            // thread would then wait once per message. Woken at half, it
            // queues half a queue at once.
            let taken = match inner.frames.len() <= self.capacity / 2 {
                true => inner.waiting.take_all(),
                false => None,
            };
            (msg, taken)
        };
        slots::wake(taken);
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
        let (dropped, taken) = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            (std::mem::take(&mut inner.frames), inner.waiting.take_all())
        };
        drop(dropped);
        slots::wake(taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

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

    /// A waker that counts its wakes.
    fn counter() -> (std::sync::Arc<AtomicUsize>, Waker) {
        struct Count(std::sync::Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let waker = Waker::from(std::sync::Arc::new(Count(std::sync::Arc::clone(&count))));
        (count, waker)
    }

    #[test]
    fn a_waiting_sender_is_woken_once_half_the_queue_is_free() {
        let queue = FrameQueue::new(4);
        for byte in 0..4 {
            queue.try_push(msg(byte)).ok().unwrap();
        }
        let (wakes, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(queue.poll_room(&mut cx).is_pending());
        assert!(queue.poll_room(&mut cx).is_pending(), "registered once");
        queue.pop().unwrap();
        assert_eq!(wakes.load(Ordering::Relaxed), 0, "woken for one free slot");
        assert!(queue.poll_room(&mut cx).is_ready(), "a look finds the room");
        queue.pop().unwrap();
        assert_eq!(wakes.load(Ordering::Relaxed), 1, "half the queue free");
        queue.pop().unwrap();
        assert_eq!(wakes.load(Ordering::Relaxed), 1, "taken out when woken");
    }

    #[test]
    fn a_close_wakes_the_waiting_senders_and_every_slot_past_the_set_at_once() {
        let queue = FrameQueue::new(1);
        queue.try_push(msg(0)).ok().unwrap();
        let wakers: Vec<_> = (0..=slots::SLOTS).map(|_| counter()).collect();
        for (_, waker) in &wakers {
            assert!(
                queue
                    .poll_room(&mut Context::from_waker(waker))
                    .is_pending()
            );
        }
        let late = &wakers[slots::SLOTS].0;
        assert_eq!(
            late.load(Ordering::Relaxed),
            1,
            "no slot left: woken at once"
        );
        queue.close();
        assert!(wakers.iter().all(|(n, _)| n.load(Ordering::Relaxed) >= 1));
        let (_, waker) = counter();
        let closed = queue.poll_room(&mut Context::from_waker(&waker));
        assert!(matches!(closed, Poll::Ready(Err(QueueClosed))));
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
