//! Waiting for room on a full shared-memory link inside the sender's own
//! future ([`PeerLink::poll_writable`](crate::transport::PeerLink::poll_writable)):
//! no boxed future, no allocation per wait.
//!
//! The sender registers its waker in the link's [`Waiters`](super::waiters)
//! first, then looks at what it waits for:
//! - the producer ring, if another writer holds it (woken on release);
//! - ring room for the frame (or, for a frame that goes through the pooled
//!   area, for its reference records): the ring raises its waiter flag and
//!   registers the link's room waker with its space doorbell (see
//!   `shm_ring::Producer::poll_room`), so the reader's next release rings it;
//! - for a pooled frame, a free segment: the receiver is asked to ring when
//!   it returns one (`TxPool::arm_wake`), which the socket watcher turns into
//!   a wake of the set.
//!
//! The link going down wakes the set too (`ShmLink::shut`). Every look comes
//! after the registration, so a change between the sender's failed write and
//! its wait is never missed; a wake may be spurious (the sender tries again
//! and, still full, waits again). Loans and frames too big for the pooled
//! area keep the boxed `send` (`Full` from here says so).

use std::task::{Context, Poll};

use super::link::ShmLink;
use super::pooled::RECORD_LEN;
use super::write::room_to_wait_for;
use crate::error::{Error, Result};
use crate::transport::OutFrame;

/// Ring room a pooled frame's reference needs: a retired segment, a new
/// one and the reference itself, as records of their own.
const POOLED_RECORDS: usize = 3 * RECORD_LEN;

impl ShmLink {
    /// See [`PeerLink::poll_writable`](crate::transport::PeerLink::poll_writable).
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>, frame: &OutFrame<'_>) -> Poll<Result<()>> {
        if self.lent_here(frame).is_some() {
            // A loan waits for its reference's turn in `send`.
            return Poll::Ready(Err(Error::Full));
        }
        let exact = frame.exact_len();
        if let Some(len) = exact
            && let Err(e) = self.check_size(len)
        {
            return Poll::Ready(Err(e));
        }
        self.tx.waiters().register(cx.waker());
        if let Err(e) = self.check_open() {
            return Poll::Ready(Err(e));
        }
        let Poll::Ready(mut tx) = self.tx.poll_lock(cx) else {
            return Poll::Pending;
        };
        let len = exact.unwrap_or(tx.want);
        let pooled = len > self.max_record;
        if pooled && !self.pool.fits_cap(len) {
            // A memfd of its own: its window waits in `send`.
            return Poll::Ready(Err(Error::Full));
        }
        let need = if pooled {
            POOLED_RECORDS
        } else {
            room_to_wait_for(len, &tx.producer)
        };
        let mut room = Context::from_waker(self.tx.room_waker());
        match tx.producer.poll_room(&mut room, need) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(self.ring_error(e))),
            Poll::Pending => return Poll::Pending,
        }
        drop(tx);
        if pooled {
            return self.poll_segment(exact);
        }
        Poll::Ready(Ok(()))
    }

    /// Whether a pooled segment for the frame is free (the sender is
    /// registered already); if not, the receiver rings when one comes back.
    fn poll_segment(&self, exact: Option<usize>) -> Poll<Result<()>> {
        let want = exact.unwrap_or_else(|| self.pool.guess(self.max_record));
        self.pool.arm_wake();
        // Looked for after arming: a return that raced with it may not ring.
        match self.pool.try_lease(want) {
            // Free again when dropped: the sender's `try_send` takes it.
            Ok(Some(_lease)) => Poll::Ready(Ok(())),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Wakes every sender waiting for room (something changed for them).
    pub(crate) fn wake_senders(&self) {
        self.tx.waiters().wake_all();
    }
}
