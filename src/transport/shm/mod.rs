//! Shared-memory transport: peers on one host exchange frames through a pair
//! of lock-free SPSC rings (one per direction) in one sealed memfd, woken by
//! eventfd doorbells. No socket on the data path.
//!
//! # Life of a link
//! - Each transport listens on a rendezvous socket `am-<instance>.sock` in a
//!   private directory (mode 0700, see [`ShmConfig`]); its endpoint is
//!   `shm://<absolute socket path>`.
//! - A client connects and says hello; the server checks `SO_PEERCRED` and
//!   the expected identity, creates the memfd with both rings and four
//!   eventfds, and passes them with `SCM_RIGHTS` (the handshake module).
//! - The socket stays open for the link's life: end of file means the peer
//!   is gone (also after SIGKILL). Both rings are then closed (waking any
//!   parked reader or writer), senders get `PeerLost`, and
//!   `LinkEvents::on_link_lost` is called once, on both sides.
//! - Frames are encoded straight into ring records and read in place (same
//!   uid) or from a private copy (other uids). Frames larger than a record
//!   travel through the link's pooled large-buffer area (the pool module): sealed
//!   memfds passed once each, reused for every later frame, referenced by a
//!   small ring record. Only a frame beyond the area's cap travels in a
//!   memfd of its own.
//! - Anything malformed in a peer's ring (corrupt indices or records,
//!   undecodable frames, a frame claiming another sender) is reported with
//!   `on_protocol_error` and drops that link only.
//!
//! Nothing is ever created in `/dev/shm`: memfds have no name, and the
//! kernel frees them when the last mapping and descriptor close.

mod batch;
pub(crate) mod config;
mod encoded;
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub(crate) mod handshake;
mod inbound;
mod large;
mod link;
mod liveness;
pub(crate) mod loan;
pub(crate) mod pool;
mod pooled;
mod pump;
mod reader;
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub(crate) mod rendezvous;
mod room;
mod shared;
mod txlock;
mod waiters;
mod watch;
mod write;

pub use config::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_POOL_CAP, DEFAULT_RING_CAPACITY, DEFAULT_SPIN, ShmConfig,
};
pub(crate) use handshake::{HandshakeParams, RawLink, RingSpec};
pub use pool::{PoolUsage, pool_usage};

/// The link handshake, for this crate's tests of hostile and foreign-uid
/// peers (feature `test-util`). Not a stable API.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod raw {
    pub use super::handshake::{HandshakeParams, RawLink, RingSpec, connect};
    pub use super::rendezvous::check_peer_uid;
}

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

pub(crate) use self::shared::Registry;
use self::shared::{Shared, accept_loop};
use super::{BoxFuture, BoxedLink, Inbox, ThinTransport, TransportKind};
use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// Endpoint scheme of the shared-memory transport.
pub const SCHEME: &str = "shm://";
/// How long `shutdown` waits for the links' reader tasks to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// The shared-memory transport of one manager.
pub struct ShmTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ShmTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmTransport")
            .field("endpoint", &self.shared.endpoint)
            .field("links", &self.shared.registry.links.len())
            .finish_non_exhaustive()
    }
}

impl ShmTransport {
    /// Prepares the rendezvous directory, binds `am-<local>.sock` there
    /// (replacing a stale socket file, refusing a live one) and starts
    /// accepting links. Sockets left in the directory by dead processes
    /// (nobody accepts, older than 10 s) are removed on the way. Must be
    /// called inside a tokio runtime.
    pub fn bind(config: ShmConfig, local: InstanceId, inbox: Inbox) -> Result<Arc<Self>> {
        config.validate()?;
        let ring = config.ring_config()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "the shm transport must be bound inside a tokio runtime".into(),
            ));
        }
        let dir = config::prepare_dir(&config.dir())?;
        rendezvous::sweep_stale(&dir);
        let path = config::socket_path(&dir, local)?;
        let (listener, socket) = rendezvous::bind(&path)?;
        let listener = UnixListener::from_std(listener)?;
        let shared = Arc::new(Shared {
            local,
            endpoint: format!("{SCHEME}{}", path.display()),
            inbox,
            config,
            ring,
            socket,
            closed: AtomicBool::new(false),
            stop: CancellationToken::new(),
            registry: Arc::default(),
            serial: AtomicU64::new(0),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        tracing::debug!(%local, endpoint = %shared.endpoint, "shm transport bound");
        Ok(Arc::new(Self { shared }))
    }

    /// The rendezvous socket's path.
    pub fn socket_path(&self) -> &Path {
        self.shared.socket.path()
    }

    /// The handshake parameters this transport uses (for raw peers in tests).
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn handshake_params(&self) -> HandshakeParams {
        self.shared.params()
    }

    /// Links currently up (accepted and connected).
    pub fn link_count(&self) -> usize {
        self.shared.registry.links.len()
    }
}

/// The socket path in an `shm://` endpoint.
pub fn endpoint_path(endpoint: &str) -> Result<PathBuf> {
    match endpoint.strip_prefix(SCHEME) {
        Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
        _ => Err(Error::Transport(format!(
            "{endpoint:?} is not an shm endpoint (shm:///absolute/path.sock)"
        ))),
    }
}

impl ThinTransport for ShmTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Shm
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(self.shared.endpoint.clone())
    }

    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<BoxedLink>> {
        Box::pin(async move {
            let path = endpoint_path(endpoint)?;
            if self.shared.is_closed() {
                return Err(Error::ShuttingDown);
            }
            let raw = handshake::connect(&path, peer, &self.shared.params()).await?;
            let link = self.shared.start_link(raw, false)?;
            // A peer killed with SIGKILL leaves its socket file behind: reap it.
            let lost = link.lost.clone();
            let stop = self.shared.stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = lost.cancelled() => rendezvous::reap_after_loss(path).await,
                }
            });
            Ok(link as BoxedLink)
        })
    }

    fn inbound_links(&self) -> Vec<BoxedLink> {
        let links = self.shared.registry.snapshot().into_iter();
        links
            .filter(|l| l.inbound)
            .map(|l| l as BoxedLink)
            .collect()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.shared.close() {
                return;
            }
            let registry: Weak<Registry> = Arc::downgrade(&self.shared.registry);
            let wait = async {
                while let Some(registry) = registry.upgrade() {
                    let emptied = registry.emptied.notified();
                    tokio::pin!(emptied);
                    // Register before checking, so a link leaving in between is not missed.
                    emptied.as_mut().enable();
                    if registry.links.is_empty() {
                        return;
                    }
                    emptied.await;
                }
            };
            if tokio::time::timeout(SHUTDOWN_WAIT, wait).await.is_err() {
                tracing::debug!("shm shutdown: some links still draining");
            }
        })
    }
}

impl Drop for ShmTransport {
    fn drop(&mut self) {
        self.shared.close();
    }
}
