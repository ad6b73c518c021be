//! The lock on a link's producer ring. Every frame of the link is written
//! under it: the caller's send, an inline handler's reply on the reader's
//! task, a large frame's marker. Uncontended (the usual case) it is one
//! atomic read-modify-write to take and one to give back, as `futures`'
//! async mutex is (tokio's semaphore-based mutex also takes an internal
//! lock on release). A writer that must wait for ring space may hold it
//! across that wait (`ShmLink::write`), so it can be awaited; waiting for it
//! is cancel-safe.
//!
//! Its waiters are the link's [`Waiters`]: a task that finds it taken
//! registers there and sets [`WAITING`] in the same word the holder clears
//! on release, so the holder sees the flag (and wakes the set) or the
//! waiter sees the lock free: no wake-up is lost, and waiting allocates
//! nothing. The same set holds the senders waiting for room (`room`).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use super::link::Tx;
use super::waiters::Waiters;

/// State bit: a writer holds the ring.
const LOCKED: u8 = 1;
/// State bit: a task waits for the lock (wake [`Waiters`] on release).
const WAITING: u8 = 2;

/// Held while one frame is written.
pub(crate) struct TxGuard<'a> {
    lock: &'a TxLock,
}

/// Another writer holds the ring right now.
#[derive(Debug)]
pub(crate) struct Busy;

/// The producer ring of one link, behind its lock.
pub(crate) struct TxLock {
    state: AtomicU8,
    tx: UnsafeCell<Tx>,
    waiters: Arc<Waiters>,
    /// Wakes `waiters` (registered with the ring's space doorbell).
    room: Waker,
}

// SAFETY: `tx` is reached only through a `TxGuard`, and a guard exists only
// while `state` holds `LOCKED` set by the `fetch_or` that made it: one thread
// at a time touches the `Tx` (which is `Send`).
unsafe impl Sync for TxLock {}

impl TxLock {
    pub(crate) fn new(tx: Tx) -> Self {
        let (waiters, room) = Waiters::new();
        Self {
            state: AtomicU8::new(0),
            tx: UnsafeCell::new(tx),
            waiters,
            room,
        }
    }

    /// Takes the ring, waiting for the current writer.
    pub(crate) async fn lock(&self) -> TxGuard<'_> {
        std::future::poll_fn(|cx| self.poll_lock(cx)).await
    }

    /// Takes the ring if no other writer holds it.
    pub(crate) fn try_lock(&self) -> Result<TxGuard<'_>, Busy> {
        // Acquire: pairs with the release in `TxGuard::drop` (the last
        // writer's records and indices are seen).
        if self.state.fetch_or(LOCKED, Ordering::Acquire) & LOCKED == 0 {
            Ok(TxGuard { lock: self })
        } else {
            Err(Busy)
        }
    }

    /// Takes the ring, or registers `cx` to be woken when it is released.
    pub(crate) fn poll_lock(&self, cx: &mut Context<'_>) -> Poll<TxGuard<'_>> {
        loop {
            if let Ok(guard) = self.try_lock() {
                return Poll::Ready(guard);
            }
            self.waiters.register(cx.waker());
            // AcqRel: the release orders our registration before a holder
            // that sees `WAITING` wakes the set; same word as the holder's
            // release, so one of the two sees the other.
            if self.state.fetch_or(WAITING, Ordering::AcqRel) & LOCKED != 0 {
                return Poll::Pending;
            }
            // Released meanwhile: take it (a spurious wake may follow).
        }
    }

    /// The link's waiting senders.
    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// The waker that wakes every waiting sender (for the ring's doorbell).
    pub(crate) fn room_waker(&self) -> &Waker {
        &self.room
    }
}

impl Deref for TxGuard<'_> {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        // SAFETY: this guard holds the lock (see `impl Sync for TxLock`).
        unsafe { &*self.lock.tx.get() }
    }
}

impl DerefMut for TxGuard<'_> {
    fn deref_mut(&mut self) -> &mut Tx {
        // SAFETY: this guard holds the lock, and `&mut self` makes this the
        // only reference through it.
        unsafe { &mut *self.lock.tx.get() }
    }
}

impl Drop for TxGuard<'_> {
    fn drop(&mut self) {
        // AcqRel: Release pairs with the Acquire of the next `try_lock`;
        // Acquire pairs with a waiter's `fetch_or` (its waker is registered).
        if self.lock.state.swap(0, Ordering::AcqRel) & WAITING != 0 {
            self.lock.waiters.wake_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;

    #[tokio::test]
    async fn a_waiter_gets_the_ring_when_the_holder_lets_go() {
        let config = shm_ring::RingConfig::new(4096).expect("ring geometry");
        let (producer, _consumer) = shm_ring::heap_pair(config).expect("ring");
        let lock = TxLock::new(Tx::new(producer));
        let held = lock.try_lock().expect("free");
        assert!(lock.try_lock().is_err());
        let mut waiting = pin!(lock.lock());
        let waker = Waker::noop();
        assert!(
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(held);
        assert!(
            waiting
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_ready()
        );
    }
}
