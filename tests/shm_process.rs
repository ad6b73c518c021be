//! A real child process (`am serve`) reached over shared memory, then killed
//! with SIGKILL in the middle of calls: every caller learns at once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use active_message::{
    ActiveMessageManagerBuilder, Error, PeerInfo, TransportKind, TransportPolicy,
};

/// Kills the child if the test fails half-way.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `am serve` (shared memory is on by default) and reads its `PeerInfo`.
fn spawn_am() -> (Child, PeerInfo) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_am"))
        .args(["serve", "--endpoint", "local://"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn am");
    let stdout = child.stdout.take().expect("stdout");
    let child = Child(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("peer info line");
    let info: PeerInfo = serde_json::from_str(&line).expect("peer info json");
    (child, info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_peer_fails_every_pending_call_with_peer_lost() {
    let (mut child, info) = tokio::task::spawn_blocking(spawn_am).await.unwrap();
    assert!(
        info.shm_endpoint.is_some(),
        "am serve advertises no shm endpoint"
    );
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let c = manager.client();
    let target = info.instance_id;
    c.connect_to_peer(info.clone()).await.unwrap();
    assert_eq!(manager.stats().peers[0].transport, TransportKind::Shm);
    let echoed: String = c
        .active_message("echo")
        .unwrap()
        .payload("alive")
        .unwrap()
        .expect_response()
        .send(target)
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(echoed, "alive");

    // Two calls that would take 20 s, both running in the child.
    let mut calls = Vec::new();
    for _ in 0..2 {
        let status = c
            .active_message("slow")
            .unwrap()
            .payload(&20_000u64)
            .unwrap()
            .expect_response::<u64>()
            .send(target)
            .await
            .unwrap();
        calls.push(tokio::spawn(async move {
            let result = status.await_response().await;
            (result, Instant::now())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let peak: u64 = c
            .active_message("peak")
            .unwrap()
            .payload(&())
            .unwrap()
            .expect_response()
            .send(target)
            .await
            .unwrap()
            .await_response()
            .await
            .unwrap();
        if peak == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the slow calls never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let dev_shm_before = dev_shm();
    let socket = info
        .shm_endpoint
        .as_deref()
        .and_then(|e| e.strip_prefix("shm://"))
        .map(std::path::PathBuf::from)
        .expect("an shm endpoint");
    assert!(socket.exists());
    let killed = Instant::now();
    child.0.kill().unwrap();
    let mut worst = Duration::ZERO;
    // The calls would otherwise end by their 30 s timeout (the handler sleeps
    // 20 s): `PeerLost` proves the link's EOF failed them. How fast is a
    // performance figure (`benches/compare`, kill case), not a test bound.
    for call in calls {
        let (result, at) = call.await.unwrap();
        assert!(
            matches!(result, Err(Error::PeerLost(p)) if p == target),
            "{result:?}"
        );
        worst = worst.max(at.duration_since(killed));
    }
    eprintln!("pending calls failed {worst:?} after SIGKILL");

    // Nothing is left behind: the dead peer's rendezvous socket is reaped by
    // the survivor, and memfds never appear in /dev/shm.
    let reap_deadline = Instant::now() + Duration::from_secs(3);
    while socket.exists() && Instant::now() < reap_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!socket.exists(), "{} left behind", socket.display());
    assert_eq!(dev_shm(), dev_shm_before, "/dev/shm changed");

    // New calls fail at once too, and the peer is gone from the stats.
    let err = c
        .active_message("echo")
        .unwrap()
        .payload("late")
        .unwrap()
        .expect_response::<String>()
        .send(target)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PeerLost(_) | Error::UnknownPeer(_)),
        "{err:?}"
    );
    assert!(manager.stats().peers.is_empty());
    manager.shutdown().await.unwrap();
}

/// The entries of /dev/shm, sorted.
fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
