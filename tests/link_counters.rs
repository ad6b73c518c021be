//! Per-link error and wait counters move by exactly the events that happened:
//! ring-full waits and timeouts behind a held receiver, send errors from a
//! peer's smaller frame limit, protocol errors from a raw peer, and doorbell
//! rings only when the peer's reader is parked.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::am_handler;
use active_message::wire::{self, Header, Kind, flags};
use active_message::{
    ActiveMessageManager, Error, InstanceId, LinkCounterValues, MessageId, PeerInfo, TransportKind,
    TransportPolicy, WaitPolicy,
};
use common::{Flavor, Pair, builder, eventually, pair, pair_with};
use tokio::sync::Semaphore;

/// Generous bound for conditions that hold as soon as the peers get CPU.
const WITHIN: Duration = Duration::from_secs(10);

/// The client's counters for its link to `peer`.
fn link(manager: &ActiveMessageManager, peer: InstanceId) -> LinkCounterValues {
    manager
        .stats()
        .peers
        .iter()
        .find(|p| p.instance_id == peer)
        .map(|p| p.counters.clone())
        .unwrap_or_else(|| panic!("no link to {peer}"))
}

/// Registers `gate` on the server: each call counts itself, then waits for a
/// permit the test hands out, so the server stops reading the link.
async fn gate(server: &ActiveMessageManager) -> (Arc<Semaphore>, Arc<AtomicU64>) {
    let permits = Arc::new(Semaphore::new(0));
    let ran = Arc::new(AtomicU64::new(0));
    let (p, r) = (Arc::clone(&permits), Arc::clone(&ran));
    let handler = am_handler("gate", move |_| {
        let (p, r) = (Arc::clone(&p), Arc::clone(&r));
        async move {
            let permit = p.acquire().await.map_err(|e| e.to_string())?;
            permit.forget();
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    server.register_handler("gate", handler).await.unwrap();
    (permits, ran)
}

fn gate_send(p: &Pair, timeout: Duration) -> tokio::task::JoinHandle<active_message::Result<()>> {
    let client = p.client.client();
    let target = p.target();
    tokio::spawn(async move {
        client
            .active_message("gate")?
            .raw_payload(vec![3u8; 200])
            .timeout(timeout)
            .target_instance(target)
            .execute()
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_shm_receiver_counts_one_ring_full_wait_and_one_timeout() {
    // A 4 KiB ring, one handler at a time, a one-slot inbox: a held handler
    // stops the server reading, and the ring fills after a dozen frames.
    let p = pair_with(Flavor::Shm, |b| {
        b.ring_capacity(4096)
            .max_concurrent_handlers(1)
            .inbox_capacity(1)
    })
    .await;
    let (permits, ran) = gate(&p.server).await;
    let target = p.target();
    let mut sent = 0u64;
    let blocked = loop {
        assert!(
            sent < 100,
            "a 4 KiB ring never filled: {:?}",
            link(&p.client, target)
        );
        let send = gate_send(&p, WITHIN);
        sent += 1;
        let waited = eventually(WITHIN, || async {
            send.is_finished() || link(&p.client, target).ring_full_waits > 0
        })
        .await;
        assert!(waited, "a send neither finished nor waited");
        if link(&p.client, target).ring_full_waits > 0 {
            break send;
        }
        send.await.unwrap().unwrap();
    };
    // Behind the waiting send, a call with a short budget times out.
    let late = gate_send(&p, Duration::from_millis(20)).await.unwrap();
    assert!(matches!(late, Err(Error::Timeout(_))), "{late:?}");
    assert!(!blocked.is_finished());
    permits.add_permits(1000);
    blocked.await.unwrap().unwrap();
    let all_ran = eventually(WITHIN, || async { ran.load(Ordering::SeqCst) == sent }).await;
    assert!(
        all_ran,
        "{} of {sent} gate calls ran",
        ran.load(Ordering::SeqCst)
    );
    let counters = link(&p.client, target);
    assert_eq!(counters.ring_full_waits, 1, "{counters:?}");
    assert_eq!(counters.timeouts, 1, "{counters:?}");
    assert_eq!(counters.send_errors, 0, "{counters:?}");
    // The timed-out frame was never written: exactly the delivered ones were.
    assert_eq!(counters.messages_out, sent, "{counters:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_peers_limit_counts_one_send_error() {
    for flavor in [Flavor::Shm, Flavor::Tcp] {
        let p = pair_with(flavor, |b| b.max_message_bytes(1024)).await;
        let target = p.target();
        let sent = p
            .client
            .client()
            .active_message("echo_bytes")
            .unwrap()
            .raw_payload(vec![1u8; 4096])
            .expect_response::<()>()
            .send(target)
            .await;
        assert!(
            matches!(sent, Err(Error::PayloadTooLarge { .. })),
            "{flavor:?}: {:?}",
            sent.err()
        );
        let counters = link(&p.client, target);
        assert_eq!(counters.send_errors, 1, "{flavor:?}: {counters:?}");
        assert_eq!(counters.timeouts, 0, "{flavor:?}: {counters:?}");
        assert_eq!(counters.messages_out, 0, "{flavor:?}: {counters:?}");
        p.shutdown().await;
    }
}

/// Answers a heartbeat probe from `identity` the way a live peer does.
fn pong(router: &zmq::Socket, identity: &[u8], probe: &Header, from: InstanceId) {
    let mut pong = Header::new(Kind::Heartbeat, MessageId(1), from);
    pong.flags = flags::PONG;
    pong.correlation_id = probe.message_id;
    let limit = (1u64 << 20).to_le_bytes();
    let bytes = wire::encode_to_vec(&pong, "", &limit);
    router
        .send_multipart([identity.to_vec(), bytes], 0)
        .unwrap();
}

/// A raw ROUTER playing the server `pretend`: answers every probe; on a
/// message from `garbage`, sends that many malformed frames to the caller.
fn raw_server(
    pretend: InstanceId,
) -> (
    String,
    std::sync::mpsc::Sender<u32>,
    std::thread::JoinHandle<()>,
) {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let (garbage, orders) = std::sync::mpsc::channel::<u32>();
    let thread = std::thread::spawn(move || {
        let mut caller = None;
        loop {
            match orders.try_recv() {
                Ok(n) => {
                    let identity: &Vec<u8> = caller.as_ref().expect("connected first");
                    for _ in 0..n {
                        let bad = b"not a frame".to_vec();
                        router.send_multipart([identity.clone(), bad], 0).unwrap();
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
            if router.poll(zmq::POLLIN, 5).unwrap() == 0 {
                continue;
            }
            let parts = router.recv_multipart(0).unwrap();
            if let Ok(header) = wire::decode_header(&parts[1])
                && header.kind == Kind::Heartbeat
                && !header.has(flags::PONG)
            {
                pong(&router, &parts[0], &header, pretend);
            }
            caller = Some(parts[0].clone());
        }
    });
    (endpoint, garbage, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_from_a_raw_tcp_peer_count_on_its_link() {
    let pretend = InstanceId::new_random();
    let (endpoint, garbage, thread) = raw_server(pretend);
    let client = builder(Flavor::Tcp)
        .transport_policy(TransportPolicy::TcpOnly)
        .build()
        .await
        .unwrap();
    let info = PeerInfo {
        instance_id: pretend,
        tcp_endpoint: Some(endpoint),
        shm_endpoint: None,
        local_endpoint: None,
        host_id: "elsewhere".into(),
        extra_endpoints: Vec::new(),
    };
    client.client().connect_to_peer(info).await.unwrap();
    assert_eq!(link(&client, pretend).protocol_errors, 0);
    garbage.send(3).unwrap();
    let counted = eventually(WITHIN, || async {
        link(&client, pretend).protocol_errors >= 3
    })
    .await;
    let counters = link(&client, pretend);
    assert!(counted, "{counters:?}");
    assert_eq!(counters.protocol_errors, 3, "{counters:?}");
    assert_eq!(client.stats().counters.protocol_errors, 3);
    drop(garbage);
    thread.join().unwrap();
    client.shutdown().await.unwrap();
}

/// `n` calls to the demo `slow` handler, one after another.
async fn slow_calls(p: &Pair, n: u64, ms: u64) {
    for _ in 0..n {
        let out: u64 = p
            .client
            .client()
            .active_message("slow")
            .unwrap()
            .payload(&ms)
            .unwrap()
            .expect_response::<u64>()
            .send(p.target())
            .await
            .unwrap()
            .await_response()
            .await
            .unwrap();
        assert_eq!(out, ms);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_links_never_ring_a_doorbell() {
    // Both ends spin: neither side ever parks, so neither rings.
    let spin = |b: active_message::ActiveMessageManagerBuilder| b.wait_policy(WaitPolicy::Spin);
    let server = spin(builder(Flavor::Shm)).build().await.unwrap();
    common::demo::register_demo_handlers(&server).await.unwrap();
    let client = spin(builder(Flavor::Shm)).build().await.unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let p = Pair { client, server };
    slow_calls(&p, 3, 5).await;
    let counters = link(&p.client, p.target());
    assert_eq!(counters.messages_out, 3, "{counters:?}");
    assert_eq!(
        (counters.parks, counters.doorbell_rings),
        (0, 0),
        "{counters:?}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_parked_reader_rings_its_doorbell() {
    // The server's reader parks as soon as its ring is empty (no spin), and
    // the handler sleeps well past that: requests find it parked, so the
    // client's doorbell count rises, by at most one per frame it wrote.
    let p = pair_with(Flavor::Shm, |b| b.wait_policy(WaitPolicy::Park)).await;
    let mut calls = 0;
    let rang = eventually(WITHIN, || {
        calls += 1;
        async {
            slow_calls(&p, 1, 20).await;
            link(&p.client, p.target()).doorbell_rings > 0
        }
    })
    .await;
    let counters = link(&p.client, p.target());
    assert!(rang, "{calls} calls, no ring: {counters:?}");
    assert!(
        counters.doorbell_rings <= counters.messages_out,
        "{counters:?}"
    );
    // The ring that wakes the client's own parked reader is the server's
    // write: it is counted on the server's side of the link, not here.
    assert!(counters.parks >= 1, "{counters:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_links_count_no_ring_waits() {
    let p = pair(Flavor::Tcp).await;
    slow_calls(&p, 2, 1).await;
    let counters = link(&p.client, p.target());
    assert_eq!(counters.messages_out, 2, "{counters:?}");
    let rings = (
        counters.ring_full_waits,
        counters.parks,
        counters.doorbell_rings,
    );
    assert_eq!(rings, (0, 0, 0), "{counters:?}");
    p.shutdown().await;
}

/// A manager whose only transport is TCP with one-frame queues (send queue
/// and libzmq high-water marks), so a held receiver backs up into the caller
/// after a few frames.
fn tight_tcp() -> active_message::ActiveMessageManagerBuilder {
    use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
    use active_message::transport::{BoxedTransport, Inbox};
    let factory = |local: InstanceId, inbox: Inbox| -> active_message::Result<BoxedTransport> {
        let config = ZmqConfig::new("tcp://127.0.0.1:0")
            .send_queue(1)
            .high_water_mark(1);
        Ok(ZmqTransport::bind(config, local, inbox)?)
    };
    builder(Flavor::Local).transport(factory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_tcp_receiver_counts_one_timeout() {
    let server = tight_tcp()
        .max_concurrent_handlers(1)
        .inbox_capacity(1)
        .build()
        .await
        .unwrap();
    let (permits, ran) = gate(&server).await;
    let client = tight_tcp().build().await.unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let p = Pair { client, server };
    let target = p.target();
    assert_eq!(p.client.stats().peers[0].transport, TransportKind::Tcp);
    let body = vec![3u8; 512 << 10];
    let mut delivered = 0u64;
    // Half-MiB frames fill the socket buffers in a few dozen sends; then a
    // send with a short budget finds no room.
    let late = loop {
        assert!(
            delivered < 200,
            "never backed up: {:?}",
            link(&p.client, target)
        );
        let sent = p
            .client
            .client()
            .active_message("gate")
            .unwrap()
            .raw_payload(body.clone())
            .timeout(Duration::from_millis(50))
            .target_instance(target)
            .execute()
            .await;
        match sent {
            Ok(()) => delivered += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(late, Error::Timeout(_)), "{late:?}");
    let counters = link(&p.client, target);
    assert_eq!(counters.timeouts, 1, "{counters:?}");
    assert_eq!(counters.send_errors, 0, "{counters:?}");
    assert_eq!(counters.messages_out, delivered, "{counters:?}");
    permits.add_permits(1000);
    let all_ran = eventually(WITHIN, || async { ran.load(Ordering::SeqCst) == delivered }).await;
    assert!(all_ran, "{} of {delivered} ran", ran.load(Ordering::SeqCst));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_many_tasks_count_every_frame_of_a_shm_link() {
    // The shm link counts its frames with a load and a store under its
    // writers' lock: tasks sending at once on two threads lose no count.
    const TASKS: u64 = 4;
    const EACH: u64 = 2_000;
    const PAYLOAD: usize = 48;
    let p = pair(Flavor::Shm).await;
    let got = Arc::new(AtomicU64::new(0));
    let g = Arc::clone(&got);
    let sink = am_handler("tally", move |_| {
        g.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    p.server.register_handler("tally", sink).await.unwrap();
    // One frame alone first: its size.
    let first = link(&p.client, p.target());
    let sender = p
        .client
        .client()
        .one_way_sender("tally", p.target())
        .unwrap();
    sender.send_raw(&[0u8; PAYLOAD]).await.unwrap();
    let before = link(&p.client, p.target());
    let frame_bytes = before.bytes_out - first.bytes_out;
    let senders: Vec<_> = (0..TASKS)
        .map(|t| {
            let sender = p
                .client
                .client()
                .one_way_sender("tally", p.target())
                .unwrap();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let batch = [[t as u8; PAYLOAD], [i as u8; PAYLOAD]];
                    match i % 2 {
                        0 => sender.send_raw(&batch[0]).await.unwrap(),
                        _ => sender.send_raw_batch(&batch[..1]).await.unwrap(),
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let after = link(&p.client, p.target());
    let frames = after.messages_out - before.messages_out;
    assert_eq!(frames, TASKS * EACH, "{after:?}");
    assert_eq!(
        after.bytes_out - before.bytes_out,
        frame_bytes * frames,
        "{after:?}"
    );
    let all = TASKS * EACH + 1;
    let arrived = eventually(WITHIN, || async { got.load(Ordering::SeqCst) == all }).await;
    assert!(arrived, "{} of {all} arrived", got.load(Ordering::SeqCst));
    p.shutdown().await;
}
