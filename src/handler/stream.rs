//! Streaming handler kinds: one request, many items back.
//!
//! | constructor | closure | caller reads |
//! |---|---|---|
//! | [`typed_stream_handler`] | `async Fn(TypedContext<I>, StreamSender<O>) -> Result<(), String>` | `ResponseStream<O>` |
//! | [`typed_stream_handler_from_stream`] | `Fn(TypedContext<I>) -> impl Stream<Item = Result<O, String>>` | `ResponseStream<O>` |
//! | [`raw_stream_handler`] | `async Fn(UnaryContext, ItemSink) -> Result<(), String>` | byte items |
//!
//! An `Err(text)` ends the stream with [`crate::Error::Handler`] after the
//! items already sent. A sender's `send` waits for the reader's credit and
//! fails with [`crate::Error::Cancelled`] once the caller went away.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::{Stream, StreamExt};

use crate::codec::{Decode, Payload};
use crate::error::Error;
use crate::handler::impls::{TypedContext, UnaryContext};
use crate::handler::{
    Handler, HandlerCall, HandlerContext, HandlerError, HandlerKind, HandlerRef, PayloadBuf,
};
use crate::stream::{ItemSink, StreamSender};
use crate::transport::BoxFuture;
use crate::wire::ErrorCode;

/// What a streaming handler's future resolves to.
type StreamOutcome = BoxFuture<'static, Result<(), HandlerError>>;

struct StreamFn<F, M> {
    name: String,
    f: F,
    _marker: PhantomData<fn() -> M>,
}

fn boxed<F, M>(name: impl Into<String>, f: F) -> HandlerRef
where
    StreamFn<F, M>: Handler,
{
    Arc::new(StreamFn {
        name: name.into(),
        f,
        _marker: PhantomData,
    })
}

/// The answer to a plain request sent to a streaming handler.
fn not_a_stream_call(name: &str) -> HandlerCall {
    HandlerCall::Ready(Err(HandlerError {
        code: ErrorCode::Refused,
        message: format!("handler {name:?} streams: call it with expect_stream"),
    }))
}

/// How one closure kind starts its stream; one [`Handler`] impl serves all.
trait StartStream<F> {
    fn start(f: &F, ctx: HandlerContext, payload: PayloadBuf, sink: ItemSink) -> StreamOutcome;
}

impl<F, M> Handler for StreamFn<F, M>
where
    F: Send + Sync + 'static,
    M: StartStream<F> + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        HandlerKind::Streaming
    }
    fn call(&self, _ctx: HandlerContext, _payload: PayloadBuf) -> HandlerCall {
        not_a_stream_call(&self.name)
    }
    fn call_stream(
        &self,
        ctx: HandlerContext,
        payload: PayloadBuf,
        sink: ItemSink,
    ) -> Option<StreamOutcome> {
        Some(M::start(&self.f, ctx, payload, sink))
    }
}

fn typed_context<I: Decode>(
    ctx: HandlerContext,
    payload: &[u8],
) -> Result<TypedContext<I>, HandlerError> {
    Ok(TypedContext {
        input: I::decode(payload).map_err(HandlerError::codec)?,
        sender_id: ctx.sender_id,
        message_id: ctx.message_id,
        client: ctx.client,
        cancel: ctx.cancel,
    })
}

/// A typed streaming handler: gets its decoded input and a sender for
/// items of type `O`.
pub fn typed_stream_handler<I, O, F, Fut>(name: impl Into<String>, f: F) -> HandlerRef
where
    I: Decode + Send + 'static,
    O: Payload + 'static,
    F: Fn(TypedContext<I>, StreamSender<O>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    boxed::<F, SenderMarker<I, O>>(name, f)
}

struct SenderMarker<I, O>(PhantomData<(I, O)>);

impl<I, O, F, Fut> StartStream<F> for SenderMarker<I, O>
where
    I: Decode + Send + 'static,
    O: Payload + 'static,
    F: Fn(TypedContext<I>, StreamSender<O>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn start(f: &F, ctx: HandlerContext, payload: PayloadBuf, sink: ItemSink) -> StreamOutcome {
        let fut = typed_context::<I>(ctx, &payload).map(|typed| f(typed, StreamSender::new(sink)));
        Box::pin(async move { fut?.await.map_err(HandlerError::handler) })
    }
}

/// A typed streaming handler that returns a [`Stream`] of items; the
/// runtime drains it at the reader's pace and stops it when the caller
/// goes away.
pub fn typed_stream_handler_from_stream<I, O, F, S>(name: impl Into<String>, f: F) -> HandlerRef
where
    I: Decode + Send + 'static,
    O: Payload + 'static,
    F: Fn(TypedContext<I>) -> S + Send + Sync + 'static,
    S: Stream<Item = Result<O, String>> + Send + 'static,
{
    boxed::<F, StreamMarker<I, O>>(name, f)
}

struct StreamMarker<I, O>(PhantomData<(I, O)>);

impl<I, O, F, S> StartStream<F> for StreamMarker<I, O>
where
    I: Decode + Send + 'static,
    O: Payload + 'static,
    F: Fn(TypedContext<I>) -> S + Send + Sync + 'static,
    S: Stream<Item = Result<O, String>> + Send + 'static,
{
    fn start(f: &F, ctx: HandlerContext, payload: PayloadBuf, sink: ItemSink) -> StreamOutcome {
        let items = typed_context::<I>(ctx, &payload).map(f);
        Box::pin(async move { drain(items?, sink).await })
    }
}

async fn drain<O: Payload, S>(items: S, sink: ItemSink) -> Result<(), HandlerError>
where
    S: Stream<Item = Result<O, String>>,
{
    let mut items = std::pin::pin!(items);
    loop {
        let next = tokio::select! {
            biased;
            () = sink.cancelled() => return Ok(()),
            next = items.next() => next,
        };
        match next {
            None => return Ok(()),
            Some(Err(message)) => return Err(HandlerError::handler(message)),
            Some(Ok(item)) => match sink.send_value(&item).await {
                Ok(()) => {}
                // The caller went away: nobody reads the end.
                Err(Error::Cancelled) => return Ok(()),
                Err(err) => return Err(HandlerError::handler(err.to_string())),
            },
        }
    }
}

/// A raw streaming handler: gets the payload bytes and an [`ItemSink`] for
/// byte items.
pub fn raw_stream_handler<F, Fut>(name: impl Into<String>, f: F) -> HandlerRef
where
    F: Fn(UnaryContext, ItemSink) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    boxed::<F, RawMarker>(name, f)
}

struct RawMarker;

impl<F, Fut> StartStream<F> for RawMarker
where
    F: Fn(UnaryContext, ItemSink) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn start(f: &F, ctx: HandlerContext, payload: PayloadBuf, sink: ItemSink) -> StreamOutcome {
        let unary = UnaryContext {
            payload,
            sender_id: ctx.sender_id,
            message_id: ctx.message_id,
            client: ctx.client,
        };
        let fut = f(unary, sink);
        Box::pin(async move { fut.await.map_err(HandlerError::handler) })
    }
}
