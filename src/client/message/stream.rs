//! `.expect_stream::<T>()`: a request answered by many items.

use std::marker::PhantomData;
use std::sync::Arc;

use tokio::time::Instant;

use super::{MessageBuilder, NeedsDeliveryMode};
use crate::client::{Call, NetworkClient};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::stats::Counters;
use crate::stream::handle::StreamCore;
use crate::stream::preamble::Preambled;
use crate::stream::{MAX_WINDOW, ResponseStream};
use crate::transport::{OutFrame, PayloadRef};
use crate::wire::{Kind, flags};

/// A stream of items of type `T` is expected.
#[derive(Debug)]
pub struct StreamExpected<T>(PhantomData<fn() -> T>);

impl<'a> MessageBuilder<'a, NeedsDeliveryMode> {
    /// Expects a stream of items of type `T` (see [`ResponseStream`]). The
    /// call's timeout bounds the wait for each item (and for the first).
    ///
    /// ```no_run
    /// # async fn f(client: std::sync::Arc<active_message::NetworkClient>,
    /// #            peer: active_message::InstanceId) -> active_message::Result<()> {
    /// use futures::StreamExt;
    /// let mut tokens = client.active_message("generate")?.payload("prompt")?
    ///     .expect_stream::<String>().window(32).send(peer).await?;
    /// while let Some(token) = tokens.next().await {
    ///     println!("{}", token?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn expect_stream<T>(self) -> MessageBuilder<'a, StreamExpected<T>> {
        let mut next = self.into_mode();
        next.kind = Kind::Request;
        next
    }
}

impl<'a, T> MessageBuilder<'a, StreamExpected<T>> {
    /// How many items the producer may run ahead of the reader (default
    /// [`crate::DEFAULT_WINDOW`]; clamped to `1..=`[`MAX_WINDOW`]). The
    /// reader's memory holds at most this many items.
    pub fn window(mut self, items: u32) -> Self {
        self.stream_window = items.clamp(1, MAX_WINDOW);
        self
    }

    /// Sends the request; read the items from the returned stream.
    pub async fn execute(self) -> Result<ResponseStream<T>> {
        let call = self.call(Kind::Request, flags::STREAM)?;
        let core = self.client.start_stream(call, self.stream_window).await?;
        Ok(ResponseStream::new(core))
    }

    /// Sends the request to `target`.
    pub async fn send(self, target: InstanceId) -> Result<ResponseStream<T>> {
        self.target_instance(target).execute().await
    }
}

impl NetworkClient {
    /// Registers a stream, then writes its request (with the window in the
    /// payload's preamble), waiting for room at most the call's budget.
    pub(crate) async fn start_stream(
        self: &Arc<Self>,
        call: Call<'_>,
        window: u32,
    ) -> Result<StreamCore> {
        let link = self.admit(&call)?;
        let id = self.next_id();
        let deadline = Instant::now() + call.timeout;
        let slot = self.streams.calls.open(id, call.target, window);
        let payload = Preambled {
            window,
            inner: call.body.as_ref(),
        };
        let frame = OutFrame {
            header: self.header(&call, id),
            name: call.name,
            payload: PayloadRef::Archive(&payload),
        };
        let sent = tokio::time::timeout_at(deadline, link.send(frame)).await;
        let failure = match sent {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err),
            Err(_) => {
                Counters::bump(&self.counters.timeouts);
                Some(Error::Timeout(call.timeout))
            }
        };
        if let Some(err) = failure {
            // Never written whole: there is nothing to cancel.
            self.streams.calls.remove(id);
            return Err(err);
        }
        self.count_sent(call.body.raw_len().unwrap_or(0));
        Ok(StreamCore::new(
            id,
            slot,
            Arc::clone(self),
            link,
            window,
            call.timeout,
        ))
    }
}
