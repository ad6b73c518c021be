//! Plugged-in transports: chosen by endpoint scheme, refused when they clash,
//! and the example UDS transport's handling of malformed input. Also the
//! `ipc://` endpoint, which binds shared memory in the named directory.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::transport::{BoxedTransport, Inbox, TransportKind};
use active_message::wire::{self, ErrorCode, Header, Kind};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId, MessageId, PeerInfo,
    TransportPolicy,
};
use common::uds::UdsTransport;
use common::uds_socket_path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn uds() -> TransportKind {
    TransportKind::custom("uds")
}

/// A manager on loopback TCP, with the UDS transport when `with_uds`.
async fn manager(with_uds: bool, policy: TransportPolicy) -> ActiveMessageManager {
    let mut b = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .shm(false)
        .transport_policy(policy);
    if with_uds {
        b = b.transport(UdsTransport::factory(uds_socket_path()));
    }
    let m = b.build().await.unwrap();
    let echo = typed_unary_handler("echo", |ctx: TypedContext<String>| Ok(ctx.input));
    m.register_handler("echo", echo).await.unwrap();
    m
}

async fn echo(from: &ActiveMessageManager, to: InstanceId) -> String {
    from.client()
        .active_message("echo")
        .unwrap()
        .payload("hi")
        .unwrap()
        .expect_response::<String>()
        .send(to)
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap()
}

