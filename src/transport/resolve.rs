//! From an address to the instance listening there.
//!
//! [`crate::NetworkClient::connect_to_peer`] checks that the instance at an
//! endpoint is the one a [`PeerInfo`] names. An operator with only an
//! address (`tcp://host:port`, an shm rendezvous path) first learns that
//! instance here, then connects as usual:
//! [`crate::NetworkClient::connect_to_address`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::NetworkClient;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::peer::{PeerInfo, host_id};
use crate::wire::{self, Header, Kind};

/// Largest frame a probe accepts back (a pong or a short error answer).
const PROBE_MAX_FRAME: usize = 64 * 1024;

/// A parsed operator address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `tcp://host:port`.
    Tcp(String),
    /// An shm rendezvous socket: `shm:///path` or a bare path.
    Shm(PathBuf),
}

impl Address {
    /// Parses `tcp://host:port`, `shm:///path.sock` or `/path.sock`.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("tcp://") {
            return match rest.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Self::Tcp(text.to_owned()))
                }
                _ => Err(Error::Config(format!("{text:?}: expected tcp://host:port"))),
            };
        }
        let path = text.strip_prefix(super::shm::SCHEME).unwrap_or(text);
        if path.starts_with('/') {
            return Ok(Self::Shm(PathBuf::from(path)));
        }
        Err(Error::Config(format!(
            "{text:?}: expected tcp://host:port, shm:///path or an absolute socket path"
        )))
    }

    /// The instance listening at this address, asked within `timeout`.
    pub async fn identify(&self, timeout: Duration) -> Result<InstanceId> {
        match self {
            Self::Shm(path) => super::shm::identify::identify(path, timeout).await,
            Self::Tcp(endpoint) => {
                let endpoint = endpoint.clone();
                tokio::task::spawn_blocking(move || probe_tcp(&endpoint, timeout))
                    .await
                    .map_err(|e| Error::transport(format!("tcp probe: {e}")))?
            }
        }
    }

    /// A [`PeerInfo`] naming `instance` at this address only.
    pub fn peer_info(&self, instance: InstanceId) -> PeerInfo {
        let (tcp, shm) = match self {
            Self::Tcp(ep) => (Some(ep.clone()), None),
            Self::Shm(path) => (
                None,
                Some(format!("{}{}", super::shm::SCHEME, path.display())),
            ),
        };
        PeerInfo {
            instance_id: instance,
            tcp_endpoint: tcp,
            shm_endpoint: shm,
            local_endpoint: None,
            // A rendezvous socket is reachable from this host only.
            host_id: host_id(),
            extra_endpoints: Vec::new(),
        }
    }
}

impl NetworkClient {
    /// Connects to whichever instance listens at `address`
    /// (`tcp://host:port`, `shm:///path.sock` or an absolute socket path)
    /// and returns the [`PeerInfo`] used, whose id names it from then on.
    /// The instance is asked for its id within the default timeout, then
    /// connected to with the usual identity check.
    pub async fn connect_to_address(&self, address: &str) -> Result<PeerInfo> {
        let address = Address::parse(address)?;
        let instance = address.identify(self.default_timeout()).await?;
        let info = address.peer_info(instance);
        self.connect_to_peer(info.clone()).await?;
        Ok(info)
    }
}

/// Sends one heartbeat probe from a throwaway DEALER and reads who answers.
/// Any answer to the probe names its sender: a pong, or (from a server that
/// wants authentication) an error saying so.
fn probe_tcp(endpoint: &str, timeout: Duration) -> Result<InstanceId> {
    let err = |what: &'static str| move |e: zmq::Error| Error::transport(format!("{what}: {e}"));
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).map_err(err("zmq socket"))?;
    socket.set_linger(0).map_err(err("zmq linger"))?;
    socket
        .set_maxmsgsize(PROBE_MAX_FRAME as i64)
        .map_err(err("zmq maxmsgsize"))?;
    socket.connect(endpoint).map_err(err("zmq connect"))?;
    let me = InstanceId::new_random();
    let probe_id = MessageId(1 << 63 | 1);
    let limit = (PROBE_MAX_FRAME as u64).to_le_bytes();
    let probe = wire::encode_to_vec(&Header::new(Kind::Heartbeat, probe_id, me), "", &limit);
    socket.send(probe, 0).map_err(err("zmq send"))?;
    let deadline = Instant::now() + timeout;
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
        if ms == 0 || socket.poll(zmq::POLLIN, ms).map_err(err("zmq poll"))? == 0 {
            return Err(Error::transport(format!(
                "no answer from {endpoint} within {timeout:?}"
            )));
        }
        let msg = socket.recv_msg(0).map_err(err("zmq recv"))?;
        if let Ok(frame) = wire::decode(&msg, PROBE_MAX_FRAME)
            && frame.header.correlation_id == probe_id
        {
            break frame.header.sender;
        }
    };
    // Tell the server this connection is done, so it keeps no reverse link.
    let bye = wire::encode_to_vec(&Header::new(Kind::Goodbye, MessageId(2), me), "", &[]);
    let _ = socket.send(bye, zmq::DONTWAIT);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_address_forms() {
        assert_eq!(
            Address::parse("tcp://127.0.0.1:5555").unwrap(),
            Address::Tcp("tcp://127.0.0.1:5555".into())
        );
        assert_eq!(
            Address::parse("shm:///run/a.sock").unwrap(),
            Address::Shm("/run/a.sock".into())
        );
        assert_eq!(
            Address::parse("/run/a.sock").unwrap(),
            Address::Shm("/run/a.sock".into())
        );
        for bad in [
            "tcp://nohost",
            "tcp://:1",
            "tcp://h:99999",
            "relative.sock",
            "",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
