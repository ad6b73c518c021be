//! `OneWaySender`, the prepared one-way path: order kept over every
//! transport, backpressure on a full ring of a stopped peer (the sender
//! waits, then gets `Timeout` at its budget), `PeerLost` for a killed peer,
//! and the same refusals as the builder. (Waiting for room and the
//! allocations it makes: `tests/alloc_serving.rs`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId};
use common::seq::{Seen, arrived, register_seq};
use common::{Flavor, Pair, eventually, pair_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_kept_over_every_transport() {
    for flavor in [Flavor::Shm, Flavor::Tcp, Flavor::Local] {
        let n: u64 = 100_000;
        let p = pair_with(flavor, |b| b).await;
        let seen = Arc::new(Seen::default());
        register_seq(&p.server, &seen).await;
        let sender = p.client.client().one_way_sender("seq", p.target()).unwrap();
        assert_eq!((sender.target(), sender.handler()), (p.target(), "seq"));
        for i in 0..n {
            if let Err(e) = sender.send(&i).await {
                panic!("{flavor:?}: message {i}: {e}");
            }
        }
        assert!(arrived(&seen, n).await, "{flavor:?}: not all arrived");
        assert_eq!(seen.count.load(Ordering::Acquire), n, "{flavor:?}");
        assert_eq!(seen.disorder.load(Ordering::Relaxed), 0, "{flavor:?}");
        // Raw bytes to a raw handler, interleaved with the builder's sends.
        let notes = p
            .client
            .client()
            .one_way_sender("note", p.target())
            .unwrap();
        for _ in 0..100 {
            notes.send_raw(&[1u8; 64]).await.unwrap();
            let builder = p.client.client().active_message("note").unwrap();
            let m = builder
                .raw_payload(vec![2u8; 64])
                .target_instance(p.target());
            m.execute().await.unwrap();
        }
        let counted = eventually(Duration::from_secs(30), || async {
            note_count(&p.client, p.target()).await == 200
        })
        .await;
        assert!(counted, "{flavor:?}: raw one-way messages lost");
        let stats = p.client.stats();
        assert!(stats.counters.messages_sent >= n + 200, "{flavor:?}");
        p.shutdown().await;
    }
}

async fn note_count(client: &ActiveMessageManager, peer: InstanceId) -> u64 {
    let m = client.client().active_message("notes").unwrap();
    let status = m.expect_response::<u64>().send(peer).await.unwrap();
    status.await_response().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_then_killed_peer_gives_typed_errors() {
    let (mut worker, manager, sender) = common::seq::note_sender_to_worker().await;
    sender.send_raw(&[0u8; 1024]).await.unwrap();
    worker.stop();
    // A stopped peer drains nothing: the ring fills, then a send times out.
    let stopped = loop {
        if let Err(e) = sender.send_raw(&[0u8; 1024]).await {
            break e;
        }
    };
    assert!(matches!(stopped, Error::Timeout(_)), "{stopped:?}");
    worker.signal("-CONT");
    worker.kill();
    // A dead peer: `PeerLost` (or a timeout while the loss is noticed),
    // never a hang, and `PeerLost` once the link is down.
    let lost = eventually(Duration::from_secs(30), || async {
        matches!(
            sender.send_raw(&[0u8; 64]).await,
            Err(Error::PeerLost(_) | Error::UnknownPeer(_))
        )
    })
    .await;
    assert!(lost, "a killed peer never gave PeerLost");
    manager.shutdown().await.unwrap();
}

/// A pair whose two builders both get `adjust`.
async fn small_pair(
    flavor: Flavor,
    adjust: impl Fn(ActiveMessageManagerBuilder) -> ActiveMessageManagerBuilder,
) -> Pair {
    let server = adjust(common::builder(flavor)).build().await.unwrap();
    common::demo::register_demo_handlers(&server).await.unwrap();
    let client = adjust(common::builder(flavor)).build().await.unwrap();
    let info = server.peer_info().await;
    client.client().connect_to_peer(info).await.unwrap();
    Pair { client, server }
}

#[tokio::test]
async fn refusals_match_the_builder() {
    let p = small_pair(Flavor::Local, |b| b.max_message_bytes(1024)).await;
    let client = p.client.client();
    assert!(matches!(
        client.one_way_sender("_system", p.target()),
        Err(Error::InvalidHandlerName(_))
    ));
    let nobody = InstanceId::new_random();
    assert!(matches!(
        client.one_way_sender("note", nobody),
        Err(Error::UnknownPeer(_))
    ));
    let sender = client.one_way_sender("note", p.target()).unwrap();
    let limit = vec![0u8; 1025];
    assert!(matches!(
        sender.send_raw(&limit).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    p.client.shutdown().await.unwrap();
    assert!(matches!(
        sender.send_raw(b"late").await,
        Err(Error::ShuttingDown)
    ));
    p.server.shutdown().await.unwrap();
}
