//! `OneWaySender::send_batch` / `send_raw_batch`: batches keep the order of
//! their messages and of the sends around them over every transport, every
//! message arrives once, a batch against a stopped peer waits for room and
//! then says how many it sent (`Timeout`), a killed peer gives `PeerLost`,
//! and a payload over the limit fails the batch before anything is sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, BatchError, Error};
use common::seq::{Seen, arrived, register_seq};
use common::{Flavor, eventually, pair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_order_over_every_transport() {
    for flavor in [Flavor::Shm, Flavor::Tcp, Flavor::Local] {
        let p = pair(flavor).await;
        let seen = Arc::new(Seen::default());
        register_seq(&p.server, &seen).await;
        let sender = p.client.client().one_way_sender("seq", p.target()).unwrap();
        let mut next = 0u64;
        // Batches of every size up to several ring-fulls, with single sends
        // between them.
        for size in [1usize, 2, 7, 64, 1000, 20_000, 0, 3] {
            let batch: Vec<u64> = (next..next + size as u64).collect();
            if let Err(e) = sender.send_batch(&batch).await {
                panic!("{flavor:?}: batch of {size}: {e}");
            }
            next += size as u64;
            sender.send(&next).await.unwrap();
            next += 1;
        }
        assert!(arrived(&seen, next).await, "{flavor:?}: not all arrived");
        assert_eq!(seen.count.load(Ordering::Acquire), next, "{flavor:?}");
        assert_eq!(seen.disorder.load(Ordering::Relaxed), 0, "{flavor:?}");
        let sent = p.client.stats().counters.messages_sent;
        assert!(sent >= next, "{flavor:?}: {sent} counted as sent");
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_batches_arrive_once_each() {
    let p = pair(Flavor::Shm).await;
    let sender = p
        .client
        .client()
        .one_way_sender("note", p.target())
        .unwrap();
    let payloads = vec![[7u8; 64]; 500];
    let before = p.client.stats().counters;
    for _ in 0..4 {
        sender.send_raw_batch(&payloads).await.unwrap();
    }
    let after = p.client.stats().counters;
    assert_eq!(after.messages_sent - before.messages_sent, 2000);
    assert_eq!(after.raw_bytes_sent - before.raw_bytes_sent, 2000 * 64);
    let m = p.client.client();
    let count = || async {
        let status = m.active_message("notes").unwrap();
        let status = status.expect_response::<u64>().send(p.target()).await;
        status.unwrap().await_response().await.unwrap() == 2000
    };
    assert!(
        eventually(Duration::from_secs(30), count).await,
        "raw batch lost"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn a_payload_over_the_limit_fails_the_batch_before_sending() {
    let limited = |b: ActiveMessageManagerBuilder| b.max_message_bytes(1024);
    let server = limited(common::builder(Flavor::Local))
        .build()
        .await
        .unwrap();
    common::demo::register_demo_handlers(&server).await.unwrap();
    let client = limited(common::builder(Flavor::Local))
        .build()
        .await
        .unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let target = server.peer_info().await.instance_id;
    let sender = client.client().one_way_sender("note", target).unwrap();
    let big = vec![0u8; 1025];
    let batch = [&b"small"[..], &big[..]];
    let failed = sender.send_raw_batch(&batch).await;
    assert!(
        matches!(
            failed,
            Err(BatchError {
                sent: 0,
                source: Error::PayloadTooLarge { .. }
            })
        ),
        "{failed:?}"
    );
    assert_eq!(
        client.stats().counters.messages_sent,
        0,
        "part of it was sent"
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_to_a_stopped_then_killed_peer_gives_typed_errors() {
    let (mut worker, manager, sender) = common::seq::note_sender_to_worker().await;
    sender.send_raw(&[0u8; 1024]).await.unwrap();
    worker.stop();
    // A stopped peer drains nothing: a batch larger than the ring fills it,
    // waits for room, then reports how many it sent.
    let batch = vec![[0u8; 1024]; 200];
    let stopped = sender.send_raw_batch(&batch).await;
    match stopped {
        Err(BatchError {
            sent,
            source: Error::Timeout(_),
        }) => assert!(sent > 0 && sent < 200, "{sent} of 200 sent"),
        other => panic!("expected a timeout mid-batch, got {other:?}"),
    }
    worker.signal("-CONT");
    worker.kill();
    let lost = eventually(Duration::from_secs(30), || async {
        matches!(
            sender.send_raw_batch(&batch[..4]).await,
            Err(BatchError {
                source: Error::PeerLost(_) | Error::UnknownPeer(_),
                ..
            })
        )
    })
    .await;
    assert!(lost, "a killed peer never gave PeerLost");
    manager.shutdown().await.unwrap();
}
