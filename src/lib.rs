//! # active-message
//!
//! Active messages between processes: a caller names a handler registered on a
//! peer, sends it a typed payload, and gets back nothing (fire-and-forget), an
//! acceptance (confirmed delivery), or a typed response.
//!
//! Layers, top to bottom:
//! - the API: [`ActiveMessageManager`], [`NetworkClient`], [`MessageBuilder`]
//!   and the handler constructors in [`handler_impls`];
//! - the runtime: dispatcher (handler registry, concurrency limit), response
//!   table (correlation, timeouts, peer loss), [`system`] handlers;
//! - the [`wire`] envelope, identical on every transport;
//! - the transports behind [`transport::ThinTransport`]: ZeroMQ over TCP and an
//!   in-process loopback.
#![deny(unsafe_op_in_unsafe_fn)]

mod address;
pub mod builder;
pub mod client;
pub mod codec;
pub mod cohort;
pub mod demo;
pub mod error;
pub mod handler;
pub mod handler_impls;
pub mod ids;
pub mod manager;
pub mod peer;
pub mod runtime;
pub mod stats;
pub mod status;
pub mod system;
pub mod transport;
pub mod wire;

pub use builder::MessageBuilder;
pub use client::{NetworkClient, TransportPolicy};
pub use codec::{Decode, Payload};
pub use error::{Error, Result};
pub use handler::registry::HandlerEvent;
pub use handler::{Handler, HandlerContext, HandlerKind, HandlerRef};
pub use ids::{HandlerId, InstanceId, MessageId};
pub use manager::{ActiveMessageManager, ActiveMessageManagerBuilder};
pub use peer::PeerInfo;
pub use shm_ring::WaitPolicy;
pub use stats::StatsSnapshot;
pub use status::{MessageStatus, ReceiptHandle, SendAndConfirm, WithResponse};
pub use transport::TransportKind;
pub use transport::shm::ShmConfig;
