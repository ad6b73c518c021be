//! A streamed response from a real child process (`am serve`) that is
//! SIGKILLed mid-stream: the stream ends with `PeerLost`, over shared memory
//! and over TCP.

mod common;

use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, Error, TransportKind, TransportPolicy};
use common::process::ServerProcess;
use futures::StreamExt;

async fn killed_producer_ends_the_stream_with_peer_lost(
    serve_args: &[&str],
    endpoint: &str,
    policy: TransportPolicy,
    kind: TransportKind,
) {
    let mut server = ServerProcess::start(serve_args);
    let target = server.info.instance_id;
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint(endpoint)
        .transport_policy(policy)
        // Far longer than loss detection takes: a `Timeout` would mean the
        // kill went unnoticed.
        .default_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let c = manager.client();
    c.connect_to_peer(server.info.clone()).await.unwrap();
    assert_eq!(c.list_peers()[0].transport, kind);
    let mut ticks = c
        .active_message("ticks")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_stream::<u64>()
        .window(8)
        .send(target)
        .await
        .unwrap();
    for expected in 0..100u64 {
        assert_eq!(ticks.next().await.unwrap().unwrap(), expected);
    }
    server.kill();
    // Items already received may still be read; then the loss.
    let mut next = 100u64;
    let end = loop {
        match ticks.next().await {
            Some(Ok(item)) => {
                assert_eq!(item, next);
                next += 1;
            }
            other => break other,
        }
    };
    assert!(
        matches!(end, Some(Err(Error::PeerLost(id))) if id == target),
        "{end:?}"
    );
    assert!(ticks.next().await.is_none());
    assert_eq!(c.stream_stats().reading, 0);
    drop(ticks);
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_shm_producer_ends_the_stream_with_peer_lost() {
    killed_producer_ends_the_stream_with_peer_lost(
        &["--endpoint", "local://"],
        "local://",
        TransportPolicy::ShmOnly,
        TransportKind::Shm,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_tcp_producer_ends_the_stream_with_peer_lost() {
    killed_producer_ends_the_stream_with_peer_lost(
        &[],
        "tcp://127.0.0.1:0",
        TransportPolicy::TcpOnly,
        TransportKind::Tcp,
    )
    .await;
}
