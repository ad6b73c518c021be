//! The builder's per-thread link cache: a stream of messages built one by
//! one is sent on the link found first, never on a link that closed (a peer
//! disconnected and connected again gets its messages on the new link), and
//! never on another client's link to the same peer (the peer would see a
//! frame claiming another sender and drop the link).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use active_message::{ActiveMessageManager, Error, InstanceId};
use common::seq::{Seen, arrived, register_seq};
use common::{Flavor, builder, pair};

async fn send(
    client: &ActiveMessageManager,
    peer: InstanceId,
    n: u64,
) -> active_message::Result<()> {
    let m = client.client().active_message("seq")?.payload(&n)?;
    m.target_instance(peer).execute().await
}

// One thread: every send after the first finds the cached link.
#[tokio::test(flavor = "current_thread")]
async fn a_reconnected_peer_gets_messages_on_its_new_link() {
    for flavor in [Flavor::Shm, Flavor::Tcp, Flavor::Local] {
        let p = pair(flavor).await;
        let seen = Arc::new(Seen::default());
        register_seq(&p.server, &seen).await;
        let peer = p.target();
        send(&p.client, peer, 0).await.unwrap();
        send(&p.client, peer, 1).await.unwrap();
        // A prepared sender keeps the first link alive past its closing.
        let holder = p.client.client().one_way_sender("seq", peer).unwrap();
        assert!(p.client.client().disconnect_from_peer(peer));
        let gone = send(&p.client, peer, 99).await;
        assert!(
            matches!(gone, Err(Error::UnknownPeer(_) | Error::PeerLost(_))),
            "{flavor:?}: {gone:?}"
        );
        let info = p.server.peer_info().await;
        p.client.client().connect_to_peer(info).await.unwrap();
        for n in 2..10 {
            if let Err(e) = send(&p.client, peer, n).await {
                panic!("{flavor:?}: message {n} after reconnecting: {e}");
            }
        }
        assert!(arrived(&seen, 10).await, "{flavor:?}: not all arrived");
        assert_eq!(seen.count.load(Ordering::Acquire), 10, "{flavor:?}");
        assert_eq!(seen.disorder.load(Ordering::Relaxed), 0, "{flavor:?}");
        drop(holder);
        p.shutdown().await;
    }
}

// Two clients on one thread, taking turns to one peer.
#[tokio::test(flavor = "current_thread")]
async fn two_clients_on_one_thread_each_use_their_own_link() {
    for flavor in [Flavor::Shm, Flavor::Tcp] {
        let p = pair(flavor).await;
        let seen = [Arc::new(Seen::default()), Arc::new(Seen::default())];
        let other = builder(flavor).build().await.unwrap();
        other
            .client()
            .connect_to_peer(p.server.peer_info().await)
            .await
            .unwrap();
        // Each client's numbers go to a handler of their own, in order.
        register_seq(&p.server, &seen[0]).await;
        let handler = common::seq::seq_handler("seq2", &seen[1]);
        p.server.register_handler("seq2", handler).await.unwrap();
        let peer = p.target();
        for n in 0..200u64 {
            send(&p.client, peer, n).await.unwrap();
            let m = other.client().active_message("seq2").unwrap();
            let m = m.payload(&n).unwrap().target_instance(peer);
            m.execute().await.unwrap();
        }
        for (i, seen) in seen.iter().enumerate() {
            assert!(arrived(seen, 200).await, "{flavor:?}: client {i}");
            assert_eq!(seen.disorder.load(Ordering::Relaxed), 0, "{flavor:?}");
        }
        // Neither link was dropped for a frame claiming another sender.
        assert_eq!(p.server.stats().counters.protocol_errors, 0, "{flavor:?}");
        other.shutdown().await.unwrap();
        p.shutdown().await;
    }
}
