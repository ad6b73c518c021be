//! `MessageBuilder`: one builder, typestates for the delivery mode.
//!
//! ```text
//! active_message(name)? .payload(&x or x)? .timeout(d) .target_instance(id)
//!   .execute()                      fire-and-forget: Ok once the link took it
//!   .send(peer)                     confirmed: Ok once the handler succeeded
//!   .expect_response::<R>()
//!       .execute() / .send(peer)    -> MessageStatus<WithResponse<R>> -> .await_response()
//!       .detach_receipt()
//!           .execute() / .send(peer) -> ReceiptHandle<R> -> .await_receipt() -> .await_response()
//!   .detach_receipt()               as above, for a confirmed send (R = ())
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::client::name::HandlerName;
use crate::client::{Call, NetworkClient, OutPayload};
use crate::codec::IntoPayload;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::status::{MessageStatus, ReceiptHandle, SendAndConfirm, WithResponse};
use crate::wire::{Kind, flags};

mod stream;
pub use stream::StreamExpected;

/// No delivery mode chosen yet.
#[derive(Debug)]
pub struct NeedsDeliveryMode;

/// A response of type `R` is expected.
#[derive(Debug)]
pub struct WithResponseExpected<R>(PhantomData<fn() -> R>);

/// A receipt, then a response of type `R` (`()` for a confirmed send).
#[derive(Debug)]
pub struct DetachedReceipt<R>(PhantomData<fn() -> R>);

/// Builds and sends one active message. The payload is archived on the
/// caller's side, when the frame is written, straight into the transport's
/// buffer (a shared-memory ring slot): `'a` is the borrow of the payload.
#[derive(Debug)]
pub struct MessageBuilder<'a, M = NeedsDeliveryMode> {
    client: Arc<NetworkClient>,
    name: HandlerName,
    system: bool,
    body: OutPayload<'a>,
    timeout: Duration,
    target: Option<InstanceId>,
    kind: Kind,
    /// Items a streamed response may run ahead of its reader.
    stream_window: u32,
    _mode: PhantomData<M>,
}

impl MessageBuilder<'static, NeedsDeliveryMode> {
    pub(crate) fn new(client: Arc<NetworkClient>, name: HandlerName, system: bool) -> Self {
        let timeout = client.default_timeout();
        Self {
            client,
            name,
            system,
            body: OutPayload::Empty,
            timeout,
            target: None,
            kind: Kind::OneWay,
            stream_window: crate::stream::DEFAULT_WINDOW,
            _mode: PhantomData,
        }
    }
}

impl<'a, M> MessageBuilder<'a, M> {
    /// Sets the payload, by reference (`&x`, `"text"`: zero-copy, archived
    /// with rkyv straight into the transport's buffer when the frame is
    /// written) or by value (`x`, `String`, `Vec<u8>`: moved into one
    /// allocation, then archived the same way, never encoded twice). Types
    /// made payloads with [`crate::json_payload!`] or wrapped in
    /// [`crate::json::Json`] travel as JSON. Kept fallible, as in the seed.
    pub fn payload<'b, P, K>(self, value: P) -> Result<MessageBuilder<'b, M>>
    where
        'a: 'b,
        P: IntoPayload<'b, K>,
    {
        let mut next: MessageBuilder<'b, M> = self.into_mode();
        next.body = OutPayload::Archive(value.into_payload_value());
        Ok(next)
    }

    /// Sets a raw byte payload (no archive).
    pub fn raw_payload(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body = OutPayload::Bytes(bytes.into());
        self
    }

    /// Sets a loaned payload ([`NetworkClient::loan`]): raw bytes, sent in
    /// place (no copy) over the shared-memory link that lent them, copied
    /// once everywhere else. The receiving handler sees them as a raw payload.
    pub fn loaned(mut self, loan: crate::Loan) -> Self {
        self.body = OutPayload::Loan(loan);
        self
    }

    /// Sets the budget for the whole call (default from the manager, 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the peer to send to.
    pub fn target_instance(mut self, target: InstanceId) -> Self {
        self.target = Some(target);
        self
    }

    /// A copy of this message aimed at `target` (the payload is shared, not
    /// copied), to send one message to several peers.
    pub fn clone_with_target(&self, target: InstanceId) -> Self {
        Self {
            client: Arc::clone(&self.client),
            name: self.name.clone(),
            system: self.system,
            body: self.body.clone(),
            timeout: self.timeout,
            target: Some(target),
            kind: self.kind,
            stream_window: self.stream_window,
            _mode: PhantomData,
        }
    }

