//! `ActiveMessageManagerBuilder`: endpoints, limits, lifecycle settings,
//! and the transports a user plugs in.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod binding;

use super::events::RuntimeEvents;
use super::{ActiveMessageManager, ManagerInner};
use crate::client::{ClientLimits, NetworkClient, TransportPolicy};
use crate::error::{Error, Result};
use crate::handler::registry::HandlerRegistry;
use crate::ids::{InstanceId, MAX_HANDLER_NAME, MessageIdGen};
use crate::runtime::dispatcher::Dispatcher;
use crate::runtime::pending::PendingTable;
use crate::stats::Counters;
use crate::transport::shm::{self, ShmConfig};
use crate::transport::zmq::AuthSecret;
use crate::transport::{Inbox, InlineDispatch, InlineSlot, SharedFactory, TransportFactory};
use crate::{WaitPolicy, system, wire};

/// The environment variable holding the TCP shared secret when
/// [`ActiveMessageManagerBuilder::auth_secret`] is not called.
pub(crate) const AUTH_SECRET_ENV: &str = "AM_AUTH_SECRET";

/// Configures and starts an [`ActiveMessageManager`].
#[derive(Debug, Clone)]
pub struct ActiveMessageManagerBuilder {
    endpoint: Option<String>,
    cancel: Option<CancellationToken>,
    max_concurrent_handlers: usize,
    inbox_capacity: usize,
    max_message_bytes: usize,
    default_timeout: Duration,
    heartbeat_interval: Duration,
    shutdown_timeout: Duration,
    allow_remote_shutdown: Option<bool>,
    auth_secret: Option<Vec<u8>>,
    shm: bool,
    shm_config: ShmConfig,
    transport_policy: TransportPolicy,
    custom: Vec<SharedFactory>,
}

impl Default for ActiveMessageManagerBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            cancel: None,
            max_concurrent_handlers: 1024,
            inbox_capacity: 1024,
            max_message_bytes: 512 << 20,
            default_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(10),
            allow_remote_shutdown: None,
            auth_secret: None,
            shm: cfg!(target_os = "linux"),
            shm_config: ShmConfig::default(),
            transport_policy: TransportPolicy::Auto,
            custom: Vec::new(),
        }
    }
}

impl ActiveMessageManagerBuilder {
    /// A builder with defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where to listen: `tcp://host:port` (port 0 picks a free port; a
    /// wildcard host is advertised as a routable address), `local://` for an
    /// in-process manager, or `shm://` for shared memory without TCP. The
    /// shared-memory transport is bound beside `tcp://` and `local://` too
    /// unless [`shm(false)`](Self::shm). Required.
    ///
    /// `ipc://<dir>` (as the seed's `ipc:///...` endpoints) also means shared
    /// memory without TCP, with `<dir>` (absolute) as the rendezvous directory
    /// (created with mode 0700, see [`shm_dir`](Self::shm_dir)); a bare `ipc://`
    /// uses the default directory. It maps to shared memory rather than to a
    /// socket transport because shared memory is this crate's local path: the
    /// same rendezvous socket, peer-credential check and peer-loss detection,
    /// with messages in rings instead of copied through the kernel. The peer
    /// info advertises the resulting `shm://` endpoint.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Uses `token` as the root cancellation token (a child is not made).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Most handlers running at once (default 1024). When all run, the
    /// manager stops reading invocations and senders wait.
    pub fn max_concurrent_handlers(mut self, limit: usize) -> Self {
        self.max_concurrent_handlers = limit;
        self
    }

