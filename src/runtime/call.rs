//! The caller's handle on one call in flight: waits for its receipt and its
//! outcome until the call's deadline, and when the caller stops waiting
//! (dropped, timed out) removes the call and tells the peer to cancel it.
//!
//! A waiting caller first drives its link (reads the link's ring itself
//! where the transport allows it, see `PeerLink::drive`) and so usually
//! completes its own call on its own thread; otherwise it is woken straight
//! by whoever completes the entry (the link's reader, or a peer-loss
//! notice): no channel, no task in between. The deadline's timer is only
//! armed when the caller waits to be woken.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::codec::Decode;
use crate::error::{Error, Result};
use crate::handler::PayloadBuf;
use crate::ids::{InstanceId, MessageId};
use crate::runtime::pending::{Forgot, PendingTable, Reply};
use crate::stats::Counters;
use crate::transport::{BoxedLink, Driven, OutFrame};
use crate::wire::{Header, Kind};

/// One registered call, owned by the caller until its outcome is taken.
pub(crate) struct PendingCall {
    pub(crate) table: Arc<PendingTable>,
    pub(crate) id: MessageId,
    pub(crate) link: BoxedLink,
    pub(crate) local: InstanceId,
    pub(crate) cancel_id: MessageId,
    pub(crate) counters: Arc<Counters>,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    /// Whether the entry is still in the table (dropping then cancels).
    pub(crate) armed: bool,
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PendingCall {
    /// Forgets the entry without telling the peer (never sent, or failed).
    pub(crate) fn disarm(mut self) {
        self.table.forget(self.id);
        self.armed = false;
    }

    /// Waits for the receipt (handler found and admitted).
    pub(crate) async fn receipt(&mut self) -> Result<()> {
        let (table, id) = (&self.table, self.id);
        match self.until_deadline(|cx| table.poll_receipt(id, cx)).await {
            Some(Ok(())) => Ok(()),
            Some(Err(err)) => {
                // The entry is gone with the error.
                self.armed = false;
                Err(err)
            }
            None => Err(self.timed_out()),
        }
    }

    /// Waits for the final reply (the entry leaves the table with it).
    async fn outcome(&mut self) -> Result<Reply> {
        let (table, id) = (&self.table, self.id);
        let Some(outcome) = self.until_deadline(|cx| table.poll_outcome(id, cx)).await else {
            return Err(self.timed_out());
        };
        self.armed = false;
        outcome
    }

    /// Waits for the final reply and hands its payload to `read`, then
    /// recycles the payload's buffer.
    pub(crate) async fn finish<T>(mut self, read: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
        let reply = self.outcome().await?;
        let out = read(reply.as_slice());
        self.table.recycle(reply);
        out
    }

    /// The response as a payload: a slice of a shared frame, else one copy.
    pub(crate) async fn response_payload(mut self) -> Result<PayloadBuf> {
        Ok(match self.outcome().await? {
            Reply::Shared(payload) => payload,
            Reply::Empty => PayloadBuf::default(),
            pooled => {
                let bytes = Bytes::copy_from_slice(pooled.as_slice());
                self.table.recycle(pooled);
                bytes.into()
            }
        })
    }

    /// The response's bytes: a slice of a shared frame (whose `Bytes`
    /// owner is the one allocation of a large raw response), else one copy.
    pub(crate) async fn response_bytes(mut self) -> Result<Bytes> {
        Ok(match self.outcome().await? {
            Reply::Shared(payload) => payload.to_bytes(),
            Reply::Empty => Bytes::new(),
            pooled => {
                let bytes = Bytes::copy_from_slice(pooled.as_slice());
                self.table.recycle(pooled);
                bytes
            }
        })
    }

    /// The response decoded (validated) as `T`, read where it lies.
    pub(crate) async fn response<T: Decode>(self) -> Result<T> {
        self.finish(T::decode).await
    }

    /// Polls `poll` until it is ready or the deadline passes (`None`).
    ///
    /// Before it waits to be woken, the caller drives its link
    /// ([`PeerLink::drive`](crate::transport::PeerLink::drive)): on a link
    /// whose ring it may read, it finds and routes its reply itself, on its
    /// own thread. Those looks use a no-op waker, so completing its own call
    /// wakes nobody. The deadline's timer is armed only when the caller
    /// really waits to be woken; while it drives, the clock is read at each
    /// of the link's yields instead.
    async fn until_deadline<T>(
        &self,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Option<T> {
        let deadline = self.deadline;
        let link = &self.link;
        let mut sleep = pin!(None::<Sleep>);
        poll_fn(|cx| {
            let mut quiet = Context::from_waker(Waker::noop());
            if let Poll::Ready(out) = poll(&mut quiet) {
                return Poll::Ready(Some(out));
            }
            let mut got = None;
            let driven = link.drive(&mut || match poll(&mut quiet) {
                Poll::Ready(out) => {
                    got = Some(out);
                    true
                }
                Poll::Pending => false,
            });
            if let Some(out) = got {
                return Poll::Ready(Some(out));
            }
            if driven == Driven::Again {
                if sleep.is_none() && Instant::now() >= deadline {
                    return Poll::Ready(None);
                }
                // Gives the thread to the tasks sharing it, then drives again.
                cx.waker().wake_by_ref();
            } else if let Poll::Ready(out) = poll(cx) {
                return Poll::Ready(Some(out));
            } else if sleep.is_none() {
                sleep.set(Some(tokio::time::sleep_until(deadline)));
            }
            match sleep.as_mut().as_pin_mut().map(|s| s.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// The caller's budget ran out: counts it; dropping the call then
    /// cancels it on the peer.
    fn timed_out(&self) -> Error {
        Counters::bump(&self.counters.timeouts);
        Error::Timeout(self.timeout)
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if !self.armed || self.table.forget(self.id) == Forgot::Finished {
            return;
        }
        let mut header = Header::new(Kind::Cancel, self.cancel_id, self.local);
        header.correlation_id = self.id;
        match self.link.try_send(OutFrame::bytes(header, "", &[])) {
            Ok(()) => {}
            // A full link (a slow or stopped peer) still gets its Cancel,
            // once there is room.
            Err(Error::Full) => self.table.cancel_later(Arc::clone(&self.link), header),
            // A broken link runs nothing any more.
            Err(_) => {}
        }
    }
}
