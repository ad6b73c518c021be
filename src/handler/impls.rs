//! Handler constructors: turn a closure into a registrable [`Handler`].
//!
//! | constructor | closure | caller gets |
//! |---|---|---|
//! | [`am_handler`] | `async Fn(AmContext) -> Result<(), String>` | nothing (an ack for `send`) |
//! | [`unary_handler`] | `Fn(UnaryContext) -> Result<Option<Bytes>, String>` | the bytes |
//! | [`unary_handler_async`] | `async Fn(UnaryContext) -> Result<Option<Bytes>, String>` | the bytes |
//! | [`typed_unary_handler`] | `Fn(TypedContext<I>) -> Result<O, String>` | `O`, typed |
//! | [`typed_unary_handler_async`] | `async Fn(TypedContext<I>) -> Result<O, String>` | `O`, typed |
//! | [`archived_unary_handler`] | `Fn(ArchivedContext<I>) -> Result<O, String>`, input read in place | `O`, typed |
//!
//! Synchronous handlers (`unary_handler`, `typed_unary_handler`,
//! `archived_unary_handler`) may run inline on the transport's own task when
//! the transport supports it (shared memory): no task spawn, and for the
//! archived kind no copy of the input at all.
//!
//! Typed handlers decode their input with [`Decode`] and encode their output
//! with [`Payload`]: rkyv for rkyv types, JSON for serde types declared with
//! [`crate::json_payload!`] or wrapped in [`crate::Json`].
//!
//! Every error string travels back to the caller as [`crate::Error::Handler`].

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::client::NetworkClient;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

use futures::FutureExt;

use crate::codec::{Body, Decode, Payload, with_aligned};
pub use crate::handler::bytes_async::{unary_handler, unary_handler_async};
use crate::handler::in_place::{Ran, RunSlot, Spare};
pub use crate::handler::stream::{
    raw_stream_handler, typed_stream_handler, typed_stream_handler_from_stream,
};
pub use crate::handler::{
    Handler, HandlerCancel, HandlerContext, HandlerKind, HandlerRef, PayloadBuf,
};
use crate::handler::{HandlerCall, HandlerError, HandlerOutcome, InlineOutcome};
use crate::ids::{InstanceId, MessageId};
use crate::transport::PayloadRef;

/// Context of an [`am_handler`] call.
#[derive(Clone, Debug)]
pub struct AmContext {
    /// The raw payload, read in place (see [`PayloadBuf`]). It may share
    /// its memory with other received frames (a reused receive buffer), or
    /// hold the sender's pooled buffer: a handler that keeps it for long
    /// should keep a copy (`PayloadBuf::copy_from_slice`) instead.
    pub payload: PayloadBuf,
    /// The calling manager.
    pub sender_id: InstanceId,
    /// The invocation's id.
    pub message_id: MessageId,
    /// The local client.
    pub client: Arc<NetworkClient>,
    /// Cancelled when the caller gives up or the manager shuts down.
    pub cancel: HandlerCancel,
}

/// Context of a [`unary_handler`] call.
#[derive(Clone, Debug)]
pub struct UnaryContext {
    /// The raw payload (it may share a reused receive buffer or hold the
    /// sender's pooled buffer, as in [`AmContext::payload`]: copy what you
    /// keep for long).
    pub payload: PayloadBuf,
    /// The calling manager.
    pub sender_id: InstanceId,
    /// The invocation's id.
    pub message_id: MessageId,
    /// The local client.
    pub client: Arc<NetworkClient>,
}

/// Context of a typed handler call: the decoded input plus the caller.
#[derive(Clone, Debug)]
pub struct TypedContext<I> {
    /// The decoded, validated input.
    pub input: I,
    /// The calling manager.
    pub sender_id: InstanceId,
    /// The invocation's id.
    pub message_id: MessageId,
    /// The local client.
    pub client: Arc<NetworkClient>,
    /// Cancelled when the caller gives up or the manager shuts down.
    pub cancel: HandlerCancel,
}

/// A closure as a handler. `S` is per-handler state: the reused future
/// slot of the async kinds ([`Spare`]), nothing for the others.
struct FnHandler<F, M, S = ()> {
    name: String,
    kind: HandlerKind,
    f: F,
    spare: S,
    _marker: PhantomData<fn() -> M>,
}

