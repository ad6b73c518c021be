//! What a sent message gives back: typestates for confirmed sends, pending
//! responses, and two-phase receipts.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::codec::{Decode, SameType};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::runtime::pending::{DoneRx, PendingGuard, ReceiptRx};

/// Status of a sent message; `M` says what is left to await.
#[derive(Debug)]
pub struct MessageStatus<M> {
    id: MessageId,
    target: InstanceId,
    state: M,
}

impl<M> MessageStatus<M> {
    /// The message's id.
    pub fn message_id(&self) -> MessageId {
        self.id
    }

    /// The peer it was sent to.
    pub fn target(&self) -> InstanceId {
        self.target
    }
}

/// Confirmed delivery: the handler accepted the message. Nothing left to await.
#[derive(Debug)]
pub struct SendAndConfirm;

/// A response of type `R` is on its way.
pub struct WithResponse<R> {
    waiter: Waiter,
    _response: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for WithResponse<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithResponse").finish_non_exhaustive()
    }
}

/// Waits on one table entry until a deadline.
pub(crate) struct Waiter {
    pub(crate) done: DoneRx,
    pub(crate) guard: PendingGuard,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
}

impl Waiter {
    async fn outcome(self) -> Result<Bytes> {
        let Waiter {
            done,
            guard,
            deadline,
            timeout,
        } = self;
        match tokio::time::timeout_at(deadline, done).await {
            Ok(Ok(outcome)) => {
                guard.disarm();
                outcome
            }
            // The entry was dropped without an outcome: only on manager teardown.
            Ok(Err(_)) => Err(Error::ShuttingDown),
            // Dropping the guard removes the entry and cancels on the peer.
            Err(_) => {
                guard.timed_out();
                Err(Error::Timeout(timeout))
            }
        }
    }
}

impl MessageStatus<SendAndConfirm> {
    pub(crate) fn confirmed(id: MessageId, target: InstanceId) -> Self {
        Self {
            id,
            target,
            state: SendAndConfirm,
        }
    }
}

impl<R> MessageStatus<WithResponse<R>> {
    pub(crate) fn pending(id: MessageId, target: InstanceId, waiter: Waiter) -> Self {
        Self {
            id,
            target,
            state: WithResponse {
                waiter,
                _response: PhantomData,
            },
        }
    }

    /// Waits for the raw response bytes.
    pub async fn await_response_raw(self) -> Result<Bytes> {
        self.state.waiter.outcome().await
    }
}

impl<R> MessageStatus<WithResponse<R>> {
    /// Waits for the response and decodes it (validated) as `R`; the seed's
    /// `.await_response::<R>()` names the type again (it must be `R`: another
    /// type does not compile), `.await_response()` infers it.
    ///
    /// Fails with the handler's error as [`Error::Handler`], a missing handler
    /// as [`Error::NoSuchHandler`], a dead peer as [`Error::PeerLost`], each as
    /// soon as it is known; [`Error::Timeout`] only if the peer stayed silent.
    pub async fn await_response<T>(self) -> Result<T>
    where
        T: Decode,
        // Both ways, so that whichever side is known infers the other.
        R: SameType<T>,
        T: SameType<R>,
    {
        let bytes = self.await_response_raw().await?;
        T::decode(&bytes)
    }
}

/// First phase of a two-phase call: the receipt (handler found and admitted)
/// comes first, then the response.
pub struct ReceiptHandle<R> {
    id: MessageId,
    target: InstanceId,
    receipt: ReceiptRx,
    waiter: Waiter,
    _response: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for ReceiptHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<R> ReceiptHandle<R> {
    pub(crate) fn new(
        id: MessageId,
        target: InstanceId,
        receipt: ReceiptRx,
        waiter: Waiter,
    ) -> Self {
        Self {
            id,
            target,
            receipt,
            waiter,
            _response: PhantomData,
        }
    }

    /// The message's id.
    pub fn message_id(&self) -> MessageId {
        self.id
    }

    /// Waits for the receipt; then the response can be awaited.
    pub async fn await_receipt(self) -> Result<MessageStatus<WithResponse<R>>> {
        let Self {
            id,
            target,
            receipt,
            waiter,
            ..
        } = self;
        match tokio::time::timeout_at(waiter.deadline, receipt).await {
            Ok(Ok(Ok(()))) => Ok(MessageStatus::pending(id, target, waiter)),
            Ok(Ok(Err(err))) => {
                waiter.guard.disarm();
                Err(err)
            }
            Ok(Err(_)) => Err(Error::ShuttingDown),
            Err(_) => {
                waiter.guard.timed_out();
                Err(Error::Timeout(waiter.timeout))
            }
        }
    }
}
