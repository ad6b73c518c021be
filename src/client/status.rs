//! What a sent message gives back: typestates for confirmed sends, pending
//! responses, and two-phase receipts.

use std::marker::PhantomData;

use bytes::Bytes;

use crate::codec::{Decode, SameType};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::handler::PayloadBuf;
use crate::ids::{InstanceId, MessageId};
use crate::runtime::call::PendingCall;

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
    call: PendingCall,
    _response: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for WithResponse<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithResponse").finish_non_exhaustive()
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
    pub(crate) fn pending(target: InstanceId, call: PendingCall) -> Self {
        Self {
            id: call.id,
            target,
            state: WithResponse {
                call,
                _response: PhantomData,
            },
        }
    }

    /// Waits for the raw response bytes.
    pub async fn await_response_raw(self) -> Result<Bytes> {
        self.state.call.response_bytes().await
    }

    /// Waits for the raw response as a [`PayloadBuf`]: a large response
    /// stays where it arrived (the sender's pooled buffer, returned when the
    /// last clone drops) with no copy and no allocation, where
    /// [`await_response_raw`](Self::await_response_raw) allocates the
    /// `Bytes` owner of such a buffer. A small response is one copy either way.
    pub async fn await_response_payload(self) -> Result<PayloadBuf> {
        self.state.call.response_payload().await
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
        // Decoded where the reply lies: no copy into `Bytes`.
        self.state.call.response::<T>().await
    }
}

/// First phase of a two-phase call: the receipt (handler found and admitted)
/// comes first, then the response.
pub struct ReceiptHandle<R> {
    target: InstanceId,
    call: PendingCall,
    _response: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for ReceiptHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptHandle")
            .field("id", &self.call.id)
            .finish_non_exhaustive()
    }
}

impl<R> ReceiptHandle<R> {
    pub(crate) fn new(target: InstanceId, call: PendingCall) -> Self {
        Self {
            target,
            call,
            _response: PhantomData,
        }
    }

    /// The message's id.
    pub fn message_id(&self) -> MessageId {
        self.call.id
    }

    /// Waits for the receipt; then the response can be awaited.
    pub async fn await_receipt(mut self) -> Result<MessageStatus<WithResponse<R>>> {
        self.call.receipt().await?;
        Ok(MessageStatus::pending(self.target, self.call))
    }
}
