//! Bytes handlers: [`unary_handler`], synchronous (run in place on the
//! transport's task where it allows, over the payload as it lies), and
//! [`unary_handler_async`], for handlers that must not run on the
//! transport's task (a handler in another language that waits for its
//! interpreter, a long computation handed to a worker thread).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;

use crate::codec::Body;
use crate::handler::impls::UnaryContext;
use crate::handler::in_place::{Ran, Spare};
use crate::handler::{
    Handler, HandlerCall, HandlerContext, HandlerError, HandlerKind, HandlerOutcome, HandlerRef,
    InlineOutcome, PayloadBuf,
};
use crate::transport::PayloadRef;

/// The closure of a [`unary_handler`].
struct BytesHandler<F> {
    name: String,
    f: F,
}

/// A synchronous bytes-in, bytes-out handler. `Ok(None)` answers with an
/// empty body.
pub fn unary_handler<F>(name: impl Into<String>, f: F) -> HandlerRef
where
    F: Fn(UnaryContext) -> Result<Option<Bytes>, String> + Send + Sync + 'static,
{
    Arc::new(BytesHandler {
        name: name.into(),
        f,
    })
}

impl<F> BytesHandler<F>
where
    F: Fn(UnaryContext) -> Result<Option<Bytes>, String> + Send + Sync + 'static,
{
    fn run(
        &self,
        ctx: &HandlerContext,
        payload: PayloadBuf,
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) {
        let result = (self.f)(UnaryContext {
            payload,
            sender_id: ctx.sender_id,
            message_id: ctx.message_id,
            client: Arc::clone(&ctx.client),
        });
        match &result {
            Ok(Some(bytes)) => out(Ok(PayloadRef::Bytes(bytes))),
            Ok(None) => out(Ok(PayloadRef::Bytes(&[]))),
            Err(message) => out(Err(HandlerError::handler(message.clone()))),
        }
    }
}

impl<F> Handler for BytesHandler<F>
where
    F: Fn(UnaryContext) -> Result<Option<Bytes>, String> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        HandlerKind::UnaryBytes
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        HandlerCall::Ready(
            match (self.f)(UnaryContext {
                payload,
                sender_id: ctx.sender_id,
                message_id: ctx.message_id,
                client: ctx.client,
            }) {
                Ok(Some(bytes)) => Ok(Body::Bytes(bytes)),
                Ok(None) => Ok(Body::Empty),
                Err(message) => Err(HandlerError::handler(message)),
            },
        )
    }
    /// Without a shared payload the closure gets a copy (it takes its
    /// payload by value).
    fn call_inline(
        &self,
        ctx: &HandlerContext,
        payload: &[u8],
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) -> bool {
        self.run(ctx, PayloadBuf::copy_from_slice(payload), out);
        true
    }
    /// The payload shared as it lies: no copy, no allocation.
    fn call_inline_shared(
        &self,
        ctx: &HandlerContext,
        _payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) -> bool {
        self.run(ctx, owned(), out);
        true
    }
}

/// The closure of a [`unary_handler_async`], with the reused slot of its
/// futures (polled once there: one that finishes without waiting costs no
/// allocation and no task).
struct AsyncBytesHandler<F, Fut> {
    name: String,
    f: F,
    spare: Spare<AsyncFuture<Fut>>,
}

/// An async bytes handler's future with its outcome mapped for the dispatcher.
type AsyncFuture<Fut> =
    futures::future::Map<Fut, fn(Result<Option<Bytes>, String>) -> HandlerOutcome>;

fn bytes_outcome(out: Result<Option<Bytes>, String>) -> HandlerOutcome {
    match out {
        Ok(Some(bytes)) => Ok(Body::Bytes(bytes)),
        Ok(None) => Ok(Body::Empty),
        Err(message) => Err(HandlerError::handler(message)),
    }
}

/// An async bytes-in, bytes-out handler: `Ok(None)` answers with an empty
/// body, `Err(text)` reaches the caller as [`crate::Error::Handler`]. Unlike
/// [`unary_handler`](crate::handler_impls::unary_handler) it never runs
/// inline on a transport's task, so a slow call holds no link's reader: the
/// dispatcher polls its future once in a slot reused from call to call, and
/// only a future that waits gets a task of its own.
pub fn unary_handler_async<F, Fut>(name: impl Into<String>, f: F) -> HandlerRef
where
    F: Fn(UnaryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Bytes>, String>> + Send + 'static,
{
    Arc::new(AsyncBytesHandler {
        name: name.into(),
        f,
        spare: Spare::default(),
    })
}

impl<F, Fut> Handler for AsyncBytesHandler<F, Fut>
where
    F: Fn(UnaryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Bytes>, String>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        HandlerKind::UnaryBytes
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        let fut = (self.f)(UnaryContext {
            payload,
            sender_id: ctx.sender_id,
            message_id: ctx.message_id,
            client: ctx.client,
        });
        let map: fn(Result<Option<Bytes>, String>) -> HandlerOutcome = bytes_outcome;
        match self.spare.run(fut.map(map)) {
            Ran::Ready(outcome) => HandlerCall::Ready(outcome),
            Ran::Pending(fut) => HandlerCall::Pending(fut),
        }
    }
}
