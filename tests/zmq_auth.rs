//! Authentication of TCP connections with a shared secret, and who may shut
//! a manager down remotely. Handler invocations are counted: a refused
//! caller must reach no handler at all.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use active_message::handler_impls::unary_handler;
use active_message::wire::{self, ErrorCode, Header, Kind, flags};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId, MessageId, PeerInfo,
    TransportPolicy,
};
use common::{Flavor, builder, eventually};

const SECRET: &str = "correct horse battery staple";
/// Upper bound for conditions that hold almost at once (only reached on failure).
const PROMPT: Duration = Duration::from_secs(10);

fn tcp(secret: Option<&str>) -> ActiveMessageManagerBuilder {
    let base = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        .default_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5));
    match secret {
        Some(secret) => base.auth_secret(secret),
        None => base,
    }
}

/// A server with an `echo_bytes` handler that counts its invocations.
async fn counting_server(
    b: ActiveMessageManagerBuilder,
) -> (ActiveMessageManager, Arc<AtomicUsize>) {
    let server = b.build().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = unary_handler("echo_bytes", move |ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Some(ctx.payload.into()))
    });
    server
        .register_handler("echo_bytes", handler)
        .await
        .unwrap();
    (server, calls)
}

async fn echo(client: &ActiveMessageManager, target: InstanceId) -> Result<Vec<u8>, Error> {
    let out = client
        .client()
        .active_message("echo_bytes")?
        .raw_payload(&b"hi"[..])
        .expect_response::<()>()
        .send(target)
        .await?
        .await_response_raw()
        .await?;
    Ok(out.to_vec())
}

/// The server's `PeerInfo` with only its TCP endpoint, so that managers in
/// one process talk over TCP rather than in-process.
async fn tcp_info(server: &ActiveMessageManager) -> PeerInfo {
    let mut info = server.peer_info().await;
    info.local_endpoint = None;
    info.shm_endpoint = None;
    info
}

