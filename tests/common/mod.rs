//! Fixtures shared by the integration tests.
#![allow(dead_code)]

pub mod counting;
/// The demo handlers `am serve` runs, for in-process servers.
#[path = "../../src/bin/am/demo.rs"]
pub mod demo;
pub mod process;
pub mod raw_shm;
pub mod resources;
pub mod seq;
/// The example Unix-domain-socket transport, shared with `examples/uds_transport`.
#[path = "../../examples/uds_transport/transport/mod.rs"]
pub mod uds;

use std::future::Future;
use std::time::{Duration, Instant};

use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, TransportKind, TransportPolicy,
};

/// Which transport a test runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// In-process loopback.
    Local,
    /// ZeroMQ over loopback TCP.
    Tcp,
    /// Shared-memory rings.
    Shm,
    /// The example Unix-domain-socket transport, plugged in through the public API.
    Uds,
}

impl Flavor {
    /// The transport that carries this flavor's links.
    pub fn kind(self) -> TransportKind {
        match self {
            Self::Local => TransportKind::Local,
            Self::Tcp => TransportKind::Tcp,
            Self::Shm => TransportKind::Shm,
            Self::Uds => TransportKind::custom(uds::SCHEME),
        }
    }
}

/// A builder for `flavor` with short, test-friendly budgets.
pub fn builder(flavor: Flavor) -> ActiveMessageManagerBuilder {
    let base = ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5));
    match flavor {
        Flavor::Local => base.endpoint("local://").shm(false),
        Flavor::Tcp => base
            .endpoint("tcp://127.0.0.1:0")
            .transport_policy(TransportPolicy::TcpOnly),
        Flavor::Shm => base
            .endpoint("local://")
            .transport_policy(TransportPolicy::ShmOnly),
        // Without shared memory, the plugged-in transport ranks first.
        Flavor::Uds => base
            .endpoint("local://")
            .shm(false)
            .transport(uds::UdsTransport::factory(uds_socket_path())),
    }
}

/// A fresh socket path for the example UDS transport.
pub fn uds_socket_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("am-uds-{}.sock", uuid::Uuid::new_v4()))
}

/// A client manager connected to a server manager that runs the demo handlers.
pub struct Pair {
    /// The caller's manager.
    pub client: ActiveMessageManager,
    /// The manager with the demo handlers.
    pub server: ActiveMessageManager,
}

impl Pair {
    /// The server's instance id.
    pub fn target(&self) -> InstanceId {
        self.server.instance_id()
    }

    /// A typed request to the server's `echo` handler.
    pub async fn echo(&self, text: &str) -> active_message::Result<String> {
        self.client
            .client()
            .active_message("echo")?
            .payload(text)?
            .expect_response::<String>()
            .send(self.target())
            .await?
            .await_response()
            .await
    }

    /// Shuts both down.
    pub async fn shutdown(self) {
        self.client.shutdown().await.unwrap();
        self.server.shutdown().await.unwrap();
    }
}

/// Starts a pair; `server` adjusts the server's builder.
pub async fn pair_with(
    flavor: Flavor,
    server: impl FnOnce(ActiveMessageManagerBuilder) -> ActiveMessageManagerBuilder,
) -> Pair {
    let server = server(builder(flavor)).build().await.unwrap();
    demo::register_demo_handlers(&server).await.unwrap();
    let client = builder(flavor).build().await.unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    // The suite runs over the transport it names, never over a fallback.
    let peers = client.stats().peers;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].transport, flavor.kind(), "{flavor:?}");
    Pair { client, server }
}

/// Starts a pair with default settings.
pub async fn pair(flavor: Flavor) -> Pair {
    pair_with(flavor, |b| b).await
}

/// Polls `check` until it returns true or `within` passes; returns whether it did.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs each named `async fn(Flavor)` test once per transport (shm, TCP,
/// in-process), as `shm::name`, `tcp::name`, `local::name`.
#[allow(unused_macros)]
macro_rules! per_transport {
    ($($name:ident),* $(,)?) => {
        mod shm {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Flavor::Shm).await }) *
        }
        mod tcp {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Flavor::Tcp).await }) *
        }
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Flavor::Local).await }) *
        }
    };
}
