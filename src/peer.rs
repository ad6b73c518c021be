//! What a peer advertises so others can reach it.

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;

/// How to reach one manager: its identity and its endpoints.
///
/// Serializable so it can be handed to other processes out of band
/// (environment, file, a discovery service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The manager's instance id.
    pub instance_id: InstanceId,
    /// Routable TCP endpoint (`tcp://host:port`), never `0.0.0.0`.
    pub tcp_endpoint: Option<String>,
    /// Shared-memory rendezvous endpoint (`shm://<socket path>`), if enabled.
    pub shm_endpoint: Option<String>,
    /// In-process endpoint (`local://<id>`), reachable from the same process only.
    pub local_endpoint: Option<String>,
    /// Identity of the host (hostname and boot id), used to tell local peers.
    pub host_id: String,
}

impl PeerInfo {
    /// Every endpoint this peer advertises, most preferred first.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        [&self.shm_endpoint, &self.tcp_endpoint, &self.local_endpoint]
            .into_iter()
            .filter_map(|e| e.as_deref())
    }
}

/// This host's identity: hostname plus kernel boot id, so two containers with
/// the same hostname on different machines are not taken for one host.
pub fn host_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", name.trim(), boot.trim())
}