fn refused_count(manager: &ActiveMessageManager) -> u64 {
    manager.stats().counters.refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_secret_calls_are_served() {
    let (server, calls) = counting_server(tcp(Some(SECRET))).await;
    let client = tcp(Some(SECRET)).build().await.unwrap();
    client
        .client()
        .connect_to_peer(tcp_info(&server).await)
        .await
        .unwrap();
    assert_eq!(echo(&client, server.instance_id()).await.unwrap(), b"hi");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(refused_count(&server), 0);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_or_with_a_wrong_secret_the_connection_is_refused() {
    let (server, calls) = counting_server(tcp(Some(SECRET))).await;
    for secret in [None, Some("not the secret")] {
        let client = tcp(secret).build().await.unwrap();
        let err = client
            .client()
            .connect_to_peer(tcp_info(&server).await)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{secret:?}: {err:?}");
        assert!(echo(&client, server.instance_id()).await.is_err());
        client.shutdown().await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    // The client without a secret is refused by the server (counted); the
    // one with a wrong secret refuses the server's proof itself.
    assert!(refused_count(&server) >= 1, "refusals are counted");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_secret_refuses_a_server_without_one() {
    let (server, calls) = counting_server(tcp(None)).await;
    let client = tcp(Some(SECRET)).build().await.unwrap();
    let err = client
        .client()
        .connect_to_peer(tcp_info(&server).await)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// A raw DEALER: routing id `id`, no handshake.
fn raw_dealer(ctx: &zmq::Context, id: InstanceId, endpoint: &str) -> zmq::Socket {
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(i32::try_from(PROMPT.as_millis()).unwrap())
        .unwrap();
    raw.set_identity(id.as_bytes()).unwrap();
    raw.connect(endpoint).unwrap();
    raw
}

/// Receives frames until the answer to `id` (skipping keep-alives); `None`
/// when nothing answers within [`PROMPT`].
fn answer_to(raw: &zmq::Socket, id: MessageId) -> Option<(Header, Vec<u8>)> {
    loop {
        let bytes = raw.recv_bytes(0).ok()?;
        let frame = wire::decode(&bytes, usize::MAX).unwrap();
        if frame.header.correlation_id == id {
            return Some((frame.header, frame.payload.to_vec()));
        }
    }
}

/// Sends, unauthenticated, a one-way message then a request to `echo_bytes`
/// as `sender` with routing id `sender`; returns the request's answer.
async fn raw_calls(endpoint: String, sender: InstanceId) -> (Header, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let raw = raw_dealer(&ctx, sender, &endpoint);
        let oneway = Header::new(Kind::OneWay, MessageId(1), sender);
        raw.send(wire::encode_to_vec(&oneway, "echo_bytes", b"x"), 0)
            .unwrap();
        let request = Header::new(Kind::Request, MessageId(2), sender);
        raw.send(wire::encode_to_vec(&request, "echo_bytes", b"x"), 0)
            .unwrap();
        answer_to(&raw, MessageId(2)).expect("an answer to the request")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_without_a_handshake_reach_no_handler() {
    let (server, calls) = counting_server(tcp(Some(SECRET))).await;
    let endpoint = tcp_info(&server).await.tcp_endpoint.unwrap();
    let (header, text) = raw_calls(endpoint, InstanceId::new_random()).await;
    assert_eq!(header.kind, Kind::Error);
    assert_eq!(header.error_code, ErrorCode::Refused as u8);
    assert!(!text.is_empty());
    assert!(
        eventually(PROMPT, || async { refused_count(&server) >= 2 }).await,
        "the one-way message and the request are both counted"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proof_is_refused_by_the_server() {
    let (server, calls) = counting_server(tcp(Some(SECRET))).await;
    let endpoint = tcp_info(&server).await.tcp_endpoint.unwrap();
    let me = InstanceId::new_random();
    let (proof_answer, call_answer) = tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let raw = raw_dealer(&ctx, me, &endpoint);
        let mut hello = Header::new(Kind::Heartbeat, MessageId(1), me);
        hello.flags = flags::AUTH;
        let mut payload = 4096u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&[9; 32]);
        raw.send(wire::encode_to_vec(&hello, "", &payload), 0)
            .unwrap();
        let (challenge, body) = answer_to(&raw, MessageId(1)).expect("a challenge");
        assert_eq!(challenge.flags, flags::PONG | flags::AUTH);
        assert_eq!(body.len(), 8 + 32 + 32);
        let mut proof = Header::new(Kind::Heartbeat, MessageId(2), me);
        proof.flags = flags::AUTH;
        proof.correlation_id = challenge.message_id;
        raw.send(wire::encode_to_vec(&proof, "", &[0; 32]), 0)
            .unwrap();
        let proof_answer = answer_to(&raw, MessageId(2)).expect("an answer to the proof");
        let request = Header::new(Kind::Request, MessageId(3), me);
        raw.send(wire::encode_to_vec(&request, "echo_bytes", b"x"), 0)
            .unwrap();
        (
            proof_answer.0,
            answer_to(&raw, MessageId(3)).expect("an answer").0,
        )
    })
    .await
    .unwrap();
    for answer in [proof_answer, call_answer] {
        assert_eq!(answer.kind, Kind::Error);
        assert_eq!(answer.error_code, ErrorCode::Refused as u8);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    assert!(refused_count(&server) >= 2);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_peers_routing_id_on_another_connection_is_refused() {
    let (server, calls) = counting_server(tcp(Some(SECRET))).await;
    let client = tcp(Some(SECRET)).build().await.unwrap();
    let info = tcp_info(&server).await;
    client.client().connect_to_peer(info.clone()).await.unwrap();
    assert_eq!(echo(&client, server.instance_id()).await.unwrap(), b"hi");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A stranger presents the authenticated client's routing id and sender.
    let endpoint = info.tcp_endpoint.clone().unwrap();
    let (header, _) = raw_calls(endpoint, client.instance_id()).await;
    assert_eq!(header.kind, Kind::Error);
    assert_eq!(header.error_code, ErrorCode::Refused as u8);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the stranger reached no handler"
    );

    // The genuine client authenticates again on a new connection.
    assert!(
        eventually(PROMPT, || async {
            client.client().connect_to_peer(info.clone()).await.is_ok()
                && echo(&client, server.instance_id()).await.is_ok()
        })
        .await
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_tcp_callers_cannot_shut_a_manager_down_by_default() {
    let server = tcp(None).build().await.unwrap();
    let client = tcp(None).build().await.unwrap();
    client
        .client()
        .connect_to_peer(tcp_info(&server).await)
        .await
        .unwrap();
    let err = client
        .client()
        .request_shutdown(server.instance_id())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    assert!(!server.cancel_token().is_cancelled());
    // Still serving.
    client
        .client()
        .health_check(server.instance_id())
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_tcp_callers_can_shut_a_manager_down() {
    let server = tcp(Some(SECRET)).build().await.unwrap();
    let client = tcp(Some(SECRET)).build().await.unwrap();
    client
        .client()
        .connect_to_peer(tcp_info(&server).await)
        .await
        .unwrap();
    client
        .client()
        .request_shutdown(server.instance_id())
        .await
        .unwrap();
    let token = server.cancel_token();
    assert!(eventually(PROMPT, || async { token.is_cancelled() }).await);
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_remote_shutdown_overrides_trust_both_ways() {
    // `false`: not even a trusted (in-process) caller.
    let server = builder(Flavor::Local)
        .allow_remote_shutdown(false)
        .build()
        .await
        .unwrap();
    let client = builder(Flavor::Local).build().await.unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let err = client.client().request_shutdown(server.instance_id()).await;
    assert!(matches!(err, Err(Error::Refused(_))), "{err:?}");
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();

    // `true`: anyone, an unauthenticated TCP caller included.
    let server = tcp(None).allow_remote_shutdown(true).build().await.unwrap();
    let client = tcp(None).build().await.unwrap();
    client
        .client()
        .connect_to_peer(tcp_info(&server).await)
        .await
        .unwrap();
    client
        .client()
        .request_shutdown(server.instance_id())
        .await
        .unwrap();
    let token = server.cancel_token();
    assert!(eventually(PROMPT, || async { token.is_cancelled() }).await);
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_empty_secret_is_a_configuration_error() {
    let err = tcp(Some("")).build().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// A current-thread runtime: the TCP transport binds on this thread, under
// the subscriber set for it.
#[tokio::test]
async fn binding_beyond_loopback_without_a_secret_logs_a_warning() {
    let cases = [
        ("tcp://0.0.0.0:0", None, true),
        ("tcp://0.0.0.0:0", Some(SECRET), false),
        ("tcp://127.0.0.1:0", None, false),
    ];
    for (endpoint, secret, warns) in cases {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        let mut builder = ActiveMessageManagerBuilder::new()
            .endpoint(endpoint)
            .shm(false);
        if let Some(secret) = secret {
            builder = builder.auth_secret(secret);
        }
        let manager = builder.build().await.unwrap();
        drop(guard);
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            logs.contains("without an authentication secret"),
            warns,
            "{endpoint} with secret {secret:?}: {logs}"
        );
        manager.shutdown().await.unwrap();
    }
}
