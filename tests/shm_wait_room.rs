//! A sender waiting for room on a full shared-memory link (the wait that
//! allocates nothing, `PeerLink::poll_writable`) keeps the link's
//! guarantees: a peer that dies meanwhile fails the wait with `PeerLost`
//! long before the sender's deadline, and a wait that is dropped (the caller
//! gave up) leaves the link usable, with every message reported sent
//! delivered and the abandoned one never half written.
//!
//! The worker is a real child process, stopped (SIGSTOP) so that its ring
//! fills; the sender's deadline is far away, so a wait that missed its
//! wake-up would end in `Timeout`, not in the outcome asserted.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId, NetworkClient,
    OneWaySender, TransportPolicy,
};
use common::eventually;
use common::process::ServerProcess;

/// Far beyond any wake-up: reaching it means one was lost.
const DEADLINE: Duration = Duration::from_secs(60);

type Send<'a> = Pin<Box<dyn Future<Output = active_message::Result<()>> + 'a>>;

fn all_threads_stopped(worker: &ServerProcess) -> bool {
    let tasks = format!("/proc/{}/task", worker.child.id());
    std::fs::read_dir(tasks).unwrap().all(|task| {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

/// A worker with 64 KiB rings, connected and then stopped; the leader.
async fn stopped_worker() -> (ServerProcess, ActiveMessageManager) {
    let args = ["--endpoint", "local://", "--ring-capacity", "65536"];
    let worker = tokio::task::spawn_blocking(move || ServerProcess::start(&args))
        .await
        .unwrap();
    let leader = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .build()
        .await
        .unwrap();
    let client = leader.client();
    client.connect_to_peer(worker.info.clone()).await.unwrap();
    assert_eq!(notes(&client, worker.info.instance_id).await, 0);
    worker.stop();
    let halted = eventually(Duration::from_secs(10), || async {
        all_threads_stopped(&worker)
    })
    .await;
    assert!(halted, "the worker did not stop");
    (worker, leader)
}

/// Sends 1 KiB notes until one has to wait for room; returns how many were
/// sent and the waiting send.
async fn fill<'a>(sender: &'a OneWaySender, payload: &'a [u8]) -> (u64, Send<'a>) {
    let mut sent = 0;
    loop {
        let mut send: Send<'a> = Box::pin(sender.send_raw(payload));
        match futures::poll!(send.as_mut()) {
            Poll::Ready(done) => {
                done.unwrap();
                sent += 1;
            }
            Poll::Pending => return (sent, send),
        }
        assert!(sent < 1_000_000, "a stopped worker's ring never filled");
    }
}

/// How many notes the worker counted.
async fn notes(client: &Arc<NetworkClient>, peer: InstanceId) -> u64 {
    let status = client.active_message("notes").unwrap();
    let status = status.expect_response().send(peer).await.unwrap();
    status.await_response().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_waiting_for_room_learns_that_its_peer_died() {
    let (mut worker, leader) = stopped_worker().await;
    let client = leader.client();
    let peer = worker.info.instance_id;
    let sender = client
        .one_way_sender("note", peer)
        .unwrap()
        .timeout(DEADLINE);
    let payload = vec![7u8; 1024];
    let (sent, waiting) = fill(&sender, &payload).await;
    assert!(sent > 0, "the ring took nothing");
    worker.kill();
    match waiting.await {
        Err(Error::PeerLost(lost)) => assert_eq!(lost, peer),
        other => panic!("a send waiting on a dead peer ended with {other:?}"),
    }
    leader.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_wait_leaves_the_link_usable() {
    let (worker, leader) = stopped_worker().await;
    let client = leader.client();
    let peer = worker.info.instance_id;
    let sender = client
        .one_way_sender("note", peer)
        .unwrap()
        .timeout(DEADLINE);
    let payload = vec![7u8; 1024];
    let (sent, waiting) = fill(&sender, &payload).await;
    // The caller gives up: nothing of that note may reach the worker.
    drop(waiting);
    // A second wait on the same link, then dropped too.
    let mut again: Send<'_> = Box::pin(sender.send_raw(&payload));
    assert!(futures::poll!(again.as_mut()).is_pending());
    drop(again);
    worker.signal("-CONT");
    sender.send_raw(&payload).await.unwrap();
    let all = sent + 1;
    let arrived = eventually(Duration::from_secs(30), || async {
        notes(&client, peer).await >= all
    })
    .await;
    assert!(arrived, "notes reported sent were lost");
    assert_eq!(notes(&client, peer).await, all, "an abandoned note arrived");
    leader.shutdown().await.unwrap();
}
