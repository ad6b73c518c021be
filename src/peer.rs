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
    /// Endpoints of transports plugged in with
    /// [`ActiveMessageManagerBuilder::transport`](crate::ActiveMessageManagerBuilder::transport)
    /// (`<scheme>://...`), in the order they were registered, which is the
    /// order `connect_to_peer` tries them. Absent in JSON from older peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_endpoints: Vec<String>,
}

impl PeerInfo {
    /// Every endpoint this peer advertises, in `connect_to_peer`'s order of
    /// preference: shared memory, the plugged-in transports', TCP, in-process.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        let shm = self.shm_endpoint.as_deref();
        let rest = [&self.tcp_endpoint, &self.local_endpoint]
            .into_iter()
            .filter_map(|e| e.as_deref());
        shm.into_iter()
            .chain(self.extra_endpoints.iter().map(String::as_str))
            .chain(rest)
    }
}

/// This host's identity: hostname plus kernel boot id, so two containers with
/// the same hostname on different machines are not taken for one host.
pub(crate) fn host_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", name.trim(), boot.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_without_extra_endpoints_still_parses() {
        let id = InstanceId::new_random();
        let old = format!(
            r#"{{"instance_id":"{id}","tcp_endpoint":"tcp://10.0.0.1:1","shm_endpoint":null,"local_endpoint":null,"host_id":"h"}}"#
        );
        let info: PeerInfo = serde_json::from_str(&old).unwrap();
        assert!(info.extra_endpoints.is_empty());
        // And an info without extras serializes as before, so older peers parse it.
        assert_eq!(serde_json::to_string(&info).unwrap(), old);
        let newer = PeerInfo {
            extra_endpoints: vec!["uds:///tmp/a.sock".into()],
            ..info
        };
        let json = serde_json::to_string(&newer).unwrap();
        assert_eq!(serde_json::from_str::<PeerInfo>(&json).unwrap(), newer);
        assert_eq!(
            newer.endpoints().collect::<Vec<_>>(),
            ["uds:///tmp/a.sock", "tcp://10.0.0.1:1"]
        );
    }
}