/// Connects `from` to `info` and returns the transport carrying the link.
async fn connect(from: &ActiveMessageManager, info: PeerInfo) -> TransportKind {
    from.client().connect_to_peer(info.clone()).await.unwrap();
    assert_eq!(echo(from, info.instance_id).await, "hi");
    let peers = from.stats().peers;
    assert_eq!(peers.len(), 1);
    peers[0].transport.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_peer_picks_the_transport_by_endpoint_scheme() {
    let server = manager(true, TransportPolicy::Auto).await;
    let info = server.peer_info().await;
    assert_eq!(info.extra_endpoints.len(), 1);
    assert!(info.extra_endpoints[0].starts_with("uds:///"));
    assert!(info.tcp_endpoint.is_some());

    // Both ends have it: the plugged-in transport wins over TCP.
    let both = manager(true, TransportPolicy::Auto).await;
    assert_eq!(connect(&both, info.clone()).await, uds());
    // No transport for the scheme here: that endpoint is skipped.
    let tcp_only_build = manager(false, TransportPolicy::Auto).await;
    assert_eq!(
        connect(&tcp_only_build, info.clone()).await,
        TransportKind::Tcp
    );
    // The policy leaves plugged-in transports out.
    let tcp_policy = manager(true, TransportPolicy::TcpOnly).await;
    assert_eq!(connect(&tcp_policy, info.clone()).await, TransportKind::Tcp);
    // An endpoint that does not answer falls through to the next one.
    let dead = PeerInfo {
        extra_endpoints: vec![format!("uds://{}", uds_socket_path().display())],
        ..info
    };
    let fallback = manager(true, TransportPolicy::Auto).await;
    assert_eq!(connect(&fallback, dead).await, TransportKind::Tcp);

    for m in [both, tcp_only_build, tcp_policy, fallback, server] {
        m.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clashing_or_misdeclared_transports_are_refused_and_unbound() {
    let first = uds_socket_path();
    let r = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .shm(false)
        .transport(UdsTransport::factory(&first))
        .transport(UdsTransport::factory(uds_socket_path()))
        .build()
        .await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    assert!(!first.exists(), "the first transport was shut down");

    // A transport whose endpoint is not of its own scheme.
    let path = uds_socket_path();
    let bind = {
        let path = path.clone();
        move |id: InstanceId, inbox: Inbox| {
            Ok(
                Arc::new(Mislabelled(UdsTransport::bind(path.clone(), id, inbox)?))
                    as BoxedTransport,
            )
        }
    };
    let r = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport(bind)
        .build()
        .await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    assert!(!path.exists());
}

/// The UDS transport under another scheme name than its endpoints use.
struct Mislabelled(Arc<UdsTransport>);

impl active_message::transport::ThinTransport for Mislabelled {
    fn kind(&self) -> TransportKind {
        TransportKind::custom("other")
    }
    fn local_endpoint(&self) -> Option<String> {
        self.0.local_endpoint()
    }
    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> active_message::transport::BoxFuture<
        'a,
        active_message::Result<active_message::transport::BoxedLink>,
    > {
        self.0.connect(peer, endpoint)
    }
    fn shutdown(&self) -> active_message::transport::BoxFuture<'_, ()> {
        self.0.shutdown()
    }
}

/// Performs the UDS handshake by hand, as `client`, with `server`.
async fn raw_client(path: &Path, client: InstanceId) -> UnixStream {
    let mut s = UnixStream::connect(path).await.unwrap();
    let mut hello = [0u8; 24];
    hello[..16].copy_from_slice(client.as_bytes());
    hello[16..].copy_from_slice(&(1u64 << 20).to_le_bytes());
    s.write_all(&hello).await.unwrap();
    s.read_exact(&mut hello).await.unwrap();
    s
}

async fn write_frame(s: &mut UnixStream, frame: &[u8]) {
    s.write_all(&(frame.len() as u32).to_le_bytes())
        .await
        .unwrap();
    s.write_all(frame).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uds_answers_malformed_frames_and_drops_bad_framing() {
    let path = uds_socket_path();
    let server = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .shm(false)
        .transport(UdsTransport::factory(&path))
        .build()
        .await
        .unwrap();
    let me = InstanceId::new_random();
    let mut s = raw_client(&path, me).await;
    // A request whose lengths disagree with the frame: answered with a Codec error.
    let mut header = Header::new(Kind::Request, MessageId(7), me);
    header.timeout_us = 1_000_000;
    let mut frame = wire::encode_to_vec(&header, "echo", b"payload");
    frame.push(0);
    write_frame(&mut s, &frame).await;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut reply).await.unwrap();
    let reply = wire::decode(&reply, usize::MAX).unwrap();
    assert_eq!(reply.header.kind, Kind::Error);
    assert_eq!(reply.header.error_code, ErrorCode::Codec as u8);
    assert_eq!(reply.header.correlation_id, MessageId(7));
    assert!(server.stats().counters.protocol_errors >= 1);
    // A length prefix over the limit cannot be skipped: the link is closed (EOF).
    s.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
    // Everyone else is still served.
    let mut again = raw_client(&path, InstanceId::new_random()).await;
    write_frame(&mut again, &frame).await;
    again.read_exact(&mut len).await.unwrap();
    server.shutdown().await.unwrap();
    assert!(!path.exists(), "shutdown removes the socket");
}

fn fresh_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("am-{tag}-{}", uuid::Uuid::new_v4()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_endpoint_binds_shared_memory_in_the_named_dir() {
    let dir = fresh_dir("ipc");
    let endpoint = format!("ipc://{}", dir.display());
    let build = || {
        ActiveMessageManagerBuilder::new()
            .endpoint(&endpoint)
            .build()
    };
    let (server, client) = (build().await.unwrap(), build().await.unwrap());
    let info = server.peer_info().await;
    assert!(info.tcp_endpoint.is_none());
    let shm = info.shm_endpoint.clone().unwrap();
    assert!(
        shm.starts_with(&format!("shm://{}/", dir.display())),
        "{shm}"
    );
    let echo = typed_unary_handler("echo", |ctx: TypedContext<String>| Ok(ctx.input));
    server.register_handler("echo", echo).await.unwrap();
    assert_eq!(connect(&client, info).await, TransportKind::Shm);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ipc_endpoints_are_config_errors() {
    let dir = fresh_dir("ipc-bad");
    let cases = [
        ActiveMessageManagerBuilder::new().endpoint("ipc://relative/dir"),
        ActiveMessageManagerBuilder::new()
            .endpoint(format!("ipc://{}", dir.display()))
            .shm(false),
        ActiveMessageManagerBuilder::new()
            .endpoint(format!("ipc://{}", dir.display()))
            .shm_dir(fresh_dir("other")),
    ];
    for builder in cases {
        let r = builder.build().await;
        assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    }
    assert!(!dir.exists(), "nothing was created");
}
