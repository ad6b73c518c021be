//! The lock on a link's producer ring. Every frame of the link is written
//! under it: the caller's send, an inline handler's reply on the reader's
//! task, a large frame's marker. Uncontended (the usual case) it is one
//! atomic swap to take and one to give back (`futures`' async mutex), where
//! tokio's semaphore-based mutex also takes an internal lock on release.
//! A writer that must wait for ring space holds it across that wait, so it
//! stays an async lock; the wait is cancel-safe (a dropped writer releases it).

use futures::lock::{Mutex, MutexGuard};

use super::link::Tx;

/// Held while one frame is written.
pub(crate) type TxGuard<'a> = MutexGuard<'a, Tx>;

/// Another writer holds the ring right now.
#[derive(Debug)]
pub(crate) struct Busy;

/// The producer ring of one link, behind its lock.
pub(crate) struct TxLock(Mutex<Tx>);

impl TxLock {
    pub(crate) fn new(tx: Tx) -> Self {
        Self(Mutex::new(tx))
    }

    /// Takes the ring, waiting for the current writer.
    pub(crate) async fn lock(&self) -> TxGuard<'_> {
        self.0.lock().await
    }

    /// Takes the ring if no other writer holds it.
    pub(crate) fn try_lock(&self) -> Result<TxGuard<'_>, Busy> {
        self.0.try_lock().ok_or(Busy)
    }
}
