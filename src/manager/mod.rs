//! `ActiveMessageManager`: owns the transports, the dispatcher, the response
//! table and the lifecycle of one participant.

mod builder;
mod events;

pub use builder::ActiveMessageManagerBuilder;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;

use crate::client::NetworkClient;
use crate::error::{Error, Result};
use crate::handler::HandlerRef;
use crate::handler::registry::{HandlerEvent, HandlerRegistry};
use crate::ids::InstanceId;
use crate::peer::PeerInfo;
use crate::runtime::dispatcher::Dispatcher;
use crate::stats::StatsSnapshot;
use crate::system::types::HealthCheckResponse;

/// One participant: register handlers on it, send through its [`client`](Self::client).
/// Cloning gives another handle to the same manager.
#[derive(Clone)]
pub struct ActiveMessageManager {
    inner: Arc<ManagerInner>,
}

impl std::fmt::Debug for ActiveMessageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveMessageManager")
            .field("instance_id", &self.inner.client.instance_id())
            .finish_non_exhaustive()
    }
}

pub(crate) struct ManagerInner {
    pub(crate) client: Arc<NetworkClient>,
    pub(crate) registry: Arc<HandlerRegistry>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) root_cancel: CancellationToken,
    pub(crate) dispatcher_stop: CancellationToken,
    pub(crate) started: Instant,
    pub(crate) shutdown_timeout: Duration,
    /// `None`: trusted callers only; `Some(allow)`: everyone or no one.
    pub(crate) allow_remote_shutdown: Option<bool>,
    /// Set once shutdown completed: links it could not drain.
    shutdown_done: OnceCell<usize>,
}

impl ActiveMessageManager {
    /// This manager's instance id.
    pub fn instance_id(&self) -> InstanceId {
        self.inner.client.instance_id()
    }

    /// The client that sends from this manager.
    pub fn client(&self) -> Arc<NetworkClient> {
        Arc::clone(&self.inner.client)
    }

    /// What other peers need to connect here (routable endpoints only).
    pub async fn peer_info(&self) -> PeerInfo {
        self.inner.client.peer_info()
    }

    /// Registers a user handler; it is callable as soon as this returns.
    /// Names starting with `_` are reserved and refused.
    pub async fn register_handler(
        &self,
        name: impl Into<String>,
        handler: HandlerRef,
    ) -> Result<()> {
        self.inner.registry.register(name.into(), handler)
    }

    /// Removes a user handler; returns whether it was registered.
    pub async fn deregister_handler(&self, name: &str) -> Result<bool> {
        self.inner.registry.deregister(name)
    }

    /// Every registered handler name (system handlers included), sorted.
    pub async fn list_handlers(&self) -> Vec<String> {
        self.inner.registry.names()
    }

    /// The handler registry (cohorts register their system handlers there).
    pub(crate) fn registry(&self) -> &Arc<HandlerRegistry> {
        &self.inner.registry
    }

    /// Registration and removal events.
    pub fn handler_events(&self) -> broadcast::Receiver<HandlerEvent> {
        self.inner.registry.subscribe()
    }

    /// The root cancellation token; `shutdown()` cancels it, and cancelling
    /// it from outside shuts the manager down (as `shutdown()` does).
    pub fn cancel_token(&self) -> CancellationToken {
        self.inner.root_cancel.clone()
    }

    /// Counters, in-flight work and connected peers (with their transport).
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats()
    }

    /// Graceful shutdown: stop admitting (new calls get `ShuttingDown`), let
    /// running handlers finish within the drain deadline, fail calls still
    /// waiting on peers, let every link deliver what it accepted (within the
    /// same timeout again), say goodbye on every link, cancel the root token.
    /// Idempotent; concurrent callers all wait for the same shutdown.
    ///
    /// Fails with [`Error::ShutdownIncomplete`] when a link could not
    /// confirm before its deadline that its peer read every message it had
    /// accepted (a peer too slow or stopped): one-way messages reported as
    /// sent to it may not have reached their handler. The manager is shut
    /// down either way.
    pub async fn shutdown(&self) -> Result<()> {
        match self.inner.shutdown().await {
            0 => Ok(()),
            links => Err(Error::ShutdownIncomplete { links }),
        }
    }
}

impl ManagerInner {
    /// Shuts down (once); returns the links left undrained.
    pub(crate) async fn shutdown(&self) -> usize {
        *self.shutdown_done.get_or_init(|| self.run_shutdown()).await
    }

    async fn run_shutdown(&self) -> usize {
        let id = self.client.instance_id();
        tracing::debug!(%id, "shutdown: no longer admitting");
        self.client.stop_admitting();
        let tracker = &self.dispatcher.tracker;
        tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(%id, running = tracker.len(), "shutdown: drain deadline passed, cancelling handlers");
            self.dispatcher.handlers_cancel.cancel();
        }
        self.client.pending.fail_all(|| Error::ShuttingDown);
        self.client.streams.calls.fail_all(|| Error::ShuttingDown);
        let mut undrained = 0;
        for transport in &self.client.transports {
            transport.shutdown().await;
            undrained += transport.undelivered();
        }
        self.client.links.clear();
        self.dispatcher_stop.cancel();
        self.root_cancel.cancel();
        tracing::debug!(%id, undrained, "shutdown complete");
        undrained
    }

    pub(crate) fn health(&self) -> HealthCheckResponse {
        HealthCheckResponse {
            status: if self.client.is_admitting() {
                "ok"
            } else {
                "draining"
            }
            .to_owned(),
            instance_id: self.client.instance_id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            handlers: self.registry.names().len(),
            handlers_running: self.dispatcher.tracker.len(),
            calls_in_flight: self.client.pending.len(),
        }
    }

    pub(crate) fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            instance_id: self.client.instance_id(),
            counters: self.client.counters.values(),
            late_replies: self.client.pending.late_replies(),
            calls_in_flight: self.client.pending.len(),
            handlers_running: self.dispatcher.tracker.len(),
            peers: self.client.list_peers(),
            handlers: self.registry.stats(),
        }
    }
}

impl Drop for ManagerInner {
    fn drop(&mut self) {
        // Dropped without shutdown(): stop the dispatcher loop at least.
        self.dispatcher_stop.cancel();
        self.dispatcher.handlers_cancel.cancel();
    }
}
