//! Reaching a peer from its address alone: `NetworkClient::connect_to_address`.
//!
//! A worker is usually started knowing only where its leader listens. The
//! client dials that endpoint without naming an instance (transports accept
//! whichever instance answers there), asks it for its `PeerInfo`
//! (`_discover`), then moves to the best transport both ends share, as
//! `connect_to_peer` would have picked.

use std::sync::Arc;

use crate::client::{NetworkClient, candidate_endpoints};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::peer::PeerInfo;
use crate::transport::{BoxedLink, TransportKind};

impl NetworkClient {
    /// Connects to the manager listening at `endpoint` (`tcp://host:port`,
    /// `shm://<rendezvous socket path>` or the bare absolute path, or any scheme this manager has a
    /// transport for) and returns its `PeerInfo`. When the peer is also
    /// reachable over a better transport (shared memory on this host), the
    /// link moves there, as [`connect_to_peer`](Self::connect_to_peer) would
    /// pick; the transport policy is honoured.
    pub async fn connect_to_address(self: &Arc<Self>, endpoint: &str) -> Result<PeerInfo> {
        // A bare absolute path is a rendezvous socket.
        let owned;
        let endpoint = if endpoint.starts_with('/') {
            owned = format!("{}{endpoint}", crate::transport::shm::SCHEME);
            owned.as_str()
        } else {
            endpoint
        };
        if let Some(rest) = endpoint.strip_prefix("tcp://")
            && !rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(Error::Config(format!(
                "{endpoint:?}: expected tcp://host:port"
            )));
        }
        let kind = TransportKind::of_endpoint(endpoint)
            .ok_or_else(|| Error::Config(format!("{endpoint:?} has no scheme://")))?;
        let transport = self
            .transports
            .iter()
            .find(|t| t.kind() == kind)
            .ok_or_else(|| Error::Config(format!("no {kind} transport on this manager")))?;
        let link = transport
            .connect(anonymous_id(&kind, endpoint), endpoint)
            .await?;
        let peer = link.peer();
        self.adopt(peer, link);
        let info = self.discover(peer).await?;
        if info.instance_id != peer {
            self.disconnect_from_peer(peer);
            return Err(Error::Refused(format!(
                "the instance at {endpoint} calls itself {}",
                info.instance_id
            )));
        }
        self.upgrade(&info, &kind).await?;
        tracing::debug!(%peer, endpoint, "connected by address");
        Ok(info)
    }

    /// Keeps `link` as the link to `peer` unless a live one is there already.
    fn adopt(&self, peer: InstanceId, link: BoxedLink) {
        let keep_old = self.links.get(&peer).is_some_and(|old| !old.is_closed());
        if keep_old {
            link.close();
        } else {
            self.links.insert(peer, link);
            self.pending.forget_loss(peer);
        }
    }

    /// Moves the link to the first transport the policy ranks above `used`;
    /// without one, a link the policy does not allow is refused.
    async fn upgrade(&self, info: &PeerInfo, used: &TransportKind) -> Result<()> {
        let current = self.links.get(&info.instance_id).map(|l| l.kind());
        let candidates = candidate_endpoints(info, &self.peer_info, self.transport_policy);
        let mut last_err = None;
        for (kind, endpoint) in candidates {
            if Some(&kind) == current.as_ref() {
                return Ok(());
            }
            let Some(transport) = self.transports.iter().find(|t| t.kind() == kind) else {
                continue;
            };
            match transport.connect(info.instance_id, endpoint).await {
                Ok(link) => {
                    if let Some(old) = self.links.insert(info.instance_id, link) {
                        old.close();
                    }
                    return Ok(());
                }
                Err(err) => last_err = Some(err),
            }
        }
        self.disconnect_from_peer(info.instance_id);
        Err(last_err.unwrap_or_else(|| {
            Error::Refused(format!(
                "the transport policy does not allow reaching {} over {used}",
                info.instance_id
            ))
        }))
    }
}

/// The instance to name when dialling an address: nil (whoever answers),
/// except in-process endpoints, which carry the instance id themselves.
fn anonymous_id(kind: &TransportKind, endpoint: &str) -> InstanceId {
    if *kind == TransportKind::Local {
        let id = endpoint.strip_prefix("local://").unwrap_or_default();
        if let Ok(uuid) = uuid::Uuid::parse_str(id) {
            return uuid.into();
        }
    }
    InstanceId::nil()
}
