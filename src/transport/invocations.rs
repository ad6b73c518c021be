//! The inbox's queue of invocations: transports push, the dispatcher pops.
//!
//! Preallocated to its capacity when the manager is built, so handing an
//! invocation to the dispatcher never allocates (tokio's mpsc channel, used
//! here before, allocates a block per 32 messages: a few hundredths of an
//! allocation per invocation read by the ZeroMQ I/O thread). It keeps what
//! the channel gave, with the same method names and error types, so a
//! transport written against the channel needs no change beyond its type:
//! - a bound: a full queue makes [`InvocationSender::send`] and
//!   [`InvocationSender::reserve`] wait and [`InvocationSender::try_send`]
//!   fail with `Full` (backpressure reaches the transport, which stops
//!   reading; nothing is dropped);
//! - first-in first-out order, and senders waiting for room are woken one
//!   per invocation taken;
//! - close: once the receiver is dropped (or closed) nothing is accepted and
//!   waiting senders are told at once; once every sender is dropped the
//!   receiver gets what is queued, then `None`.
//!
//! A transport whose links wait for room inside the caller's own future
//! (`PeerLink::poll_writable`) uses [`InvocationSender::poll_room`]: the
//! task's waker goes into a fixed set of slots under the queue's lock
//! (`slots`), no future is stored, nothing is allocated.
//!
//! A `parking_lot` mutex over a preallocated `VecDeque`, as the ZeroMQ
//! link's frame queue (`transport/zmq/queue.rs`): uncontended it costs about
//! what the channel's atomics did, and it makes reservations (a slot held
//! for a value not yet given) exact.

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::mpsc::error::{SendError, TryRecvError, TrySendError};

use super::Inbound;

pub(crate) mod slots;
use slots::WakerSlots;

/// Makes a queue of `capacity` invocations (at least one), allocated now.
pub fn invocation_queue(capacity: usize) -> (InvocationSender, InvocationReceiver) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity),
            reserved: 0,
            closed: false,
            waiting: WakerSlots::default(),
        }),
        capacity,
        room: Notify::new(),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
    });
    let sender = InvocationSender {
        shared: Arc::clone(&shared),
    };
    (sender, InvocationReceiver { shared })
}

struct State {
    items: VecDeque<Inbound>,
    /// Slots held by permits not yet used: they count as taken.
    reserved: usize,
    /// The receiver is gone or closed: nothing more is accepted.
    closed: bool,
    /// Senders waiting for room through [`InvocationSender::poll_room`]
    /// (all woken by a slot freed, or by the close).
    waiting: WakerSlots,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Senders waiting for room; one is woken per invocation taken.
    room: Notify,
    /// The receiver waiting for an invocation (or for the last sender to go).
    ready: Notify,
    /// Live senders; at zero the receiver ends once the queue is empty.
    senders: AtomicUsize,
}

impl Shared {
    /// Holds a slot if there is room now.
    fn try_reserve(&self) -> Result<(), TrySendError<()>> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.items.len() + state.reserved >= self.capacity {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(())
    }

    /// Takes the next invocation (the receiver's side).
    fn pop(&self) -> Result<Inbound, TryRecvError> {
        let (popped, taken) = {
            let mut state = self.state.lock();
            let popped = state.items.pop_front();
            let taken = match popped {
                Some(_) => state.waiting.take_all(),
                None => None,
            };
            (popped, taken)
        };
        slots::wake(taken);
        match popped {
            Some(inbound) => {
                self.room.notify_one();
                Ok(inbound)
            }
            // Acquire: pairs with the last sender's Release decrement; a
            // sender pushes before it drops, so nothing is left behind.
            None if self.senders.load(Ordering::Acquire) == 0 => {
                match self.state.lock().items.pop_front() {
                    Some(inbound) => Ok(inbound),
                    None => Err(TryRecvError::Disconnected),
                }
            }
            None => Err(TryRecvError::Empty),
        }
    }

    /// Gives a held slot back unused.
    fn release(&self) {
        let taken = {
            let mut state = self.state.lock();
            state.reserved -= 1;
            state.waiting.take_all()
        };
        slots::wake(taken);
        self.room.notify_one();
    }
}

/// The transports' end of the inbox's queue ([`Inbox::invocations`](super::Inbox::invocations)).
/// Cloning it is cheap; the receiver ends when every clone is gone.
pub struct InvocationSender {
    shared: Arc<Shared>,
}

/// A slot held in the queue by [`InvocationSender::reserve`]: sending into
/// it cannot fail nor wait. Dropping it unused gives the slot back.
pub struct InvocationPermit<'a> {
    shared: &'a Shared,
}

/// The dispatcher's end of the inbox's queue.
pub struct InvocationReceiver {
    shared: Arc<Shared>,
}

