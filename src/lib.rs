//! # active-message
//!
//! Active messages between processes: a caller names a handler registered on a
//! peer, sends it a typed payload, and gets back nothing (fire-and-forget), an
//! acceptance (confirmed delivery), or a typed response.
//!
//! Layers, top to bottom (one folder each):
//! - `client/`: what a caller holds: [`NetworkClient`], the [`MessageBuilder`]
//!   typestates, [`MessageStatus`] and [`ReceiptHandle`], and the
//!   [`ChannelFront`] (the same manager through a message channel and a
//!   notification channel);
//! - `manager/`: [`ActiveMessageManager`] and its builder, which own the
//!   transports, the dispatcher and the lifecycle;
//! - `handler/`: handler kinds and their constructors ([`handler_impls`]);
//! - `runtime/` and `system/`: dispatcher (handler registry, concurrency
//!   limit, deadlines), response table (correlation, timeouts, peer loss),
//!   the `_`-prefixed system handlers;
//! - `protocol/`: the [`wire`] envelope, identical on every transport, and
//!   the payload codecs (rkyv archives, or JSON for serde types via [`Json`]);
//! - [`transport`]: the [`transport::ThinTransport`] contract and its
//!   implementations: shared-memory rings, ZeroMQ over TCP, in-process, and
//!   any a user plugs in.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(unreachable_pub)]

mod address;
mod client;
pub mod cohort;
mod error;
mod handler;
mod ids;
mod manager;
#[cfg(feature = "metrics")]
pub mod metrics;
mod peer;
mod protocol;
mod runtime;
mod stats;
mod stream;
mod system;
pub mod transport;

pub(crate) use client::{message as builder, status};
pub(crate) use protocol::codec;
#[doc(hidden)]
pub use protocol::json;

pub use client::front::{
    ChannelFront, FrontConfig, IncomingActiveMessage, ResponseNotification, front_handler,
};
pub use client::loan::{LOAN_ALIGN, Loan};
pub use client::message::{
    DetachedReceipt, MessageBuilder, NeedsDeliveryMode, StreamExpected, WithResponseExpected,
};
pub use client::one_way::{BatchError, OneWaySender};
pub use client::status::{MessageStatus, ReceiptHandle, SendAndConfirm, WithResponse};
pub use client::{NetworkClient, TransportPolicy};
pub use error::{Error, Result};
pub use handler::impls as handler_impls;
pub use handler::registry::HandlerEvent;
pub use handler::{
    Handler, HandlerCancel, HandlerContext, HandlerError, HandlerKind, HandlerRef, PayloadBuf,
};
pub use ids::{HandlerId, InstanceId, MessageId, MessageIdGen};
pub use manager::{ActiveMessageManager, ActiveMessageManagerBuilder};
pub use peer::PeerInfo;
pub use protocol::codec::{
    ByRef, ByValue, Decode, DoesNotFit, IntoPayload, Payload, PayloadSource,
};
pub use protocol::json::Json;
pub use protocol::wire;
pub use shm_ring::WaitPolicy;
pub use stats::{
    CounterValues, HandlerStat, LATENCY_BUCKETS, LinkCounterValues, LinkCounters, PeerStat,
    StatsSnapshot,
};
pub use stream::{
    ArchivedItem, BytesStream, DEFAULT_WINDOW, ItemSink, MAX_WINDOW, ResponseStream, StreamSender,
    StreamStats,
};
pub use system::types::{
    HealthCheckResponse, ListHandlersResponse, RegisterServiceResponse, RequestShutdownResponse,
    WaitForHandlerRequest, WaitForHandlerResponse,
};
pub use transport::TransportKind;
pub use transport::shm::ShmConfig;
