//! Links are freed when their peer goes: a leader that calls 200 worker
//! processes one after another, each of which then exits (half by SIGTERM,
//! half by SIGKILL), ends with the descriptors and shared-memory mappings it
//! started with.

mod common;

use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, TransportKind, TransportPolicy};
use common::eventually;
use common::process::ServerProcess;

const CYCLES: usize = 200;
const WARM_UP: usize = 3;

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Mappings of memfd-backed memory (the shared-memory rings) in this process.
fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.lines().filter(|l| l.contains("memfd:")).count())
        .unwrap_or(0)
}

/// One worker lifetime: start, connect over shm, call, exit.
async fn one_worker(manager: &active_message::ActiveMessageManager, kill: bool) {
    let mut worker =
        tokio::task::spawn_blocking(|| ServerProcess::start(&["--endpoint", "local://"]))
            .await
            .unwrap();
    let client = manager.client();
    let peer = worker.info.instance_id;
    client.connect_to_peer(worker.info.clone()).await.unwrap();
    assert_eq!(client.list_peers()[0].transport, TransportKind::Shm);
    for round in 0..3 {
        let text = format!("round {round}");
        let echoed: String = client
            .active_message("echo")
            .unwrap()
            .payload(text.as_str())
            .unwrap()
            .expect_response()
            .send(peer)
            .await
            .unwrap()
            .await_response()
            .await
            .unwrap();
        assert_eq!(echoed, text);
    }
    if kill {
        worker.kill();
    } else {
        // SIGTERM: `am serve` shuts down gracefully (goodbye, then exit).
        let terminated = std::process::Command::new("kill")
            .args(["-TERM", &worker.child.id().to_string()])
            .status()
            .unwrap();
        assert!(terminated.success());
        let status = tokio::task::spawn_blocking(move || {
            let status = worker.wait_exit(Duration::from_secs(20));
            (worker, status)
        })
        .await
        .unwrap()
        .1;
        assert!(status.is_some(), "worker did not exit on SIGTERM");
    }
    let gone = eventually(Duration::from_secs(20), || async {
        client.list_peers().is_empty()
    })
    .await;
    assert!(gone, "the leader never noticed the worker's exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_and_mappings_return_to_their_level_after_200_workers() {
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    for i in 0..WARM_UP {
        one_worker(&manager, i % 2 == 0).await;
    }
    let settled = |fds: usize, maps: usize| {
        move || async move { open_fds() <= fds && memfd_mappings() <= maps }
    };
    let (fds, maps) = (open_fds(), memfd_mappings());
    for i in 0..CYCLES {
        one_worker(&manager, i % 2 == 0).await;
    }
    let back = eventually(Duration::from_secs(20), settled(fds, maps)).await;
    assert!(
        back,
        "after {CYCLES} workers: {} fds (was {fds}), {} memfd mappings (was {maps})",
        open_fds(),
        memfd_mappings()
    );
    manager.shutdown().await.unwrap();
}
