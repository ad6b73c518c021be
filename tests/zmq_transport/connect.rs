//! Connecting: refused, wrong or silent instances, restarts, shared links.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::transport::ThinTransport;
use active_message::transport::zmq::ZmqConfig;
use active_message::wire::Kind;
use active_message::{Error, InstanceId};

use crate::{MAX_FRAME, SOON, frame, header, loopback, node, node_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_closed_port_fails_promptly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // A refused connection must not wait for the connect timeout; half of a
    // 30 s timeout is a margin no scheduling delay comes near.
    let connect_timeout = Duration::from_secs(30);
    let client = node_with(loopback().connect_timeout(connect_timeout), 8, MAX_FRAME);
    let started = Instant::now();
    let result = client
        .transport
        .connect(InstanceId::new_random(), &format!("tcp://127.0.0.1:{port}"))
        .await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Transport(_))),
        "{:?}",
        result.as_ref().err()
    );
    assert!(took < connect_timeout / 2, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_expecting_another_instance_fails() {
    let server = node();
    let client = node();
    let wrong = InstanceId::new_random();
    let result = client.transport.connect(wrong, &server.endpoint()).await;
    assert!(
        matches!(result, Err(Error::PeerLost(p)) if p == wrong),
        "{:?}",
        result.as_ref().err()
    );
    // The right id still works afterwards.
    client.connect_to(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_nobody_answering_times_out() {
    // A raw ROUTER that accepts TCP but never answers the probe.
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let client = node_with(
        loopback().connect_timeout(Duration::from_millis(300)),
        8,
        MAX_FRAME,
    );
    let started = Instant::now();
    let result = client
        .transport
        .connect(InstanceId::new_random(), &endpoint)
        .await;
    assert!(
        matches!(result, Err(Error::Timeout(_))),
        "{:?}",
        result.as_ref().err()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_a_new_instance_that_can_be_connected() {
    let server = node();
    let endpoint = server.endpoint();
    let client = node();
    let old_link = client.connect_to(&server).await;
    let old_id = server.id;
    drop(server); // drop shuts down too
    client
        .events
        .wait_for("loss of the old instance", SOON, |seen| {
            seen.lost.iter().find(|(p, _)| *p == old_id).map(|_| ())
        })
        .await;
    assert!(old_link.is_closed());

    // A new instance on the same port.
    let mut reborn = node_with(ZmqConfig::new(endpoint.clone()), 8, MAX_FRAME);
    assert_eq!(reborn.endpoint(), endpoint);
    let stale = client.transport.connect(old_id, &endpoint).await;
    assert!(
        matches!(stale, Err(Error::PeerLost(_))),
        "{:?}",
        stale.as_ref().err()
    );
    let link = client.connect_to(&reborn).await;
    link.send(frame(header(Kind::OneWay, 1, client.id), "hi", b""))
        .await
        .unwrap();
    assert_eq!(reborn.next_invocation().await.name(), "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_to_one_peer_share_the_link() {
    let server = node();
    let client = node();
    let endpoint = server.endpoint();
    let (a, b) = tokio::join!(
        client.transport.connect(server.id, &endpoint),
        client.transport.connect(server.id, &endpoint)
    );
    assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
}
