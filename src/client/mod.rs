//! `NetworkClient`: the peer registry and the send path shared by every
//! message pattern.

pub(crate) mod front;
mod link_cache;
pub(crate) mod loan;
pub(crate) mod message;
pub(crate) mod name;
pub(crate) mod one_way;
mod send;
pub(crate) mod status;
mod wait;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::builder::MessageBuilder;
use bytes::Bytes;

use crate::codec::PayloadValue;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId, MessageIdGen, validate_user_handler_name};
use crate::peer::PeerInfo;
use crate::runtime::pending::PendingTable;
use crate::stats::{Counters, PeerStat};
use crate::transport::{BoxedLink, BoxedTransport, PayloadRef, PeerLink, TransportKind};
use crate::wire::Kind;

/// Limits the client enforces before anything is sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    pub(crate) max_payload: usize,
    pub(crate) default_timeout: Duration,
}

/// Sends active messages to connected peers. Cheap to share (`Arc`).
pub struct NetworkClient {
    pub(crate) instance_id: InstanceId,
    pub(crate) peer_info: PeerInfo,
    pub(crate) links: Arc<DashMap<InstanceId, BoxedLink>>,
    pub(crate) transports: Vec<BoxedTransport>,
    pub(crate) pending: Arc<PendingTable>,
    pub(crate) ids: MessageIdGen,
    pub(crate) admitting: AtomicBool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) limits: ClientLimits,
    pub(crate) transport_policy: TransportPolicy,
    /// Streamed responses: those read here and those produced here.
    pub(crate) streams: Arc<crate::stream::Streams>,
}

/// Which transports [`NetworkClient::connect_to_peer`] may pick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransportPolicy {
    /// Shared memory when the peer is on this host and advertises it, else
    /// a plugged-in transport, else TCP, else in-process (the default).
    #[default]
    Auto,
    /// Shared memory only: peers without a reachable shm endpoint are refused.
    ShmOnly,
    /// Never shared memory nor plugged-in transports (TCP, or in-process).
    TcpOnly,
}

impl fmt::Debug for NetworkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkClient")
            .field("instance_id", &self.instance_id)
            .field("peers", &self.links.len())
            .finish_non_exhaustive()
    }
}

/// A message's payload as the builder holds it: archived only when the link
/// writes the frame, straight into the link's own buffer.
#[derive(Clone, Default)]
pub(crate) enum OutPayload<'a> {
    #[default]
    Empty,
    Bytes(Bytes),
    Archive(PayloadValue<'a>),
    Loan(loan::Loan),
}

impl OutPayload<'_> {
    pub(crate) fn as_ref(&self) -> PayloadRef<'_> {
        match self {
            Self::Empty => PayloadRef::Bytes(&[]),
            Self::Bytes(b) => PayloadRef::Bytes(b),
            Self::Archive(p) => PayloadRef::Archive(p.as_dyn()),
            Self::Loan(l) => PayloadRef::Loan(l),
        }
    }

    pub(crate) fn raw_len(&self) -> Option<usize> {
        match self {
            Self::Empty => Some(0),
            Self::Bytes(b) => Some(b.len()),
            Self::Loan(l) => Some(l.len()),
            Self::Archive(_) => None,
        }
    }
}

impl fmt::Debug for OutPayload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Archive(_) => f.write_str("Archive"),
            Self::Loan(l) => write!(f, "{l:?}"),
        }
    }
}

/// One outgoing invocation, before it is sent.
pub(crate) struct Call<'a> {
    pub(crate) target: InstanceId,
    pub(crate) kind: Kind,
    pub(crate) flags: u16,
    pub(crate) name: &'a str,
    pub(crate) body: &'a OutPayload<'a>,
    pub(crate) timeout: Duration,
}

impl NetworkClient {
    /// This manager's instance id.
    pub fn instance_id(&self) -> InstanceId {
        self.instance_id
    }

    /// What other peers need to reach this manager.
    pub fn peer_info(&self) -> PeerInfo {
        self.peer_info.clone()
    }

