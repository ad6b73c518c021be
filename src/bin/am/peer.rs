//! Reaching the peer a subcommand talks to.

use std::sync::Arc;
use std::time::Duration;

use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, NetworkClient, PeerInfo,
    TransportKind, TransportPolicy,
};
use clap::Args;

use crate::CliError;

/// The peer to talk to.
#[derive(Debug, Args)]
pub struct Target {
    /// `tcp://host:port`, an shm rendezvous socket (`shm:///path.sock` or
    /// `/path.sock`), or the PeerInfo JSON line `am serve` prints.
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// Budget for connecting and for each call, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    pub timeout: f64,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// A local manager connected to the target.
pub struct Session {
    /// The local manager (shut down by [`Session::close`]).
    pub manager: ActiveMessageManager,
    /// Its client.
    pub client: Arc<NetworkClient>,
    /// The target's instance id.
    pub peer: InstanceId,
}

impl Session {
    /// Starts a manager and connects it to `target`.
    pub async fn open(target: &Target) -> Result<Self, CliError> {
        let timeout = Duration::from_secs_f64(target.timeout);
        let mut builder = ActiveMessageManagerBuilder::new()
            .endpoint("tcp://127.0.0.1:0")
            .default_timeout(timeout);
        if let Ok(secret) = std::env::var("AM_AUTH_SECRET") {
            builder = builder.auth_secret(secret);
        }
        let text = target.address.trim();
        if text.starts_with("tcp://") {
            // A TCP address is what the operator wants measured and used,
            // even when the peer is on this host.
            builder = builder.transport_policy(TransportPolicy::TcpOnly);
        }
        let manager = builder.build().await?;
        let client = manager.client();
        let peer = if text.starts_with('{') {
            let info: PeerInfo = serde_json::from_str(text)
                .map_err(|e| CliError::Json(format!("{:?}", target.address), e))?;
            client.connect_to_peer(info.clone()).await?;
            info.instance_id
        } else {
            client.connect_to_address(text).await?.instance_id
        };
        Ok(Self {
            manager,
            client,
            peer,
        })
    }

    /// The transport carrying the link to the target.
    pub fn transport(&self) -> Option<TransportKind> {
        self.client
            .list_peers()
            .into_iter()
            .find(|p| p.instance_id == self.peer && !p.inbound)
            .map(|p| p.transport)
    }

    /// Shuts the local manager down.
    pub async fn close(self) -> Result<(), CliError> {
        self.manager.shutdown().await?;
        Ok(())
    }
}
