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
mod txlock;
mod waiters;
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use shm_ring::{Consumer, Producer, RingConfig, WaitPolicy};
use tokio::net::UnixListener;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use self::link::{LARGE_WINDOW, ShmLink, Tx};
use self::rendezvous::SocketFile;
use super::{BoxFuture, BoxedLink, Inbox, ThinTransport, TransportKind};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::stats::LinkCounters;

/// Endpoint scheme of the shared-memory transport.
pub const SCHEME: &str = "shm://";
/// Handshakes served at once; further connections wait in the backlog.
const MAX_HANDSHAKES: usize = 64;
/// How long `shutdown` waits for the links' reader tasks to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Live links of one transport (removed by each link as it ends).
#[derive(Default)]
pub(crate) struct Registry {
    links: DashMap<u64, Arc<ShmLink>>,
    emptied: Notify,
}

impl Registry {
    pub(crate) fn remove(&self, serial: u64) {
        self.links.remove(&serial);
        if self.links.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    fn snapshot(&self) -> Vec<Arc<ShmLink>> {
        self.links.iter().map(|e| Arc::clone(e.value())).collect()
    }
}

/// What the transport, its accept loop and its handshakes share.
struct Shared {
    local: InstanceId,
    inbox: Inbox,
    config: ShmConfig,
    ring: RingConfig,
    socket: SocketFile,
    endpoint: String,
    closed: AtomicBool,
    stop: CancellationToken,
    registry: Arc<Registry>,
    serial: AtomicU64,
}

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

impl Shared {
    fn params(&self) -> HandshakeParams {
        HandshakeParams {
            local: self.local,
            max_frame: self.inbox.max_frame,
            policy: self.config.wait_policy(),
            allowed_uids: self.config.allowed_uids().to_vec(),
            timeout: self.config.handshake_timeout(),
        }
    }

    fn is_closed(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// Attaches both rings of a fresh link and starts its two tasks.
    fn start_link(&self, raw: RawLink, inbound: bool) -> Result<Arc<ShmLink>> {
        let ring_err = |e| Error::Transport(format!("attaching the shm rings: {e}"));
        let policy = config::link_policy(self.config.wait_policy(), raw.peer_spins);
        let mut producer =
            Producer::attach(&raw.region, raw.tx.offset, raw.tx_bells.clone()).map_err(ring_err)?;
        let mut consumer =
            Consumer::attach(&raw.region, raw.rx.offset, raw.rx_bells.clone()).map_err(ring_err)?;
        let geometry = |cap, max, spec: &RingSpec| {
            cap == spec.config.capacity() && max == spec.config.max_record()
        };
        if !geometry(producer.capacity(), producer.max_record(), &raw.tx)
            || !geometry(consumer.capacity(), consumer.max_record(), &raw.rx)
        {
            return Err(Error::Transport(
                "shm ring headers disagree with the handshake".into(),
            ));
        }
        producer.set_policy(policy);
        // The reader spins itself (see `pump::read_ring`); its consumer
        // parks at once when asked to wait, and notifies unless the link spins.
        let (consumer_policy, spin) = match policy {
            WaitPolicy::Spin => (WaitPolicy::Spin, None),
            WaitPolicy::Adaptive { spin } => (WaitPolicy::Park, Some(spin)),
            WaitPolicy::Park => (WaitPolicy::Park, Some(Duration::ZERO)),
        };
        consumer.set_policy(consumer_policy);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(ShmLink {
            peer: raw.peer,
            local: self.local,
            max_record: producer.max_record(),
            closers: [producer.closer(), consumer.closer()],
            counters: LinkCounters::with_rings(producer.counters(), consumer.counters()),
            tx: txlock::TxLock::new(Tx::new(producer)),
            peer_max_frame: raw.peer_max_frame,
            stream: raw.stream,
            closed: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            lost: CancellationToken::new(),
            large_window: Semaphore::new(LARGE_WINDOW),
            pool: Arc::new(pool::TxPool::new(self.config.pool_cap())),
            events: Arc::clone(&self.inbox.events),
            registry: Arc::downgrade(&self.registry),
            serial,
            inbound,
            born: std::time::Instant::now(),
            heard_ms: AtomicU64::new(0),
            unresponsive: AtomicBool::new(false),
            reader: reader::ReaderSlot::default(),
        });
        self.registry.links.insert(serial, Arc::clone(&link));
        let copy = raw.peer_uid != config::own_uid();
        let (fd_tx, fd_rx) = mpsc::channel(LARGE_WINDOW);
        tokio::spawn(pump::watch_socket(Arc::clone(&link), fd_tx));
        if let Some(timeout) = self.config.liveness_timeout() {
            tokio::spawn(liveness::probe(Arc::clone(&link), timeout));
        }
        reader::spawn(
            Arc::clone(&link),
            consumer,
            fd_rx,
            self.inbox.clone(),
            copy,
            spin,
        );
        tracing::debug!(local = %self.local, peer = %link.peer, copy, ?policy, "shm link up");
        if self.is_closed() {
            link.shut();
        }
        Ok(link)
    }

    /// Stops accepting, removes the socket file, closes every link.
    fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.stop.cancel();
        self.socket.remove();
        for link in self.registry.snapshot() {
            crate::transport::PeerLink::close(&*link);
        }
        true
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shared.stop.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(%e, "shm rendezvous accept failed");
                    // Out of descriptors and the like: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shared.stop.cancelled() => return,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let params = shared.params();
            let accepting = || !shared.is_closed();
            match handshake::accept(stream, &params, shared.ring, accepting).await {
                Ok(raw) => {
                    let peer = raw.peer;
                    if let Err(e) = shared.start_link(raw, true) {
                        tracing::warn!(%peer, %e, "shm link setup failed");
                    }
                }
                Err(e) => tracing::debug!(%e, "shm handshake failed"),
            }
        });
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
