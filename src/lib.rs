//! # active-message
//!
//! Active messages between processes: a caller names a handler registered on a
//! peer, sends it a typed payload, and gets back nothing (fire-and-forget), an
//! acceptance (confirmed delivery), or a typed response.
//!
//! Layers, top to bottom:
//! - the API: [`ActiveMessageManager`], [`NetworkClient`], the message builder
//!   and the handler constructors in [`handler_impls`];
//! - the runtime: dispatcher (handler registry, concurrency limit), response
//!   table (correlation, timeouts, peer loss), system handlers;
//! - the [`wire`] envelope, identical on every transport;
//! - the transports behind [`transport::ThinTransport`]: ZeroMQ over TCP and an
//!   in-process loopback.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod error;
pub mod ids;
pub mod peer;
pub mod transport;
pub mod wire;

pub use error::{Error, Result};
pub use ids::{HandlerId, InstanceId, MessageId};
pub use peer::PeerInfo;
