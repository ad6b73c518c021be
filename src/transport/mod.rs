//! The transport contract: what every transport (ZeroMQ TCP, shared memory,
//! the in-process loopback, or one of yours) gives the runtime, so the
//! dispatcher, response table and cohorts never know which one carries a
//! message. `docs/writing-a-transport.md` walks through an implementation.
//!
//! # Plugging a transport in
//! A transport is bound by a [`TransportFactory`] handed to
//! [`ActiveMessageManagerBuilder::transport`](crate::ActiveMessageManagerBuilder::transport):
//! the builder calls it with the manager's [`InstanceId`] and its [`Inbox`].
//! The transport's [`ThinTransport::kind`] names the endpoint scheme it serves
//! ([`TransportKind::Custom`]); its [`ThinTransport::local_endpoint`] is
//! advertised in [`PeerInfo::extra_endpoints`](crate::PeerInfo::extra_endpoints),
//! and a peer's `connect_to_peer` hands endpoints of that scheme to the peer's
//! own transport of the same kind.
//!
//! # Contract
//! - A transport is bound once with an [`Inbox`] and the local [`InstanceId`].
//!   Every frame it sends carries that id as its sender.
//! - [`ThinTransport::connect`] returns a [`PeerLink`] to one peer, or fails
//!   promptly (nothing listening, or another instance answering: a restarted
//!   process is a new instance). Frames sent on one link arrive in order.
//! - Outbound: [`PeerLink::send`] encodes the [`OutFrame`] (with
//!   [`OutFrame::encode_into`] or [`OutFrame::to_vec`]) and waits while the
//!   link is full; [`PeerLink::try_send`] fails with [`Error::Full`](crate::Error::Full)
//!   instead, and [`PeerLink::poll_writable`] then lets the caller wait for
//!   room in its own future, without allocating. Queues are bounded. A broken link fails sends with
//!   [`Error::PeerLost`](crate::Error::PeerLost), a frame over the limit with
//!   [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge).
//! - Inbound frames are checked with [`wire::decode`] against
//!   [`Inbox::max_frame`] before anything else looks at them.
//! - Inbound invocation frames (`OneWay`, `Confirm`, `Request`, `Cancel`, and
//!   a stream's `Credit`) go to
//!   [`Inbox::invocations`], a bounded queue ([`InvocationSender`]), as an [`Inbound`] carrying the
//!   link that replies go back on. When the channel is full the transport
//!   stops reading invocations from that peer (backpressure reaches the
//!   sender); it never drops them and never queues them without bound. A
//!   transport may first offer them to [`Inbox::inline`] ([`InlineDispatch`]).
//! - Inbound replies (`Ack`, `Response`, `Error`, `Receipt`, and a stream's
//!   `StreamItem` and `StreamEnd`: [`wire::Kind::is_reply`]) go to
//!   [`LinkEvents::on_reply`] at once, on the transport's own thread or task, so a
//!   saturated dispatcher never delays a reply.
//! - Heartbeats and goodbyes are the transport's business. When a link to a peer
//!   breaks (process gone, socket closed, heartbeat missed, goodbye received) the
//!   transport calls [`LinkEvents::on_link_lost`] once, promptly.
//! - Malformed frames are counted through [`LinkEvents::on_protocol_error`] and
//!   dropped (answered with an `Error` frame when the header was readable); the
//!   transport keeps serving every other frame and peer. Framing it cannot
//!   resynchronise after (a bad length prefix) closes that one link.
//! - [`ThinTransport::shutdown`] stops accepting and closes every link; peers
//!   see the links lost.

mod frame;
mod inbound;
mod inline;
mod invocations;
mod link;
pub mod local;
mod plug;
pub mod shm;
pub mod zmq;

pub use crate::runtime::run::InPlaceRun;
pub use frame::{OutFrame, PayloadRef};
pub use inbound::{Inbound, Inbox, LinkEvents};
pub use inline::{InlineDispatch, InlineSlot};
pub use invocations::{InvocationPermit, InvocationReceiver, InvocationSender, invocation_queue};
pub use link::{BoxedLink, Driven, PeerLink};
pub(crate) use plug::SharedFactory;
pub use plug::{TransportFactory, TransportKind};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::ids::InstanceId;
#[cfg(doc)]
use crate::wire;

/// A boxed, sendable future (object-safe async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A transport: binds endpoints at construction and connects to peers.
pub trait ThinTransport: Send + Sync + 'static {
    /// Which transport this is; its [`TransportKind::scheme`] is the scheme
    /// of every endpoint it serves. At most one transport per scheme is bound
    /// on a manager.
    fn kind(&self) -> TransportKind;
    /// The endpoint peers should use to reach this transport (routable, never
    /// `0.0.0.0`), if it listens; it starts with `<scheme>://`.
    fn local_endpoint(&self) -> Option<String>;
    /// Connects to the peer `peer` listening at `endpoint`. Fails promptly when
    /// nothing answers there, or when the instance found there is not `peer`.
    /// With `peer` nil ([`InstanceId::nil`]) the link goes to whichever
    /// instance answers, and [`PeerLink::peer`] names it (how
    /// [`NetworkClient::connect_to_address`](crate::NetworkClient::connect_to_address)
    /// learns a peer from its address); transports that cannot tell fail.
    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<BoxedLink>>;
    /// Stops accepting, says goodbye on every link, closes sockets. Idempotent.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// After `shutdown`: how many links could not confirm, before the
    /// shutdown deadline, that their peer read everything they accepted
    /// (the manager's `shutdown()` then reports it). Transports whose peers
    /// drain what was sent on their own say 0.
    fn undelivered(&self) -> usize {
        0
    }
    /// Links that peers opened to this manager and that are still up (a
    /// server's callers, a worker's leader): listed by `stats()` beside the
    /// links this manager opened. Transports that keep no such links say none.
    fn inbound_links(&self) -> Vec<BoxedLink> {
        Vec::new()
    }
}

/// A shared transport handle.
pub type BoxedTransport = Arc<dyn ThinTransport>;