    /// Connects to a peer (no-op if a live link exists). Tries the endpoints
    /// the peer advertises in this order, each with this manager's transport
    /// of the endpoint's scheme, and keeps the first that connects:
    /// shared memory (same host only), then the endpoints of plugged-in
    /// transports in the peer's order ([`PeerInfo::extra_endpoints`]), then
    /// TCP, then in-process. A plugged-in transport thus wins over TCP when
    /// both ends have it; [`TransportPolicy::ShmOnly`] and
    /// [`TransportPolicy::TcpOnly`] leave plugged-in transports out.
    pub async fn connect_to_peer(&self, info: PeerInfo) -> Result<()> {
        if self
            .links
            .get(&info.instance_id)
            .is_some_and(|link| !link.is_closed())
        {
            return Ok(());
        }
        let mut last_err = None;
        for (kind, endpoint) in candidate_endpoints(&info, &self.peer_info, self.transport_policy) {
            let Some(transport) = self.transports.iter().find(|t| t.kind() == kind) else {
                continue;
            };
            match transport.connect(info.instance_id, endpoint).await {
                Ok(link) => {
                    tracing::debug!(peer = %info.instance_id, %kind, endpoint, "connected");
                    self.links.insert(info.instance_id, link);
                    self.pending.forget_loss(info.instance_id);
                    return Ok(());
                }
                Err(err) => {
                    tracing::debug!(peer = %info.instance_id, %kind, endpoint, %err, "connect failed");
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| {
            Error::Transport(format!(
                "peer {} advertises no endpoint this manager can reach",
                info.instance_id
            ))
        }))
    }

    /// Drops the link to a peer; calls in flight to it fail with `PeerLost`.
    pub fn disconnect_from_peer(&self, peer: InstanceId) -> bool {
        let removed = self.links.remove(&peer);
        if let Some((_, link)) = &removed {
            link.close();
        }
        self.pending.fail_peer(peer);
        self.streams.calls.fail_peer(peer, || Error::PeerLost(peer));
        removed.is_some()
    }

    /// Connected peers and their transports, sorted by id: the links this
    /// manager opened, then (`inbound`) those peers opened to it.
    pub fn list_peers(&self) -> Vec<PeerStat> {
        let outbound = self.links.iter().map(|e| (Arc::clone(e.value()), false));
        let inbound = self.transports.iter().flat_map(|t| t.inbound_links());
        let mut peers: Vec<PeerStat> = outbound
            .chain(inbound.map(|link| (link, true)))
            .filter(|(link, _)| !link.is_closed())
            .map(|(link, inbound)| self.peer_stat(&*link, inbound))
            .collect();
        peers.sort_by_key(|p| (p.instance_id, p.inbound));
        peers
    }

    fn peer_stat(&self, link: &dyn PeerLink, inbound: bool) -> PeerStat {
        let peer = link.peer();
        PeerStat {
            instance_id: peer,
            transport: link.kind(),
            inbound,
            counters: link.counters().map(|c| c.values()).unwrap_or_default(),
            calls_in_flight: if inbound {
                0
            } else {
                self.pending.in_flight_to(peer)
            },
        }
    }

    /// Starts a message to the user handler `name` (`_`-prefixed names are refused).
    pub fn active_message(self: &Arc<Self>, name: &str) -> Result<MessageBuilder<'static>> {
        validate_user_handler_name(name)?;
        Ok(MessageBuilder::new(
            Arc::clone(self),
            name::HandlerName::new(name),
            false,
        ))
    }

