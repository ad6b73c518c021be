//! The handler contract: what the dispatcher calls for each invocation.

mod bytes_async;
pub(crate) mod cancel;
pub mod impls;
pub(crate) mod in_place;
mod lookup;
pub(crate) mod out_buffers;
mod payload;
pub(crate) mod registry;
pub(crate) mod stream;

use std::fmt;
use std::sync::Arc;

pub use cancel::HandlerCancel;
pub use payload::PayloadBuf;

use crate::client::NetworkClient;
use crate::codec::Body;
use crate::ids::{InstanceId, MessageId};
use crate::transport::{BoxFuture, PayloadRef};
use crate::wire::ErrorCode;

/// What kind of handler this is (reported by `_list_handlers`, used in docs and stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HandlerKind {
    /// Async, returns nothing to the caller.
    ActiveMessage,
    /// Bytes in, optional bytes out.
    UnaryBytes,
    /// Typed input and output (rkyv archives, or JSON for serde types).
    UnaryTyped,
    /// One input, a stream of items back (see [`crate::handler_impls::typed_stream_handler`]).
    Streaming,
}

/// Everything a handler learns about the invocation besides its payload.
#[derive(Clone)]
pub struct HandlerContext {
    /// The invocation's message id (unique per sender).
    pub message_id: MessageId,
    /// The calling manager.
    pub sender_id: InstanceId,
    /// The local client, to call other peers from inside a handler.
    pub client: Arc<NetworkClient>,
    /// Cancelled when the caller gives up or the manager shuts down
    /// (derefs to a `CancellationToken`).
    pub cancel: HandlerCancel,
    /// Whether the caller's link is trusted (see
    /// [`PeerLink::is_trusted`](crate::transport::PeerLink::is_trusted)):
    /// shared memory, in-process, or TCP authenticated with the shared secret.
    pub caller_trusted: bool,
}

impl fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("message_id", &self.message_id)
            .field("sender_id", &self.sender_id)
            .finish_non_exhaustive()
    }
}

/// A handler's failure as it travels back to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    /// Which kind of failure (the handler's own error, or undecodable input).
    pub code: ErrorCode,
    /// Human-readable text, delivered to the caller verbatim.
    pub message: String,
}

impl HandlerError {
    /// The handler's own error.
    pub fn handler(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Handler,
            message: message.into(),
        }
    }

    /// The input could not be decoded (or the output encoded). The
    /// decoder's own text can quote memory addresses and internal layout,
    /// so it is logged here and the caller gets a fixed text.
    pub fn codec(detail: impl fmt::Display) -> Self {
        tracing::debug!(%detail, "payload codec failure");
        Self {
            code: ErrorCode::Codec,
            message: "the payload could not be decoded as the handler's input type \
                      (or its output could not be encoded)"
                .into(),
        }
    }
}

/// What an inline call produced: the response payload (borrowed, archived
/// straight into the reply frame), or an error.
pub(crate) type InlineOutcome<'a> = Result<PayloadRef<'a>, HandlerError>;

/// What a handler produced: a body for the response, or an error.
pub(crate) type HandlerOutcome = Result<Body, HandlerError>;

/// A handler call: synchronous handlers answer at once, async ones return a future.
pub enum HandlerCall {
    /// Already finished (no future allocated).
    Ready(HandlerOutcome),
    /// Still running.
    Pending(BoxFuture<'static, HandlerOutcome>),
}

impl HandlerCall {
    /// Waits for the outcome.
    pub async fn outcome(self) -> HandlerOutcome {
        match self {
            Self::Ready(outcome) => outcome,
            Self::Pending(fut) => fut.await,
        }
    }
}

/// A registered handler. Build one with the functions in
/// [`crate::handler_impls`], or implement this trait directly.
pub trait Handler: Send + Sync + 'static {
    /// Descriptive name (the registry's key is the name it is registered under).
    fn name(&self) -> &str;
    /// Which kind of handler.
    fn kind(&self) -> HandlerKind;
    /// Runs the handler on one payload (shared, read in place where the
    /// transport allows: see [`PayloadBuf`]).
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall;
    /// Runs the handler synchronously over the payload in place, if this kind
    /// of handler can: hands the outcome to `out` and returns true. Async
    /// handlers return false and are called through [`Handler::call`].
    fn call_inline(
        &self,
        ctx: &HandlerContext,
        payload: &[u8],
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) -> bool {
        let _ = (ctx, payload, out);
        false
    }

    /// [`Handler::call_inline`] where the transport can also share the
    /// payload: `owned` makes it a [`PayloadBuf`] without a copy (call it at
    /// most once), for handlers that take their payload by value. Defaults
    /// to `call_inline`, which leaves `owned` unused.
    fn call_inline_shared(
        &self,
        ctx: &HandlerContext,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) -> bool {
        let _ = owned;
        self.call_inline(ctx, payload, out)
    }

    /// Runs the handler for a streamed request (flag `STREAM`): items go out
    /// through `sink`, and the future's outcome ends the stream. Handlers
    /// that do not stream return `None` (the caller gets an error).
    fn call_stream(
        &self,
        ctx: HandlerContext,
        payload: PayloadBuf,
        sink: crate::stream::ItemSink,
    ) -> Option<BoxFuture<'static, Result<(), HandlerError>>> {
        let _ = (ctx, payload, sink);
        None
    }

    /// [`Handler::call`] for a one-way call within a run of calls read back
    /// to back, where an async handler polls its future in the run's slot
    /// instead of locking its spare slots per call. Internal to the runtime
    /// (the slot type cannot be named outside the crate); the default calls
    /// `call`.
    #[doc(hidden)]
    fn call_in_run(
        &self,
        slot: &mut in_place::RunSlot,
        ctx: HandlerContext,
        payload: PayloadBuf,
    ) -> HandlerCall {
        let _ = slot;
        self.call(ctx, payload)
    }

    /// Takes back the slot a run borrowed in [`Handler::call_in_run`].
    #[doc(hidden)]
    fn end_run(&self, slot: &mut in_place::RunSlot) {
        let _ = slot;
    }

    /// Whether calls to this handler run outside the concurrency limit
    /// (for long waits that use no resources, like `_wait_for_handler`).
    fn exempt_from_limit(&self) -> bool {
        false
    }
}

/// A shared handler.
pub type HandlerRef = Arc<dyn Handler>;
