//! [`unary_handler_async`]: the async form of the bytes handler, for
//! handlers that must not run on the transport's task (a handler in another
//! language that waits for its interpreter, a long computation handed to a
//! worker thread).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::Body;
use crate::handler::impls::UnaryContext;
use crate::handler::{Handler, HandlerCall, HandlerContext, HandlerError, HandlerKind, HandlerRef};

struct AsyncBytesHandler<F> {
    name: String,
    f: F,
}

/// An async bytes-in, bytes-out handler: `Ok(None)` answers with an empty
/// body, `Err(text)` reaches the caller as [`crate::Error::Handler`]. Unlike
/// [`unary_handler`](crate::handler_impls::unary_handler) it never runs
/// inline on a transport's task, so a slow call holds no link's reader.
pub fn unary_handler_async<F, Fut>(name: impl Into<String>, f: F) -> HandlerRef
where
    F: Fn(UnaryContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Bytes>, String>> + Send + 'static,
{
    Arc::new(AsyncBytesHandler {
        name: name.into(),
        f,
    })
}

impl<F, Fut> Handler for AsyncBytesHandler<F>
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
    fn call(&self, ctx: HandlerContext, payload: Bytes) -> HandlerCall {
        let fut = (self.f)(UnaryContext {
            payload,
            sender_id: ctx.sender_id,
            message_id: ctx.message_id,
            client: ctx.client,
        });
        HandlerCall::Pending(Box::pin(async move {
            match fut.await {
                Ok(Some(bytes)) => Ok(Body::Bytes(bytes)),
                Ok(None) => Ok(Body::Empty),
                Err(message) => Err(HandlerError::handler(message)),
            }
        }))
    }
}