fn boxed<F, M, S>(name: impl Into<String>, kind: HandlerKind, f: F) -> HandlerRef
where
    S: Default,
    FnHandler<F, M, S>: Handler,
{
    Arc::new(FnHandler {
        name: name.into(),
        kind,
        f,
        spare: S::default(),
        _marker: PhantomData,
    })
}

/// An async handler's call: finished in place, or its future for a task.
fn from_ran(ran: Ran<HandlerOutcome>) -> HandlerCall {
    match ran {
        Ran::Ready(outcome) => HandlerCall::Ready(outcome),
        Ran::Pending(fut) => HandlerCall::Pending(fut),
    }
}

/// An async handler that returns nothing to the caller.
pub fn am_handler<F, Fut>(name: impl Into<String>, f: F) -> HandlerRef
where
    F: Fn(AmContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    boxed::<F, AmMarker, AmSpare<Fut>>(name, HandlerKind::ActiveMessage, f)
}

struct AmMarker;

/// The reused slot of an [`am_handler`]'s futures.
type AmSpare<Fut> = Spare<AmFuture<Fut>>;

/// An [`am_handler`]'s future with its outcome mapped for the dispatcher.
type AmFuture<Fut> = futures::future::Map<Fut, fn(Result<(), String>) -> HandlerOutcome>;

fn am_outcome(out: Result<(), String>) -> HandlerOutcome {
    out.map(|()| Body::Empty).map_err(HandlerError::handler)
}

impl<F, Fut> Handler for FnHandler<F, AmMarker, AmSpare<Fut>>
where
    F: Fn(AmContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        self.kind
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        let fut = (self.f)(am_context(ctx, payload));
        let map: fn(Result<(), String>) -> HandlerOutcome = am_outcome;
        from_ran(self.spare.run(fut.map(map)))
    }
    fn call_in_run(
        &self,
        slot: &mut RunSlot,
        ctx: HandlerContext,
        payload: PayloadBuf,
    ) -> HandlerCall {
        let fut = (self.f)(am_context(ctx, payload));
        let map: fn(Result<(), String>) -> HandlerOutcome = am_outcome;
        from_ran(self.spare.run_in(slot, fut.map(map)))
    }
    fn end_run(&self, slot: &mut RunSlot) {
        self.spare.end_run(slot);
    }
}

/// An [`am_handler`]'s context.
fn am_context(ctx: HandlerContext, payload: PayloadBuf) -> AmContext {
    AmContext {
        payload,
        sender_id: ctx.sender_id,
        message_id: ctx.message_id,
        client: ctx.client,
        cancel: ctx.cancel,
    }
}

/// A synchronous typed handler: the input is validated and decoded from its
/// rkyv archive, the output is archived back to the caller.
pub fn typed_unary_handler<I, O, F>(name: impl Into<String>, f: F) -> HandlerRef
where
    I: Decode + Send + 'static,
    O: Payload + 'static,
    F: Fn(TypedContext<I>) -> Result<O, String> + Send + Sync + 'static,
{
    boxed::<F, TypedMarker<I, O>, ()>(name, HandlerKind::UnaryTyped, f)
}

struct TypedMarker<I, O>(PhantomData<(I, O)>);

fn typed_context<I: Decode>(
    ctx: HandlerContext,
    payload: &[u8],
) -> Result<TypedContext<I>, HandlerError> {
    let input = I::decode(payload).map_err(HandlerError::codec)?;
    Ok(TypedContext {
        input,
        sender_id: ctx.sender_id,
        message_id: ctx.message_id,
        client: ctx.client,
        cancel: ctx.cancel,
    })
}

fn encode_output<O: Payload>(out: Result<O, String>) -> HandlerOutcome {
    let value = out.map_err(HandlerError::handler)?;
    // A reused buffer: the dispatcher gives it back once the reply is out.
    crate::handler::out_buffers::encode(&value)
}

impl<I, O, F> Handler for FnHandler<F, TypedMarker<I, O>>
where
    I: Decode + Send + 'static,
    O: Payload + 'static,
    F: Fn(TypedContext<I>) -> Result<O, String> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        self.kind
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        HandlerCall::Ready(typed_context(ctx, &payload).and_then(|c| encode_output((self.f)(c))))
    }
    fn call_inline(
        &self,
        ctx: &HandlerContext,
        payload: &[u8],
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) -> bool {
        match typed_context::<I>(ctx.clone(), payload).map(|c| (self.f)(c)) {
            Err(e) => out(Err(e)),
            Ok(Err(message)) => out(Err(HandlerError::handler(message))),
            Ok(Ok(value)) => out(Ok(PayloadRef::Archive(&value))),
        }
        true
    }
}