    fn into_mode<'b, N>(self) -> MessageBuilder<'b, N>
    where
        'a: 'b,
    {
        MessageBuilder {
            client: self.client,
            name: self.name,
            system: self.system,
            body: self.body,
            timeout: self.timeout,
            target: self.target,
            kind: self.kind,
            stream_window: self.stream_window,
            _mode: PhantomData,
        }
    }

    fn call(&self, kind: Kind, extra_flags: u16) -> Result<Call<'_>> {
        // Not `ok_or(Error::NoTarget)`: that builds and drops an error on
        // every call, even with a target.
        let Some(target) = self.target else {
            return Err(Error::NoTarget);
        };
        Ok(Call {
            target,
            kind,
            flags: extra_flags | if self.system { flags::SYSTEM } else { 0 },
            name: self.name.as_str(),
            body: &self.body,
            timeout: self.timeout,
        })
    }
}

impl<'a> MessageBuilder<'a, NeedsDeliveryMode> {
    /// Fire-and-forget: returns once the link accepted the frame (waiting
    /// while it is full). Nothing comes back from the handler.
    pub async fn execute(self) -> Result<()> {
        let call = self.call(Kind::OneWay, 0)?;
        // At once when the link has room (the usual case); else the regular
        // way, which waits for room within the budget, allocating nothing
        // (`client::wait`).
        match self.client.try_send_one_way(&call) {
            Err(Error::Full) => self.client.send_one_way(call).await,
            done => done,
        }
    }

    /// Confirmed delivery: returns once the handler on `target` ran and
    /// accepted the message; its error comes back as [`Error::Handler`].
    pub async fn send(self, target: InstanceId) -> Result<MessageStatus<SendAndConfirm>> {
        let this = self.target_instance(target);
        let call = this.client.start_call(this.call(Kind::Confirm, 0)?).await?;
        let id = call.id;
        call.finish(|_| Ok(())).await?;
        Ok(MessageStatus::confirmed(id, target))
    }

    /// Expects a typed response `R`. The seed's `.await_response::<R>()`
    /// must name the same type:
    ///
    /// ```no_run
    /// # async fn f(client: std::sync::Arc<active_message::NetworkClient>,
    /// #            peer: active_message::InstanceId) -> active_message::Result<()> {
    /// let status = client.active_message("echo")?.payload("hi")?
    ///     .target_instance(peer).expect_response::<String>().execute().await?;
    /// let echoed = status.await_response::<String>().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Another type is a compile error, not a wrong decode at run time:
    ///
    /// ```compile_fail
    /// # async fn f(client: std::sync::Arc<active_message::NetworkClient>,
    /// #            peer: active_message::InstanceId) -> active_message::Result<()> {
    /// let status = client.active_message("echo")?.payload("hi")?
    ///     .target_instance(peer).expect_response::<String>().execute().await?;
    /// let echoed = status.await_response::<u64>().await?;
    /// # Ok(()) }
    /// ```
    pub fn expect_response<R>(self) -> MessageBuilder<'a, WithResponseExpected<R>> {
        let mut next = self.into_mode();
        next.kind = Kind::Request;
        next
    }

    /// Confirmed delivery in two phases: receipt, then acceptance.
    pub fn detach_receipt(self) -> MessageBuilder<'a, DetachedReceipt<()>> {
        let mut next = self.into_mode();
        next.kind = Kind::Confirm;
        next
    }
}

impl<'a, R> MessageBuilder<'a, WithResponseExpected<R>> {
    /// Sends the request; await the response on the returned status.
    pub async fn execute(self) -> Result<MessageStatus<WithResponse<R>>> {
        let call = self.client.start_call(self.call(Kind::Request, 0)?).await?;
        Ok(MessageStatus::pending(
            self.target.ok_or(Error::NoTarget)?,
            call,
        ))
    }

    /// Sends the request to `target`.
    pub async fn send(self, target: InstanceId) -> Result<MessageStatus<WithResponse<R>>> {
        self.target_instance(target).execute().await
    }

    /// Two phases: a receipt when the handler is found and admitted, then the response.
    pub fn detach_receipt(self) -> MessageBuilder<'a, DetachedReceipt<R>> {
        self.into_mode()
    }
}

impl<R> MessageBuilder<'_, DetachedReceipt<R>> {
    /// Sends the message; await the receipt on the returned handle.
    pub async fn execute(self) -> Result<ReceiptHandle<R>> {
        let target = self.target.ok_or(Error::NoTarget)?;
        let call = self
            .client
            .start_call(self.call(self.kind, flags::RECEIPT)?)
            .await?;
        Ok(ReceiptHandle::new(target, call))
    }

    /// Sends the message to `target`.
    pub async fn send(self, target: InstanceId) -> Result<ReceiptHandle<R>> {
        self.target_instance(target).execute().await
    }
}
