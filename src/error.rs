//! The runtime's error type.

use std::time::Duration;

use crate::ids::InstanceId;
use crate::wire::ProtocolError;

/// Result alias for the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong for a caller of this crate.
///
/// A [`Error::Timeout`] means the peer was alive and silent for the whole
/// budget; a dead peer is [`Error::PeerLost`], a missing handler is
/// [`Error::NoSuchHandler`], each reported as soon as it is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer has no handler of that name.
    #[error("no handler named {0:?} on the peer")]
    NoSuchHandler(String),
    /// The handler ran and returned an error; the message is the handler's.
    #[error("handler failed: {0}")]
    Handler(String),
    /// The link to the peer broke (process gone, socket closed, heartbeat missed).
    #[error("peer {0} was lost")]
    PeerLost(InstanceId),
    /// The peer's process is alive but has answered no liveness probe for
    /// the configured time (stopped or wedged); its link is kept, and calls
    /// work again once it answers.
    #[error("peer {0} is not responding")]
    PeerUnresponsive(InstanceId),
    /// No link to that peer: call `connect_to_peer` first.
    #[error("not connected to peer {0}")]
    UnknownPeer(InstanceId),
    /// The message needs a target and none was given.
    #[error("no target instance set on the message")]
    NoTarget,
    /// The peer was alive but did not answer within the budget.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The caller cancelled the call (a streamed response's
    /// [`cancel`](crate::ResponseStream::cancel)); on the handler's side, the
    /// caller went away and the stream's sender takes no more items.
    #[error("cancelled")]
    Cancelled,
    /// A `try_` operation found the link full.
    #[error("link is full")]
    Full,
    /// The local manager (or the peer) is shutting down and admits nothing new.
    #[error("shutting down")]
    ShuttingDown,
    /// `shutdown()`'s deadline passed before `links` links confirmed that
    /// their peer read everything they had accepted: some one-way messages
    /// reported as sent may not have reached their handlers.
    #[error("shutdown deadline passed with {links} link(s) not drained")]
    ShutdownIncomplete {
        /// Links that did not confirm delivery.
        links: usize,
    },
    /// A payload larger than the configured maximum.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the refused payload.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A handler name that may not be used here.
    #[error("invalid handler name {0}")]
    InvalidHandlerName(String),
    /// The peer refused the message (for example a reserved name sent as a user message).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// A handler of that name is already registered.
    #[error("a handler named {0:?} is already registered")]
    HandlerExists(String),
    /// A frame broke the wire protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A payload could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// A transport failure (socket, binding, endpoint).
    #[error("transport error: {0}")]
    Transport(String),
    /// An invalid builder setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An operating-system I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A codec error from anything displayable.
    pub fn codec(err: impl std::fmt::Display) -> Self {
        Self::Codec(err.to_string())
    }

    /// A transport error from anything displayable.
    pub fn transport(err: impl std::fmt::Display) -> Self {
        Self::Transport(err.to_string())
    }
}
