//! Lost, silent, slow and departing peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::transport::ThinTransport;
use active_message::wire::{self, Kind, flags};
use active_message::{Error, InstanceId, MessageId};

use crate::{MAX_FRAME, SOON, frame, header, loopback, node, node_with, pong_for, raw_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_shutdown_is_reported_at_once_and_later_sends_fail() {
    // Heartbeats far slower than the bound below: only the goodbye can explain it.
    let slow = loopback().heartbeat_interval(Duration::from_secs(10));
    let server = node_with(slow.clone(), 8, MAX_FRAME);
    let client = node_with(slow, 8, MAX_FRAME);
    let link = client.connect_to(&server).await;

    // Heartbeats would take 30 s to notice: a loss reported within SOON came
    // from the goodbye.
    server.transport.shutdown().await;
    server.transport.shutdown().await; // idempotent
    client
        .events
        .wait_for("on_link_lost", SOON, |seen| {
            seen.lost.iter().find(|(p, _)| *p == server.id).map(|_| ())
        })
        .await;
    assert!(link.is_closed());
    let h = header(Kind::OneWay, 1, client.id);
    assert!(matches!(link.try_send(frame(h, "x", b"")), Err(Error::PeerLost(p)) if p == server.id));
    assert!(matches!(
        link.send(frame(h, "x", b"")).await,
        Err(Error::PeerLost(_))
    ));
    assert_eq!(client.events.lost_count(server.id), 1);

    // A shut-down transport refuses new links.
    let refused = server
        .transport
        .connect(client.id, &client.endpoint())
        .await;
    assert!(
        matches!(refused, Err(Error::ShuttingDown)),
        "{:?}",
        refused.as_ref().err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_peer_is_detected_by_the_socket_monitor() {
    let pretend = InstanceId::new_random();
    let (endpoint, kill, thread) = raw_server(pretend);
    let client = node_with(
        loopback().heartbeat_interval(Duration::from_secs(10)),
        8,
        MAX_FRAME,
    );
    let link = client.transport.connect(pretend, &endpoint).await.unwrap();
    let started = Instant::now();
    kill.send(()).unwrap();
    thread.join().unwrap();
    let at = client
        .events
        .wait_for("on_link_lost", Duration::from_secs(2), |seen| {
            seen.lost
                .iter()
                .find(|(p, _)| *p == pretend)
                .map(|(_, at)| *at)
        })
        .await;
    // Far under the 30 s heartbeat timeout: the TCP close was seen directly.
    assert!(
        at - started < Duration::from_secs(1),
        "took {:?}",
        at - started
    );
    assert!(link.is_closed());
    assert_eq!(client.events.lost_count(pretend), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_lost_after_the_heartbeat_timeout() {
    let pretend = InstanceId::new_random();
    let (endpoint, kill, thread) = raw_server(pretend);
    let interval = Duration::from_millis(50);
    let client = node_with(
        loopback()
            .heartbeat_interval(interval)
            .heartbeat_timeout(Duration::from_millis(200)),
        8,
        MAX_FRAME,
    );
    // Taken before connecting: the link starts its silence clock during
    // `connect`, and a busy machine can delay our return from it.
    let connecting = Instant::now();
    let link = client.transport.connect(pretend, &endpoint).await.unwrap();
    let at = client
        .events
        .wait_for("on_link_lost", Duration::from_secs(3), |seen| {
            seen.lost
                .iter()
                .find(|(p, _)| *p == pretend)
                .map(|(_, at)| *at)
        })
        .await;
    let after = at - connecting;
    assert!(
        after >= Duration::from_millis(190),
        "lost after only {after:?}"
    );
    assert!(link.is_closed());
    kill.send(()).unwrap();
    thread.join().unwrap();
    assert_eq!(client.events.lost_count(pretend), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_goodbye_closes_the_reverse_link_without_reporting_a_loss() {
    let mut server = node();
    let client = node();
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::Request, 3, client.id), "q", b""))
        .await
        .unwrap();
    let inbound = server.next_invocation().await;
    let reply_link = inbound.reply_link.clone();
    assert!(!reply_link.is_closed());

    link.close();
    link.close(); // idempotent
    assert!(link.is_closed());
    let deadline = Instant::now() + SOON;
    while !reply_link.is_closed() {
        assert!(Instant::now() < deadline, "reverse link still open");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut response = header(Kind::Response, 1, server.id);
    response.correlation_id = MessageId(3);
    assert!(matches!(
        reply_link.try_send(frame(response, "", b"")),
        Err(Error::PeerLost(p)) if p == client.id
    ));
    assert!(server.events.seen.lock().lost.is_empty());
    assert!(client.events.seen.lock().lost.is_empty());

    // Connecting again after a local close gives a fresh, working link.
    let fresh = client.connect_to(&server).await;
    assert!(!Arc::ptr_eq(&fresh, &link));
    fresh
        .send(frame(header(Kind::OneWay, 4, client.id), "again", b""))
        .await
        .unwrap();
    assert_eq!(server.next_invocation().await.name(), "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_loses_its_reverse_link_after_the_timeout() {
    let mut server = node_with(
        loopback()
            .heartbeat_interval(Duration::from_millis(50))
            .heartbeat_timeout(Duration::from_millis(150)),
        8,
        MAX_FRAME,
    );
    let anon = InstanceId::new_random();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_identity(anon.as_bytes()).unwrap();
    raw.connect(&server.endpoint()).unwrap();
    let request = wire::encode_to_vec(&header(Kind::Request, 1, anon), "slow", b"");
    raw.send(request, 0).unwrap();
    let inbound = server.next_invocation().await;
    let reply_link = inbound.reply_link.clone();
    assert_eq!(reply_link.peer(), anon);
    let started = Instant::now();
    let deadline = started + SOON;
    while !reply_link.is_closed() {
        assert!(Instant::now() < deadline, "reverse link never closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(
        server.events.seen.lock().lost.is_empty(),
        "no on_link_lost for reverse links"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_goodbye_in_both_directions() {
    let slow = loopback().heartbeat_interval(Duration::from_secs(10));
    let mut a = node_with(slow.clone(), 8, MAX_FRAME);
    let mut b = node_with(slow, 8, MAX_FRAME);
    let a_to_b = a.connect_to(&b).await;
    let b_to_a = b.connect_to(&a).await;
    a_to_b
        .send(frame(header(Kind::Request, 1, a.id), "x", b""))
        .await
        .unwrap();
    b_to_a
        .send(frame(header(Kind::Request, 1, b.id), "x", b""))
        .await
        .unwrap();
    let b_reply_to_a = b.next_invocation().await.reply_link;
    let _a_reply_to_b = a.next_invocation().await.reply_link;

    a.transport.shutdown().await;
    // B's outbound link heard A's goodbye through A's ROUTER ...
    b.events
        .wait_for("loss of A", Duration::from_secs(1), |seen| {
            seen.lost.iter().find(|(p, _)| *p == a.id).map(|_| ())
        })
        .await;
    assert!(b_to_a.is_closed());
    // ... and B's reverse link to A heard the goodbye of A's DEALER.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !b_reply_to_a.is_closed() {
        assert!(Instant::now() < deadline, "reverse link to A still open");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A closed its own links without reporting them lost.
    assert!(a_to_b.is_closed());
    assert!(a.events.seen.lock().lost.is_empty());
    let h = header(Kind::OneWay, 2, a.id);
    assert!(matches!(
        a_to_b.try_send(frame(h, "x", b"")),
        Err(Error::ShuttingDown)
    ));
}

/// A raw ROUTER standing in for a peer that is alive but behind: it answers
/// probes as instance `pretend` (when it gets to them, behind the data) and
/// takes a while over each one-way frame. Says on `read` how many it took,
/// once it took `frames`, and serves on until `close` fires.
struct SlowPeer {
    endpoint: String,
    read: std::sync::mpsc::Receiver<usize>,
    close: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn slow_peer(pretend: InstanceId, frames: usize) -> SlowPeer {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.set_rcvhwm(1).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let (close, closed) = std::sync::mpsc::channel::<()>();
    let (count, read) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut taken = 0;
        while closed.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
            if router.poll(zmq::POLLIN, 10).unwrap() == 0 {
                continue;
            }
            let parts = router.recv_multipart(0).unwrap();
            let h = wire::decode_header(&parts[1]).unwrap();
            match h.kind {
                Kind::Heartbeat if h.flags & flags::PONG == 0 => router
                    .send_multipart([parts[0].clone(), pong_for(&h, pretend)], 0)
                    .unwrap(),
                Kind::OneWay => {
                    taken += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    if taken == frames {
                        count.send(taken).unwrap();
                    }
                }
                _ => {}
            }
        }
    });
    SlowPeer {
        endpoint,
        read,
        close,
        thread,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_under_a_flood_is_not_lost_to_the_heartbeat() {
    // The flood keeps the pipe to the peer full for several heartbeat
    // timeouts: no probe can even be sent, and the peer's answers would wait
    // behind the data anyway. Room coming back in the pipe says the peer
    // reads, so the link stays up.
    let pretend = InstanceId::new_random();
    let frames = 300;
    let peer = slow_peer(pretend, frames);
    let client = node_with(
        loopback()
            .heartbeat_interval(Duration::from_millis(30))
            .heartbeat_timeout(Duration::from_millis(100))
            .high_water_mark(1)
            .send_queue(2),
        8,
        MAX_FRAME,
    );
    let link = client
        .transport
        .connect(pretend, &peer.endpoint)
        .await
        .unwrap();
    let payload = vec![7u8; 256 << 10];
    for i in 0..frames {
        let h = header(Kind::OneWay, i as u64 + 10, client.id);
        if let Err(e) = link.send(frame(h, "sink", &payload)).await {
            panic!("frame {i}: {e}");
        }
    }
    let read = peer.read;
    let taken = tokio::task::spawn_blocking(move || read.recv().unwrap());
    assert_eq!(taken.await.unwrap(), frames);
    assert_eq!(client.events.lost_count(pretend), 0);
    assert!(!link.is_closed());
    peer.close.send(()).unwrap();
    peer.thread.join().unwrap();
}
