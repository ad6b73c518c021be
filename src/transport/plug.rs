//! What makes transports pluggable: the [`TransportKind`] that names a
//! transport by the endpoint scheme it serves, and the [`TransportFactory`]
//! the manager builder calls to bind a user's transport.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::{BoxedTransport, Inbox};
use crate::error::Result;
use crate::ids::InstanceId;

/// Which transport carries a link, named by the endpoint scheme it serves.
///
/// The built-in transports serve `local://`, `shm://` and `tcp://`; a user's
/// transport is [`TransportKind::Custom`] with its own scheme (`"uds"` for
/// endpoints `uds://...`). `connect_to_peer` picks, for each endpoint a peer
/// advertises, the transport whose kind has that endpoint's scheme.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TransportKind {
    /// In-process loopback (tests and single-process use).
    Local,
    /// Shared-memory rings between processes on one host.
    Shm,
    /// ZeroMQ over TCP.
    Tcp,
    /// A transport plugged in through
    /// [`ActiveMessageManagerBuilder::transport`](crate::ActiveMessageManagerBuilder::transport),
    /// named by its endpoint scheme (without `://`).
    Custom(Cow<'static, str>),
}

impl TransportKind {
    /// A user transport serving endpoints `<scheme>://...`.
    pub const fn custom(scheme: &'static str) -> Self {
        Self::Custom(Cow::Borrowed(scheme))
    }

    /// The endpoint scheme, without `://` (`"tcp"`, `"shm"`, `"local"`, or a custom one).
    pub fn scheme(&self) -> &str {
        match self {
            Self::Local => "local",
            Self::Shm => "shm",
            Self::Tcp => "tcp",
            Self::Custom(scheme) => scheme,
        }
    }

    /// The kind that serves `endpoint`, from its scheme; `None` when the
    /// endpoint has no `scheme://` prefix.
    pub fn of_endpoint(endpoint: &str) -> Option<Self> {
        let (scheme, _) = endpoint.split_once("://")?;
        Some(match scheme {
            "local" => Self::Local,
            "shm" => Self::Shm,
            "tcp" => Self::Tcp,
            other => Self::Custom(Cow::Owned(other.to_owned())),
        })
    }

    /// Whether `endpoint` is served by this kind.
    pub fn serves(&self, endpoint: &str) -> bool {
        endpoint
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme == self.scheme())
    }

    /// Whether `scheme` is usable: non-empty ASCII letters, digits, `+`, `-`
    /// or `.`, starting with a letter (the URI rule).
    pub fn is_valid_scheme(scheme: &str) -> bool {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// Binds a user's transport once the manager knows its identity.
///
/// The manager builder creates the [`Inbox`] and the local [`InstanceId`]
/// while it builds, so it takes a factory rather than a transport. Any
/// `Fn(InstanceId, Inbox) -> Result<BoxedTransport>` closure is a factory.
/// `bind` runs inside the Tokio runtime that runs `build()`, so it may spawn
/// tasks; it must not block.
pub trait TransportFactory: Send + Sync + 'static {
    /// Binds the transport for the manager `local`, delivering into `inbox`.
    fn bind(&self, local: InstanceId, inbox: Inbox) -> Result<BoxedTransport>;
}

impl<F> TransportFactory for F
where
    F: Fn(InstanceId, Inbox) -> Result<BoxedTransport> + Send + Sync + 'static,
{
    fn bind(&self, local: InstanceId, inbox: Inbox) -> Result<BoxedTransport> {
        self(local, inbox)
    }
}

/// A shared factory handle (the builder is `Clone`).
#[derive(Clone)]
pub(crate) struct SharedFactory(pub(crate) Arc<dyn TransportFactory>);

impl fmt::Debug for SharedFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportFactory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_endpoint_scheme() {
        assert_eq!(
            TransportKind::of_endpoint("tcp://1.2.3.4:5"),
            Some(TransportKind::Tcp)
        );
        assert_eq!(
            TransportKind::of_endpoint("shm:///run/x.sock"),
            Some(TransportKind::Shm)
        );
        assert_eq!(
            TransportKind::of_endpoint("uds:///tmp/a"),
            Some(TransportKind::custom("uds"))
        );
        assert_eq!(TransportKind::of_endpoint("no scheme"), None);
        assert!(TransportKind::custom("uds").serves("uds:///tmp/a"));
        assert!(!TransportKind::custom("uds").serves("udsx:///tmp/a"));
        assert_eq!(TransportKind::custom("uds").to_string(), "uds");
    }

    #[test]
    fn schemes_follow_the_uri_rule() {
        for good in ["uds", "rdma+v2", "a.b-c"] {
            assert!(TransportKind::is_valid_scheme(good), "{good}");
        }
        for bad in ["", "1uds", "u ds", "u:d", "ü"] {
            assert!(!TransportKind::is_valid_scheme(bad), "{bad}");
        }
    }

    #[test]
    fn old_kinds_keep_their_json_and_custom_ones_round_trip() {
        assert_eq!(
            serde_json::to_string(&TransportKind::Shm).unwrap(),
            "\"Shm\""
        );
        let custom = TransportKind::custom("uds");
        let json = serde_json::to_string(&custom).unwrap();
        assert_eq!(json, r#"{"Custom":"uds"}"#);
        assert_eq!(
            serde_json::from_str::<TransportKind>(&json).unwrap(),
            custom
        );
    }
}
