//! A leader and three worker processes on one host: every request travels
//! over shared memory, and every answer is checked.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::{
    ActiveMessageManagerBuilder, InstanceId, NetworkClient, TransportKind, TransportPolicy,
};
use bytes::Bytes;
use common::process::ServerProcess;
use futures::StreamExt;

const WORKERS: usize = 3;
const REQUESTS: u64 = 10_000;
/// Requests in flight per worker.
const WINDOW: usize = 16;

/// A payload unique to (worker, sequence number), 64 bytes.
fn payload(worker: usize, seq: u64) -> Bytes {
    let mut bytes = Vec::with_capacity(64);
    for i in 0..8u64 {
        bytes.extend_from_slice(
            &(seq.wrapping_mul(31).wrapping_add(i) ^ (worker as u64) << 48).to_le_bytes(),
        );
    }
    Bytes::from(bytes)
}

async fn drive(c: Arc<NetworkClient>, worker: usize, target: InstanceId) -> u64 {
    futures::stream::iter(0..REQUESTS)
        .map(|seq| {
            let c = Arc::clone(&c);
            async move {
                let sent = payload(worker, seq);
                let back = c
                    .active_message("echo_bytes")
                    .unwrap()
                    .raw_payload(sent.clone())
                    .expect_response::<()>()
                    .send(target)
                    .await
                    .unwrap()
                    .await_response_raw()
                    .await
                    .unwrap();
                assert_eq!(back, sent, "worker {worker}, request {seq}");
            }
        })
        .buffer_unordered(WINDOW)
        .count()
        .await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_with_three_worker_processes_over_shm() {
    let workers: Vec<ServerProcess> = (0..WORKERS)
        .map(|_| ServerProcess::start(&["--endpoint", "local://"]))
        .collect();
    let leader = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let c = leader.client();
    for w in &workers {
        assert!(
            w.info.shm_endpoint.is_some(),
            "workers advertise shared memory"
        );
        c.connect_to_peer(w.info.clone()).await.unwrap();
    }
    let peers = leader.stats().peers;
    assert_eq!(peers.len(), WORKERS);
    assert!(
        peers.iter().all(|p| p.transport == TransportKind::Shm),
        "{peers:?}"
    );

    let started = Instant::now();
    let runs: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| tokio::spawn(drive(Arc::clone(&c), i, w.info.instance_id)))
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap(), REQUESTS);
    }
    eprintln!(
        "{} verified requests over shm in {:?}",
        REQUESTS * WORKERS as u64,
        started.elapsed()
    );
    assert_eq!(leader.stats().counters.timeouts, 0);
    leader.shutdown().await.unwrap();
}
