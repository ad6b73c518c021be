//! `NetworkClient::connect_to_address`: reaching a peer knowing only its address.

#[allow(dead_code)]
#[path = "cohort/child.rs"]
mod child;

use active_message::{TransportKind, TransportPolicy};
use child::Via;

/// `connect_to_address` learns the peer from its TCP address alone, then
/// moves to shared memory (same host) unless the policy says TCP only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_address_learns_the_peer_and_picks_the_best_transport() {
    let server = child::leader_manager().await;
    let tcp = child::address(&server, Via::Tcp).await;
    for (policy, kind) in [
        (TransportPolicy::Auto, TransportKind::Shm),
        (TransportPolicy::TcpOnly, TransportKind::Tcp),
    ] {
        let client = active_message::ActiveMessageManagerBuilder::new()
            .endpoint("tcp://127.0.0.1:0")
            .transport_policy(policy)
            .build()
            .await
            .unwrap();
        let info = client.client().connect_to_address(&tcp).await.unwrap();
        assert_eq!(info, server.peer_info().await);
        let peers = client.stats().peers;
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].instance_id, server.instance_id());
        assert_eq!(peers[0].transport, kind, "{policy:?}");
        client.shutdown().await.unwrap();
    }
    let nobody = child::leader_manager().await;
    let gone = child::address(&nobody, Via::Tcp).await;
    nobody.shutdown().await.unwrap();
    let client = child::leader_manager().await;
    assert!(client.client().connect_to_address(&gone).await.is_err());
    assert!(
        client
            .client()
            .connect_to_address("nonsense")
            .await
            .is_err()
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
