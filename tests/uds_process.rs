//! The example UDS transport across real processes: a peer killed with
//! SIGKILL fails the calls pending on it with `PeerLost` (the kernel closes
//! its socket, the transport reads EOF), not with a timeout.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, Error, PeerInfo, TransportKind};
use common::uds::UdsTransport;
use common::{eventually, uds_socket_path};

const CHILD_ENV: &str = "AM_UDS_CHILD_SOCKET";

fn builder(socket: std::path::PathBuf) -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .shm(false)
        .transport(UdsTransport::factory(socket))
}

/// Runs in the child process: a manager with the demo handlers, reachable
/// only over the UDS transport, that prints its `PeerInfo` and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of uds_peer_killed_fails_pending_calls_with_peer_lost"]
async fn uds_child_server() {
    let socket = std::env::var_os(CHILD_ENV).expect("run by the parent test");
    let server = builder(socket.into()).build().await.unwrap();
    common::demo::register_demo_handlers(&server).await.unwrap();
    println!(
        "{}",
        serde_json::to_string(&server.peer_info().await).unwrap()
    );
    std::future::pending::<()>().await;
}

/// Starts this test binary again as the child server and reads its `PeerInfo`.
fn spawn_child(socket: &std::path::Path) -> (Child, PeerInfo) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "uds_child_server", "--ignored", "--nocapture"])
        .env(CHILD_ENV, socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The test harness prints its own lines first; the PeerInfo is the JSON one.
    let info = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| serde_json::from_str::<PeerInfo>(&line).ok());
    match info {
        Some(info) => (child, info),
        None => {
            let _ = child.kill();
            panic!("the child printed no PeerInfo");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uds_peer_killed_fails_pending_calls_with_peer_lost() {
    let socket = uds_socket_path();
    let (mut child, info) = spawn_child(&socket);
    let target = info.instance_id;
    let client = builder(uds_socket_path()).build().await.unwrap();
    let c = client.client();
    c.connect_to_peer(info).await.unwrap();
    assert_eq!(
        client.stats().peers[0].transport,
        TransportKind::custom("uds")
    );
    let pending = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            // The handler sleeps for ten minutes: only the peer's death
            // can end this call before its budget (a timeout fails the test).
            c.active_message("slow")?
                .payload(&600_000u64)?
                .timeout(Duration::from_secs(30))
                .expect_response::<u64>()
                .send(target)
                .await?
                .await_response()
                .await
        })
    };
    // `peak` is the most `slow` calls the child has seen running at once.
    let running = || async {
        let peak = async {
            c.active_message("peak")?
                .payload(&())?
                .expect_response::<u64>()
                .send(target)
                .await?
                .await_response()
                .await
        };
        peak.await.is_ok_and(|peak| peak >= 1)
    };
    assert!(eventually(Duration::from_secs(20), running).await);
    child.kill().unwrap();
    child.wait().unwrap();
    let result = pending.await.unwrap();
    assert!(
        matches!(result, Err(Error::PeerLost(p)) if p == target),
        "{result:?}"
    );
    assert!(c.list_peers().is_empty(), "the lost link is gone");
    client.shutdown().await.unwrap();
    // The killed child could not remove its socket file; the path is ours to clean.
    let _ = std::fs::remove_file(&socket);
}