/// An async typed handler.
pub fn typed_unary_handler_async<I, O, F, Fut>(name: impl Into<String>, f: F) -> HandlerRef
where
    I: Decode + Send + 'static,
    O: Payload + Send + 'static,
    F: Fn(TypedContext<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, String>> + Send + 'static,
{
    boxed::<F, TypedAsyncMarker<I, O>, TypedSpare<Fut, O>>(name, HandlerKind::UnaryTyped, f)
}

struct TypedAsyncMarker<I, O>(PhantomData<(I, O)>);

/// The reused slot of a [`typed_unary_handler_async`]'s futures.
type TypedSpare<Fut, O> = Spare<futures::future::Map<Fut, fn(Result<O, String>) -> HandlerOutcome>>;

impl<I, O, F, Fut> Handler for FnHandler<F, TypedAsyncMarker<I, O>, TypedSpare<Fut, O>>
where
    I: Decode + Send + 'static,
    O: Payload + Send + 'static,
    F: Fn(TypedContext<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, String>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        self.kind
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        match typed_context(ctx, &payload) {
            Err(e) => HandlerCall::Ready(Err(e)),
            Ok(c) => {
                let map: fn(Result<O, String>) -> HandlerOutcome = encode_output::<O>;
                from_ran(self.spare.run((self.f)(c).map(map)))
            }
        }
    }
}

/// Context of an [`archived_unary_handler`] call: the input is the validated
/// archive, read in place (no deserialization, no copy).
#[derive(Debug)]
pub struct ArchivedContext<'a, I: rkyv::Archive> {
    /// The validated archived input, borrowed from the receive buffer.
    pub input: &'a I::Archived,
    /// The calling manager.
    pub sender_id: InstanceId,
    /// The invocation's id.
    pub message_id: MessageId,
    /// The local client.
    pub client: &'a Arc<NetworkClient>,
}

/// A zero-copy handler: the closure reads the archived input in place (after
/// rkyv validation) and returns a typed output.
pub fn archived_unary_handler<I, O, F>(name: impl Into<String>, f: F) -> HandlerRef
where
    I: rkyv::Archive + 'static,
    I::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    O: Payload + 'static,
    F: for<'a> Fn(ArchivedContext<'a, I>) -> Result<O, String> + Send + Sync + 'static,
{
    boxed::<F, ArchivedMarker<I, O>, ()>(name, HandlerKind::UnaryTyped, f)
}

struct ArchivedMarker<I, O>(PhantomData<(I, O)>);

impl<I, O, F> FnHandler<F, ArchivedMarker<I, O>>
where
    I: rkyv::Archive + 'static,
    I::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    O: Payload + 'static,
    F: for<'a> Fn(ArchivedContext<'a, I>) -> Result<O, String> + Send + Sync + 'static,
{
    /// Validates the archive in place and runs the closure on it.
    fn run<R>(
        &self,
        ctx: &HandlerContext,
        payload: &[u8],
        then: impl FnOnce(Result<O, HandlerError>) -> R,
    ) -> R {
        with_aligned(payload, |aligned| {
            match rkyv::access::<I::Archived, rancor::Error>(aligned) {
                Err(e) => then(Err(HandlerError::codec(e))),
                Ok(input) => then(
                    (self.f)(ArchivedContext {
                        input,
                        sender_id: ctx.sender_id,
                        message_id: ctx.message_id,
                        client: &ctx.client,
                    })
                    .map_err(HandlerError::handler),
                ),
            }
        })
    }
}

impl<I, O, F> Handler for FnHandler<F, ArchivedMarker<I, O>>
where
    I: rkyv::Archive + 'static,
    I::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    O: Payload + 'static,
    F: for<'a> Fn(ArchivedContext<'a, I>) -> Result<O, String> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> HandlerKind {
        self.kind
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        HandlerCall::Ready(self.run(&ctx, &payload, |r| r.and_then(|o| encode_output(Ok(o)))))
    }
    fn call_inline(
        &self,
        ctx: &HandlerContext,
        payload: &[u8],
        out: &mut dyn FnMut(InlineOutcome<'_>),
    ) -> bool {
        self.run(ctx, payload, |r| match r {
            Ok(value) => out(Ok(PayloadRef::Archive(&value))),
            Err(e) => out(Err(e)),
        });
        true
    }
}
