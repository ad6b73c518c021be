//! Binding the transports: the built-in ones the endpoint asks for (with
//! `ipc://<dir>` mapped to shared memory), then the user's, and what the
//! manager advertises from them.

use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::peer::{PeerInfo, host_id};
use crate::transport::local::{self, LocalTransport};
use crate::transport::shm::{self, ShmConfig, ShmTransport};
use crate::transport::zmq::{ZmqConfig, ZmqTransport};
use crate::transport::{BoxedTransport, Inbox, TransportKind};

use super::ActiveMessageManagerBuilder;

/// Scheme of an endpoint that binds the shared-memory transport with the
/// rendezvous directory taken from the path (`ipc:///run/app`).
pub(crate) const IPC_SCHEME: &str = "ipc://";

impl ActiveMessageManagerBuilder {
    /// The shared-memory settings, with the rendezvous directory of an
    /// `ipc://<dir>` endpoint applied.
    pub(super) fn effective_shm_config(&self, endpoint: &str) -> Result<ShmConfig> {
        let Some(path) = endpoint.strip_prefix(IPC_SCHEME) else {
            return Ok(self.shm_config.clone());
        };
        if path.is_empty() {
            return Ok(self.shm_config.clone());
        }
        let dir = std::path::Path::new(path);
        if !dir.is_absolute() {
            return Err(Error::Config(format!(
                "{endpoint:?}: the ipc:// path must be absolute (ipc:///run/app)"
            )));
        }
        let configured = self.shm_config.dir();
        if configured != ShmConfig::default_dir() && configured != dir {
            return Err(Error::Config(format!(
                "{endpoint:?} names another rendezvous directory than shm_dir({})",
                configured.display()
            )));
        }
        Ok(self.shm_config.clone().with_dir(dir))
    }

    pub(super) fn bind_transports(
        &self,
        endpoint: &str,
        id: InstanceId,
        inbox: &Inbox,
    ) -> Result<Vec<BoxedTransport>> {
        let mut transports: Vec<BoxedTransport> = Vec::with_capacity(3 + self.custom.len());
        if endpoint.starts_with("tcp://") {
            let mut config = ZmqConfig::new(endpoint)
                .heartbeat_interval(self.heartbeat_interval)
                .drain_timeout(self.shutdown_timeout);
            if let Some(secret) = self.secret()? {
                config = config.auth_secret(secret);
            }
            transports.push(ZmqTransport::bind(config, id, inbox.clone())?);
        } else if endpoint != local::SCHEME
            && endpoint != shm::SCHEME
            && !endpoint.starts_with(IPC_SCHEME)
        {
            return Err(Error::Config(format!(
                "unsupported endpoint {endpoint:?}: use tcp://host:port, local://, shm:// or ipc://<dir>"
            )));
        }
        if self.shm {
            let config = self.effective_shm_config(endpoint)?;
            transports.push(ShmTransport::bind(config, id, inbox.clone())?);
        }
        transports.push(LocalTransport::bind(id, inbox.clone()));
        Ok(transports)
    }

    /// Binds the user's transports after the built-in ones; each joins
    /// `transports` before it is checked, so the caller shuts it down on error.
    pub(super) fn bind_custom(
        &self,
        id: InstanceId,
        inbox: &Inbox,
        transports: &mut Vec<BoxedTransport>,
    ) -> Result<()> {
        for factory in &self.custom {
            let transport = factory.0.bind(id, inbox.clone())?;
            let kind = transport.kind();
            let endpoint = transport.local_endpoint();
            let taken = transports.iter().any(|t| t.kind() == kind);
            transports.push(transport);
            if !TransportKind::is_valid_scheme(kind.scheme()) {
                return Err(Error::Config(format!(
                    "transport scheme {:?} is not a valid URI scheme",
                    kind.scheme()
                )));
            }
            if taken {
                return Err(Error::Config(format!(
                    "two transports serve the scheme {kind}://"
                )));
            }
            if let Some(endpoint) = endpoint.filter(|e| !kind.serves(e)) {
                return Err(Error::Config(format!(
                    "the {kind} transport advertises {endpoint:?}, not a {kind}:// endpoint"
                )));
            }
        }
        Ok(())
    }
}

/// What this manager advertises: each built-in transport's endpoint in its
/// own field, the plugged-in ones' in registration order.
pub(super) fn advertise(instance_id: InstanceId, transports: &[BoxedTransport]) -> PeerInfo {
    let endpoint_of = |kind: TransportKind| {
        transports
            .iter()
            .find(|t| t.kind() == kind)
            .and_then(|t| t.local_endpoint())
    };
    PeerInfo {
        instance_id,
        tcp_endpoint: endpoint_of(TransportKind::Tcp),
        shm_endpoint: endpoint_of(TransportKind::Shm),
        local_endpoint: endpoint_of(TransportKind::Local),
        host_id: host_id(),
        extra_endpoints: transports
            .iter()
            .filter(|t| matches!(t.kind(), TransportKind::Custom(_)))
            .filter_map(|t| t.local_endpoint())
            .collect(),
    }
}
