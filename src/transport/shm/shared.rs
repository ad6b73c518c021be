//! What a transport, its accept loop and its handshakes share: the live
//! links, the settings, and starting a link on both rings once its
//! handshake is done (accepted or connected).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use shm_ring::{Consumer, Producer, RingConfig, WaitPolicy};
use tokio::net::UnixListener;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::link::{LARGE_WINDOW, ShmLink, Tx};
use super::rendezvous::SocketFile;
use super::{
    HandshakeParams, RawLink, RingSpec, ShmConfig, config, handshake, liveness, pool, reader,
    txlock, watch,
};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::stats::LinkCounters;
use crate::transport::Inbox;

/// Handshakes served at once; further connections wait in the backlog.
const MAX_HANDSHAKES: usize = 64;

/// Live links of one transport (removed by each link as it ends).
#[derive(Default)]
pub(crate) struct Registry {
    pub(super) links: DashMap<u64, Arc<ShmLink>>,
    pub(super) emptied: Notify,
}

impl Registry {
    pub(crate) fn remove(&self, serial: u64) {
        self.links.remove(&serial);
        if self.links.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    pub(super) fn snapshot(&self) -> Vec<Arc<ShmLink>> {
        self.links.iter().map(|e| Arc::clone(e.value())).collect()
    }
}

/// What the transport, its accept loop and its handshakes share.
pub(super) struct Shared {
    pub(super) local: InstanceId,
    pub(super) inbox: Inbox,
    pub(super) config: ShmConfig,
    pub(super) ring: RingConfig,
    pub(super) socket: SocketFile,
    pub(super) endpoint: String,
    pub(super) closed: AtomicBool,
    pub(super) stop: CancellationToken,
    pub(super) registry: Arc<Registry>,
    pub(super) serial: AtomicU64,
}

impl Shared {
    pub(super) fn params(&self) -> HandshakeParams {
        HandshakeParams {
            local: self.local,
            max_frame: self.inbox.max_frame,
            policy: self.config.wait_policy(),
            allowed_uids: self.config.allowed_uids().to_vec(),
            timeout: self.config.handshake_timeout(),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// Attaches both rings of a fresh link and starts its two tasks.
    pub(super) fn start_link(&self, raw: RawLink, inbound: bool) -> Result<Arc<ShmLink>> {
        let policy = config::link_policy(self.config.wait_policy(), raw.peer_spins);
        let (mut producer, mut consumer) = attach_rings(&raw)?;
        producer.set_policy(policy);
        let (consumer_policy, spin) = reader_policy(policy);
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
        tokio::spawn(watch::watch_socket(Arc::clone(&link), fd_tx));
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
    pub(super) fn close(&self) -> bool {
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

/// Attaches both rings of a fresh link, after checking that their headers
/// agree with the handshake.
fn attach_rings(raw: &RawLink) -> Result<(Producer, Consumer)> {
    let ring_err = |e| Error::Transport(format!("attaching the shm rings: {e}"));
    let producer =
        Producer::attach(&raw.region, raw.tx.offset, raw.tx_bells.clone()).map_err(ring_err)?;
    let consumer =
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
    Ok((producer, consumer))
}

/// The reader's consumer policy and its own spin, for a link's `policy`.
/// The reader spins itself (see `pump::read_ring`); its consumer parks at
/// once when asked to wait, and notifies unless the link spins.
fn reader_policy(policy: WaitPolicy) -> (WaitPolicy, Option<Duration>) {
    match policy {
        WaitPolicy::Spin => (WaitPolicy::Spin, None),
        WaitPolicy::Adaptive { spin } => (WaitPolicy::Park, Some(spin)),
        WaitPolicy::Park => (WaitPolicy::Park, Some(Duration::ZERO)),
    }
}

pub(super) async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
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