    /// Invocations buffered between the transports and the dispatcher (default 1024).
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.inbox_capacity = capacity;
        self
    }

    /// Largest payload sent or accepted, in bytes (default 512 MiB: a 256 MiB
    /// tensor fits; over shared memory such payloads travel through the
    /// link's pooled area, over TCP libzmq refuses larger messages).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Default budget of a call (default 30 s); `MessageBuilder::timeout` overrides it.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Link heartbeat interval (default 250 ms); a link silent for three
    /// intervals is lost.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long shutdown waits for running handlers (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Who may shut this manager down with `_request_shutdown`: `true`
    /// anyone, `false` no one. Unset (the default), only trusted callers:
    /// shared-memory and in-process peers, and TCP peers that authenticated
    /// with the [shared secret](Self::auth_secret).
    pub fn allow_remote_shutdown(mut self, allow: bool) -> Self {
        self.allow_remote_shutdown = Some(allow);
        self
    }

    /// The shared secret TCP connections must prove they know, both ways
    /// (HMAC-SHA256 challenge-response once per connection; see
    /// `docs/security.md`). When not set, the environment variable
    /// `AM_AUTH_SECRET` is used if it is set and not empty; without either,
    /// TCP peers are not authenticated. An empty secret fails `build`.
    pub fn auth_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.auth_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Whether to bind the shared-memory transport (default true on Linux).
    pub fn shm(mut self, enabled: bool) -> Self {
        self.shm = enabled;
        self
    }

    /// The shared-memory rendezvous directory (default
    /// `$XDG_RUNTIME_DIR/active-message`, else `<temp dir>/active-message-<uid>`);
    /// created with mode 0700, refused unless owned by us with mode 0700.
    pub fn shm_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.shm_config = self.shm_config.with_dir(dir);
        self
    }

    /// Data bytes of each shared-memory ring, one per direction per peer
    /// (a power of two; default 1 MiB). Larger frames still travel, in a
    /// dedicated sealed memfd.
    pub fn ring_capacity(mut self, bytes: usize) -> Self {
        self.shm_config = self.shm_config.with_ring_capacity(bytes);
        self
    }

    /// How shared-memory readers and writers wait (default
    /// `Adaptive { spin: 50 µs }`). A link spins only if both ends spin.
    pub fn wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.shm_config = self.shm_config.with_wait_policy(policy);
        self
    }

    /// Also accepts shared-memory peers running as `uid` (default: same uid
    /// only). Their frames are copied out of shared memory before use.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.shm_config = self.shm_config.allow_uid(uid);
        self
    }

    /// Probes shared-memory peers and reports one that answers nothing for
    /// `timeout` as unresponsive: its pending calls fail with
    /// `Error::PeerUnresponsive` (see [`ShmConfig::with_liveness_timeout`]).
    /// Default off: calls to a stopped peer still end at their own deadline.
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.shm_config = self.shm_config.with_liveness_timeout(timeout);
        self
    }

    /// Every shared-memory setting at once (replaces the ones set before).
    pub fn shm_config(mut self, config: ShmConfig) -> Self {
        self.shm_config = config;
        self
    }

    /// Which transports `connect_to_peer` may use (default `Auto`).
    pub fn transport_policy(mut self, policy: TransportPolicy) -> Self {
        self.transport_policy = policy;
        self
    }

    /// Plugs in a transport of your own, bound by `factory` during
    /// [`build`](Self::build) with the manager's instance id and inbox (see
    /// [`crate::transport`] for the contract, `docs/writing-a-transport.md`
    /// for a walk-through). Its kind's scheme must be unique on this manager.
    /// Its endpoint is advertised in
    /// [`PeerInfo::extra_endpoints`](crate::PeerInfo::extra_endpoints), in the
    /// order transports were added, and `connect_to_peer` prefers it to TCP
    /// (after shared memory on the same host) under [`TransportPolicy::Auto`].
    pub fn transport(mut self, factory: impl TransportFactory) -> Self {
        self.custom.push(SharedFactory(Arc::new(factory)));
        self
    }

    fn validate(&self) -> Result<&str> {
        let endpoint = self
            .endpoint
            .as_deref()
            .ok_or_else(|| Error::Config("an endpoint is required".into()))?;
        if self.max_concurrent_handlers == 0 || self.inbox_capacity == 0 {
            return Err(Error::Config(
                "concurrency limit and inbox capacity must be at least 1".into(),
            ));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(Error::Config("heartbeat interval must be positive".into()));
        }
        if self.shm {
            self.effective_shm_config(endpoint)?.validate()?;
        } else if endpoint == shm::SCHEME
            || endpoint.starts_with(binding::IPC_SCHEME)
            || self.transport_policy == TransportPolicy::ShmOnly
        {
            return Err(Error::Config(
                "shared memory is disabled (shm(false)) but the endpoint or policy needs it".into(),
            ));
        }
        Ok(endpoint)
    }

    /// Binds the endpoints, starts the dispatcher and registers the system handlers.
    pub async fn build(self) -> Result<ActiveMessageManager> {
        let endpoint = self.validate()?.to_owned();
        let instance_id = InstanceId::new_random();
        let (invocations, inbox_rx) = crate::transport::invocation_queue(self.inbox_capacity);
        let pending = Arc::new(PendingTable::default());
        let links = Arc::new(DashMap::new());
        let counters = Arc::new(Counters::default());
        let streams = Arc::new(crate::stream::Streams::default());
        let events = Arc::new(RuntimeEvents {
            pending: Arc::clone(&pending),
            links: Arc::clone(&links),
            counters: Arc::clone(&counters),
            streams: Arc::clone(&streams),
        });
        let inbox = Inbox {
            invocations,
            events,
            inline: Arc::new(InlineSlot::default()),
            max_frame: wire::frame_len(MAX_HANDLER_NAME, self.max_message_bytes),
        };
        let mut transports = self.bind_transports(&endpoint, instance_id, &inbox)?;
        if let Err(err) = self.bind_custom(instance_id, &inbox, &mut transports) {
            for transport in &transports {
                transport.shutdown().await;
            }
            return Err(err);
        }
        let peer_info = binding::advertise(instance_id, &transports);
        let client = Arc::new(NetworkClient {
            instance_id,
            peer_info,
            links,
            transports,
            pending,
            ids: MessageIdGen::new(),
            admitting: AtomicBool::new(true),
            counters,
            limits: ClientLimits {
                max_payload: self.max_message_bytes,
                default_timeout: self.default_timeout,
            },
            transport_policy: self.transport_policy,
            streams: Arc::clone(&streams),
        });
        let root_cancel = self.cancel.clone().unwrap_or_default();
        let handlers_cancel = root_cancel.child_token();
        let dispatcher = Arc::new(Dispatcher {
            registry: HandlerRegistry::new(instance_id),
            client: Arc::clone(&client),
            limit: Arc::new(Semaphore::new(self.max_concurrent_handlers)),
            tracker: TaskTracker::new(),
            shared_cancel: crate::handler::HandlerCancel::shared(handlers_cancel.clone()),
            cancel_pool: crate::handler::cancel::CancelPool::new(handlers_cancel.clone()),
            handlers_cancel,
            // Sized up front: its shards would otherwise grow (allocate) the
            // first few times calls overlap on them, long after warm-up.
            running: DashMap::with_capacity(self.max_concurrent_handlers.min(256)),
            streams,
        });
        let inner = Arc::new(ManagerInner {
            client,
            registry: Arc::clone(&dispatcher.registry),
            dispatcher: Arc::clone(&dispatcher),
            root_cancel,
            dispatcher_stop: CancellationToken::new(),
            started: Instant::now(),
            shutdown_timeout: self.shutdown_timeout,
            allow_remote_shutdown: self.allow_remote_shutdown,
            shutdown_done: OnceCell::new(),
        });
        let inline: Arc<dyn InlineDispatch> = dispatcher.clone();
        inbox.inline.set(Arc::downgrade(&inline));
        system::register_all(&inner)?;
        tokio::spawn(dispatcher.run(inbox_rx, inner.dispatcher_stop.clone()));
        tokio::spawn(shutdown_on_root_cancel(Arc::downgrade(&inner)));
        tracing::debug!(%instance_id, %endpoint, "manager started");
        Ok(ActiveMessageManager { inner })
    }

    /// The secret set, else `AM_AUTH_SECRET` from the environment.
    fn secret(&self) -> Result<Option<AuthSecret>> {
        match &self.auth_secret {
            Some(secret) => AuthSecret::new(secret).map(Some),
            None => Ok(std::env::var_os(AUTH_SECRET_ENV)
                .filter(|value| !value.is_empty())
                .map(|value| AuthSecret::new(value.as_encoded_bytes()))
                .transpose()?),
        }
    }
}

/// Cancelling the root token from outside shuts the manager down, as
/// `shutdown()` would (which cancels it too; the second call just waits).
async fn shutdown_on_root_cancel(inner: std::sync::Weak<ManagerInner>) {
    let Some((root, stopped)) = inner
        .upgrade()
        .map(|i| (i.root_cancel.clone(), i.dispatcher_stop.clone()))
    else {
        return;
    };
    tokio::select! {
        () = root.cancelled() => {
            if let Some(inner) = inner.upgrade() {
                tracing::debug!("root token cancelled: shutting down");
                inner.shutdown().await;
            }
        }
        // Dropped without shutdown: nothing left to watch.
        () = stopped.cancelled() => {}
    }
}