impl InvocationSender {
    /// Queues `inbound` if there is room now; gives it back otherwise
    /// (`Full`, or `Closed` once the receiver is gone).
    // The error gives the invocation back (no copy, no box), as the channel's did.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, inbound: Inbound) -> Result<(), TrySendError<Inbound>> {
        match self.shared.try_reserve() {
            Ok(()) => {
                InvocationPermit {
                    shared: &self.shared,
                }
                .send(inbound);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(inbound)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(inbound)),
        }
    }

    /// Waits for room and holds a slot. Cancel-safe: dropped while it waits,
    /// it holds nothing. Fails once the receiver is gone.
    pub async fn reserve(&self) -> Result<InvocationPermit<'_>, SendError<()>> {
        loop {
            // Registered before looking, so a slot freed in between wakes it.
            let mut room = pin!(self.shared.room.notified());
            room.as_mut().enable();
            match self.shared.try_reserve() {
                Ok(()) => {
                    return Ok(InvocationPermit {
                        shared: &self.shared,
                    });
                }
                Err(TrySendError::Closed(())) => return Err(SendError(())),
                Err(TrySendError::Full(())) => room.await,
            }
        }
    }

    /// Ready once the queue has room for an invocation, or with an error
    /// once the receiver is gone; otherwise keeps the task's waker (woken
    /// when a slot frees or the receiver goes) and is pending. Holds no
    /// slot and allocates nothing: a caller that waits in its own future
    /// polls this, then tries [`Self::try_send`] again (another sender may
    /// have taken the room first).
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), SendError<()>>> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Poll::Ready(Err(SendError(())));
        }
        if state.items.len() + state.reserved < self.shared.capacity {
            return Poll::Ready(Ok(()));
        }
        // Kept under the lock a pop takes: a slot freed after this look
        // finds the waker.
        if !state.waiting.register(cx.waker()) {
            drop(state);
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Queues `inbound`, waiting while the queue is full; gives it back once
    /// the receiver is gone. Dropped while it waits, it drops `inbound`.
    pub async fn send(&self, inbound: Inbound) -> Result<(), SendError<Inbound>> {
        match self.reserve().await {
            Ok(permit) => {
                permit.send(inbound);
                Ok(())
            }
            Err(SendError(())) => Err(SendError(inbound)),
        }
    }

    /// Whether the receiver is gone (nothing is accepted any more).
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed
    }

    /// How many invocations the queue has room for now (as a channel's
    /// `capacity`): a sender may look before it prepares one.
    pub fn capacity(&self) -> usize {
        let state = self.shared.state.lock();
        let taken = state.items.len() + state.reserved;
        self.shared.capacity.saturating_sub(taken)
    }

    /// How many invocations the queue holds at most.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl Clone for InvocationSender {
    fn clone(&self) -> Self {
        // Relaxed: a count only; the last decrement below orders itself.
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for InvocationSender {
    fn drop(&mut self) {
        // AcqRel: the last sender's decrement (Release) is what the
        // receiver's Acquire load sees before it reports the end.
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl fmt::Debug for InvocationSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvocationSender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl InvocationPermit<'_> {
    /// Queues `inbound` in the held slot. If the receiver has gone since the
    /// slot was held, `inbound` is dropped, as a channel's permit does.
    pub fn send(self, inbound: Inbound) {
        let shared = self.shared;
        // The slot is used, not given back: no `Drop`.
        std::mem::forget(self);
        let mut state = shared.state.lock();
        state.reserved -= 1;
        if state.closed {
            drop(state);
            drop(inbound);
            return;
        }
        state.items.push_back(inbound);
        drop(state);
        shared.ready.notify_one();
    }
}

impl Drop for InvocationPermit<'_> {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for InvocationPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InvocationPermit")
    }
}

impl InvocationReceiver {
    /// The next invocation, waiting while there is none; `None` once every
    /// sender is gone and the queue is empty. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Inbound> {
        loop {
            let mut ready = pin!(self.shared.ready.notified());
            ready.as_mut().enable();
            match self.shared.pop() {
                Ok(inbound) => return Some(inbound),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => ready.await,
            }
        }
    }

    /// The next invocation if one is queued.
    pub fn try_recv(&mut self) -> Result<Inbound, TryRecvError> {
        self.shared.pop()
    }

    /// Stops accepting: senders (and those waiting for room) fail from now
    /// on; what is queued can still be received.
    pub fn close(&mut self) {
        let taken = {
            let mut state = self.shared.state.lock();
            state.closed = true;
            state.waiting.take_all()
        };
        slots::wake(taken);
        self.shared.room.notify_waiters();
    }

    /// Invocations queued now.
    pub fn len(&self) -> usize {
        self.shared.state.lock().items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for InvocationReceiver {
    fn drop(&mut self) {
        self.close();
        // What is left would never run: drop it (and the links it holds)
        // now, outside the lock, rather than with the last sender.
        let left = std::mem::take(&mut self.shared.state.lock().items);
        drop(left);
    }
}

impl fmt::Debug for InvocationReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvocationReceiver")
            .field("capacity", &self.shared.capacity)
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "invocations_tests.rs"]
mod tests;