    /// Starts a message to a system handler (internal: helpers below use it).
    pub(crate) fn system_message(self: &Arc<Self>, name: &str) -> MessageBuilder<'static> {
        MessageBuilder::new(Arc::clone(self), name::HandlerName::new(name), true)
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        self.limits.default_timeout
    }

    pub(crate) fn next_id(&self) -> MessageId {
        self.ids.next()
    }

    /// The live link to `peer`.
    pub(crate) fn link(&self, peer: InstanceId) -> Result<BoxedLink> {
        match self.links.get(&peer) {
            Some(link) if link.is_unresponsive() => Err(Error::PeerUnresponsive(peer)),
            Some(link) if !link.is_closed() => Ok(Arc::clone(link.value())),
            Some(_) => Err(Error::PeerLost(peer)),
            None if self.pending.was_lost(peer) => Err(Error::PeerLost(peer)),
            None => Err(Error::UnknownPeer(peer)),
        }
    }

    /// Stops admitting new calls (shutdown).
    pub(crate) fn stop_admitting(&self) {
        // Release: pairs with the Acquire load in `admit`.
        self.admitting.store(false, Ordering::Release);
    }

    /// Whether new calls are admitted.
    pub fn is_admitting(&self) -> bool {
        self.admitting.load(Ordering::Acquire)
    }

    /// The endpoint this manager advertises first: TCP, else shared memory,
    /// else in-process ([`Self::peer_info`] has them all).
    pub fn endpoint(&self) -> Option<&str> {
        let info = &self.peer_info;
        [&info.tcp_endpoint, &info.shm_endpoint, &info.local_endpoint]
            .into_iter()
            .find_map(|ep| ep.as_deref())
    }

    /// Sends raw bytes to the handler `handler` on `target`, fire-and-forget
    /// (the seed's `send_message`): `Ok` once the link took the frame.
    pub async fn send_message(
        self: &Arc<Self>,
        target: InstanceId,
        handler: &str,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        self.active_message(handler)?
            .raw_payload(payload)
            .target_instance(target)
            .execute()
            .await
    }
}

/// The peer's endpoints in the order to try them, with the transport for
/// each, as `policy` allows (see [`NetworkClient::connect_to_peer`]).
pub(crate) fn candidate_endpoints<'a>(
    peer: &'a PeerInfo,
    me: &PeerInfo,
    policy: TransportPolicy,
) -> Vec<(TransportKind, &'a str)> {
    // A peer's info may come from the network (`_register_service`): try a
    // bounded number of its extra endpoints, never all of a hostile list.
    const MAX_EXTRA_ENDPOINTS: usize = 8;
    let mut out = Vec::with_capacity(3);
    if let Some(ep) = &peer.shm_endpoint
        && peer.host_id == me.host_id
        && policy != TransportPolicy::TcpOnly
    {
        out.push((TransportKind::Shm, ep.as_str()));
    }
    if policy == TransportPolicy::ShmOnly {
        return out;
    }
    if policy == TransportPolicy::Auto {
        let extras = peer.extra_endpoints.iter().take(MAX_EXTRA_ENDPOINTS);
        out.extend(extras.filter_map(|ep| Some((TransportKind::of_endpoint(ep)?, ep.as_str()))));
    }
    if let Some(ep) = &peer.tcp_endpoint {
        out.push((TransportKind::Tcp, ep.as_str()));
    }
    if let Some(ep) = &peer.local_endpoint {
        out.push((TransportKind::Local, ep.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(host: &str) -> PeerInfo {
        PeerInfo {
            instance_id: InstanceId::new_random(),
            tcp_endpoint: Some("tcp://10.0.0.1:5000".into()),
            shm_endpoint: Some("shm:///run/am.sock".into()),
            local_endpoint: Some("local://x".into()),
            host_id: host.into(),
            extra_endpoints: vec!["uds:///tmp/a.sock".into(), "bad".into()],
        }
    }

    fn kinds(peer: &PeerInfo, me: &PeerInfo, policy: TransportPolicy) -> Vec<TransportKind> {
        candidate_endpoints(peer, me, policy)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn endpoint_selection_honours_the_policy() {
        use TransportKind::*;
        let (peer, here, there) = (info("h1"), info("h1"), info("h2"));
        let uds = TransportKind::custom("uds");
        assert_eq!(
            kinds(&peer, &here, TransportPolicy::Auto),
            [Shm, uds.clone(), Tcp, Local]
        );
        assert_eq!(
            kinds(&peer, &there, TransportPolicy::Auto),
            [uds, Tcp, Local]
        );
        assert_eq!(kinds(&peer, &here, TransportPolicy::ShmOnly), [Shm]);
        assert!(kinds(&peer, &there, TransportPolicy::ShmOnly).is_empty());
        assert_eq!(kinds(&peer, &here, TransportPolicy::TcpOnly), [Tcp, Local]);
    }

    #[test]
    fn a_hostile_list_of_extra_endpoints_is_cut_short() {
        let mut peer = info("h1");
        peer.extra_endpoints = (0..10_000).map(|i| format!("x{i}://e")).collect();
        let kinds = kinds(&peer, &info("h2"), TransportPolicy::Auto);
        assert_eq!(kinds.len(), 8 + 2);
    }
}
