//! Authentication and remote shutdown across real processes: `am serve`
//! takes its secret from `AM_AUTH_SECRET` in its environment.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use active_message::wire::{self, ErrorCode, Header, Kind};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId, MessageId, NetworkClient,
    TransportPolicy,
};
use common::process::ServerProcess;

const SECRET: &str = "a secret shared by both processes";

/// `am serve` with `secret` (if any) in its environment.
fn server(secret: Option<&str>) -> ServerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_am"));
    command.arg("serve").env_remove("AM_AUTH_SECRET");
    if let Some(secret) = secret {
        command.env("AM_AUTH_SECRET", secret);
    }
    ServerProcess::start_command(command)
}

/// A TCP-only client manager; connecting to `server` may fail.
async fn client(
    server: &ServerProcess,
    secret: Option<&str>,
) -> (ActiveMessageManager, Arc<NetworkClient>, Result<(), Error>) {
    let mut builder = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        .default_timeout(Duration::from_secs(10));
    if let Some(secret) = secret {
        builder = builder.auth_secret(secret);
    }
    let manager = builder.build().await.unwrap();
    let client = manager.client();
    let mut info = server.info.clone();
    info.shm_endpoint = None;
    info.local_endpoint = None;
    let connected = client.connect_to_peer(info).await;
    (manager, client, connected)
}

async fn echo(c: &Arc<NetworkClient>, server: &ServerProcess) -> Result<String, Error> {
    c.active_message("echo")?
        .payload("authenticated")?
        .expect_response::<String>()
        .send(server.info.instance_id)
        .await?
        .await_response()
        .await
}

/// How many `note` messages the server has seen.
async fn notes(c: &Arc<NetworkClient>, server: &ServerProcess) -> u64 {
    c.active_message("notes")
        .unwrap()
        .expect_response::<u64>()
        .send(server.info.instance_id)
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap()
}

/// A raw DEALER with no handshake sends a `note` one-way message, then a
/// request on the same connection; returns the request's answer once the
/// server has read both (they travel in order).
fn raw_note_then_request(endpoint: &str) -> Header {
    let me = InstanceId::new_random();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(10_000).unwrap();
    raw.set_identity(me.as_bytes()).unwrap();
    raw.connect(endpoint).unwrap();
    let note = Header::new(Kind::OneWay, MessageId(1), me);
    raw.send(wire::encode_to_vec(&note, "note", b""), 0)
        .unwrap();
    let request = Header::new(Kind::Request, MessageId(2), me);
    raw.send(wire::encode_to_vec(&request, "notes", b""), 0)
        .unwrap();
    loop {
        let bytes = raw.recv_bytes(0).expect("an answer within 10 s");
        let frame = wire::decode(&bytes, usize::MAX).unwrap();
        if frame.header.correlation_id == MessageId(2) {
            return frame.header;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_secret_serves_only_clients_that_know_it() {
    let server = server(Some(SECRET));
    let endpoint = server.tcp_endpoint().to_owned();
    let answer = tokio::task::spawn_blocking(move || raw_note_then_request(&endpoint))
        .await
        .unwrap();
    assert_eq!(answer.kind, Kind::Error);
    assert_eq!(answer.error_code, ErrorCode::Refused as u8);
    for wrong in [None, Some("guess")] {
        let (manager, c, connected) = client(&server, wrong).await;
        let err = connected.unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{wrong:?}: {err:?}");
        // Without a link, nothing can be sent.
        assert!(echo(&c, &server).await.is_err());
        manager.shutdown().await.unwrap();
    }
    let (manager, c, connected) = client(&server, Some(SECRET)).await;
    connected.unwrap();
    assert_eq!(echo(&c, &server).await.unwrap(), "authenticated");
    assert_eq!(
        notes(&c, &server).await,
        0,
        "the raw note reached no handler"
    );
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shutdown_is_refused_to_an_unauthenticated_process() {
    let mut server = server(None);
    let (manager, c, connected) = client(&server, None).await;
    connected.unwrap();
    let err = c
        .request_shutdown(server.info.instance_id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    // Still serving, and still running.
    assert_eq!(echo(&c, &server).await.unwrap(), "authenticated");
    assert!(server.child.try_wait().unwrap().is_none());
    manager.shutdown().await.unwrap();
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shutdown_stops_a_server_process_for_an_authenticated_caller() {
    let mut server = server(Some(SECRET));
    let (manager, c, connected) = client(&server, Some(SECRET)).await;
    connected.unwrap();
    c.request_shutdown(server.info.instance_id).await.unwrap();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exits");
    assert!(status.success(), "{status:?}");
    manager.shutdown().await.unwrap();
}
