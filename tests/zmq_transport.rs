//! Integration tests of the ZeroMQ-over-TCP transport through its public API,
//! with raw libzmq sockets standing in for broken, silent or killed peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
use active_message::transport::{
    BoxedLink, Inbound, Inbox, LinkEvents, OutFrame, ThinTransport, TransportKind,
};
use active_message::wire::{self, ErrorCode, Header, Kind, ProtocolError, flags};
use active_message::{Error, InstanceId, MessageId};
use parking_lot::Mutex;
use tokio::sync::Notify;

const MAX_FRAME: usize = 1 << 20;
/// Generous bound for conditions that should hold within milliseconds.
const SOON: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- fixtures

#[derive(Default)]
struct Seen {
    replies: Vec<(Header, Vec<u8>)>,
    lost: Vec<(InstanceId, Instant)>,
    protocol_errors: Vec<(Option<InstanceId>, ProtocolError)>,
}

/// A `LinkEvents` that records everything and lets a test wait on conditions.
#[derive(Default)]
struct Collector {
    seen: Mutex<Seen>,
    changed: Notify,
}

impl LinkEvents for Collector {
    fn on_reply(&self, header: &Header, payload: &[u8]) {
        self.seen.lock().replies.push((*header, payload.to_vec()));
        self.changed.notify_waiters();
    }

    fn on_link_lost(&self, peer: InstanceId) {
        self.seen.lock().lost.push((peer, Instant::now()));
        self.changed.notify_waiters();
    }

    fn on_protocol_error(&self, peer: Option<InstanceId>, error: &ProtocolError) {
        self.seen.lock().protocol_errors.push((peer, error.clone()));
        self.changed.notify_waiters();
    }
}

impl Collector {
    /// Waits until `check` returns a value; panics after `within`.
    async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = check(&self.seen.lock()) {
                return value;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out after {within:?} waiting for {what}");
            }
        }
    }

    fn lost_count(&self, peer: InstanceId) -> usize {
        self.seen
            .lock()
            .lost
            .iter()
            .filter(|(p, _)| *p == peer)
            .count()
    }
}

struct Node {
    id: InstanceId,
    transport: Arc<ZmqTransport>,
    events: Arc<Collector>,
    invocations: active_message::transport::InvocationReceiver,
}

impl Node {
    fn endpoint(&self) -> String {
        self.transport
            .local_endpoint()
            .expect("a listening transport")
    }

    async fn connect_to(&self, other: &Node) -> BoxedLink {
        self.transport
            .connect(other.id, &other.endpoint())
            .await
            .expect("connect")
    }

    async fn next_invocation(&mut self) -> Inbound {
        tokio::time::timeout(SOON, self.invocations.recv())
            .await
            .expect("an invocation in time")
            .expect("inbox open")
    }
}

fn node_with(config: ZmqConfig, inbox_capacity: usize, max_frame: usize) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let id = InstanceId::new_random();
    let events = Arc::new(Collector::default());
    let (tx, invocations) = active_message::transport::invocation_queue(inbox_capacity);
    let inbox = Inbox {
        inline: Default::default(),
        invocations: tx,
        events: events.clone(),
        max_frame,
    };
    let transport = ZmqTransport::bind(config, id, inbox).expect("bind");
    Node {
        id,
        transport,
        events,
        invocations,
    }
}

fn loopback() -> ZmqConfig {
    ZmqConfig::new("tcp://127.0.0.1:0")
}

fn node() -> Node {
    node_with(loopback(), 64, MAX_FRAME)
}

fn header(kind: Kind, id: u64, sender: InstanceId) -> Header {
    Header::new(kind, MessageId(id), sender)
}

fn frame<'a>(header: Header, name: &'a str, payload: &'a [u8]) -> OutFrame<'a> {
    OutFrame {
        header,
        name,
        payload: active_message::transport::PayloadRef::Bytes(payload),
    }
}

fn pong_for(probe: &Header, from: InstanceId) -> Vec<u8> {
    let mut pong = header(Kind::Heartbeat, 1, from);
    pong.flags = flags::PONG;
    pong.correlation_id = probe.message_id;
    wire::encode_to_vec(&pong, "", &(MAX_FRAME as u64).to_le_bytes())
}

/// A raw ROUTER that answers the handshake probe as instance `pretend`, then
/// ignores everything until `close` fires, then closes without a goodbye.
fn raw_server(
    pretend: InstanceId,
) -> (
    String,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let (close, closed) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let parts = router.recv_multipart(0).unwrap();
        let probe = wire::decode_header(&parts[1]).unwrap();
        assert_eq!(probe.kind, Kind::Heartbeat);
        router
            .send_multipart([parts[0].clone(), pong_for(&probe, pretend)], 0)
            .unwrap();
        // Silent from now on: read (and drop) whatever comes until told to die.
        while closed.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
            if router.poll(zmq::POLLIN, 10).unwrap() > 0 {
                let _ = router.recv_multipart(0);
            }
        }
        drop(router);
    });
    (endpoint, close, thread)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_reaches_the_server_and_its_reply_reaches_the_caller() {
    let mut server = node();
    let client = node();
    let link = client.connect_to(&server).await;
    assert_eq!(link.peer(), server.id);
    assert_eq!(link.kind(), TransportKind::Tcp);

    let mut request = header(Kind::Request, 7, client.id);
    request.flags = flags::RECEIPT;
    request.timeout_us = 1_500_000;
    link.send(frame(request, "echo", b"hello")).await.unwrap();

    let inbound = server.next_invocation().await;
    assert_eq!(inbound.header, request);
    assert_eq!(inbound.name(), "echo");
    assert_eq!(inbound.payload(), b"hello");
    assert_eq!(inbound.reply_link.peer(), client.id);

    let mut response = header(Kind::Response, 1, server.id);
    response.correlation_id = request.message_id;
    inbound
        .reply_link
        .send(frame(response, "", b"HELLO"))
        .await
        .unwrap();
    let (got, payload) = client
        .events
        .wait_for("the response", SOON, |seen| seen.replies.first().cloned())
        .await;
    assert_eq!(got, response);
    assert_eq!(payload, b"HELLO");

    // A second connect to the same peer gives the same live link.
    let again = client.connect_to(&server).await;
    assert!(Arc::ptr_eq(&link, &again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_frames_arrive_in_order() {
    let mut server = node();
    let client = node();
    let link = client.connect_to(&server).await;
    let sender = tokio::spawn(async move {
        for i in 1..=1000u64 {
            let h = header(Kind::OneWay, i, InstanceId::nil());
            link.send(frame(h, "count", &i.to_le_bytes()))
                .await
                .unwrap();
        }
        link
    });
    for i in 1..=1000u64 {
        let inbound = server.next_invocation().await;
        assert_eq!(inbound.header.message_id, MessageId(i));
        assert_eq!(inbound.payload(), i.to_le_bytes());
    }
    sender.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_bind_advertises_a_routable_endpoint_with_the_real_port() {
    let mut server = node_with(ZmqConfig::new("tcp://0.0.0.0:0"), 8, MAX_FRAME);
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("tcp://"), "{endpoint}");
    assert!(!endpoint.contains("0.0.0.0"), "{endpoint}");
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert!(
        server
            .transport
            .bound_endpoint()
            .ends_with(&format!(":{port}"))
    );

    // Reachable as advertised.
    let client = node();
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::OneWay, 1, client.id), "x", b""))
        .await
        .unwrap();
    assert_eq!(server.next_invocation().await.name(), "x");

    // The advertise host overrides.
    let named = node_with(
        ZmqConfig::new("tcp://0.0.0.0:0").advertise_host("node7.example"),
        8,
        MAX_FRAME,
    );
    assert!(named.endpoint().starts_with("tcp://node7.example:"));
}

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
async fn malformed_frames_are_counted_answered_and_the_listener_keeps_serving() {
    let mut server = node();
    let endpoint = server.endpoint();
    let anon = InstanceId::new_random();
    let good = wire::encode_to_vec(&header(Kind::Request, 41, anon), "echo", b"payload");

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut unknown_kind = good.clone();
    unknown_kind[5] = 200;
    let mut lying_length = good.clone();
    lying_length[56..64].copy_from_slice(&1_000u64.to_le_bytes());
    let mut bad_name = good.clone();
    bad_name[64] = 0xff;
    bad_name[8..16].copy_from_slice(&42u64.to_le_bytes());

    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&endpoint).unwrap();
    raw.send(&b"garbage"[..], 0).unwrap();
    raw.send(bad_magic, 0).unwrap();
    raw.send(unknown_kind, 0).unwrap();
    raw.send(lying_length, 0).unwrap(); // readable header, id 41: answered
    raw.send(bad_name, 0).unwrap(); // readable header, id 42: answered
    raw.send_multipart([good.clone(), b"extra".to_vec()], 0)
        .unwrap(); // wrong shape, id 41
    let errors = server
        .events
        .wait_for("six protocol errors", SOON, |seen| {
            (seen.protocol_errors.len() >= 6).then(|| seen.protocol_errors.clone())
        })
        .await;
    assert!(matches!(errors[0].1, ProtocolError::Truncated(7)));
    assert!(matches!(errors[1].1, ProtocolError::BadMagic(_)));
    assert!(matches!(errors[2].1, ProtocolError::UnknownKind(200)));
    assert!(matches!(errors[3].1, ProtocolError::LengthMismatch { .. }));
    assert!(matches!(errors[4].1, ProtocolError::BadName));
    assert_eq!(errors[3].0, Some(anon));

    // Answers for the frames whose header was readable.
    let mut answered = Vec::new();
    while answered.len() < 3 {
        assert!(raw.poll(zmq::POLLIN, 5_000).unwrap() > 0, "no error answer");
        let bytes = raw.recv_bytes(0).unwrap();
        let answer = wire::decode(&bytes, MAX_FRAME).unwrap();
        assert_eq!(answer.header.kind, Kind::Error);
        assert_eq!(
            ErrorCode::from_u8(answer.header.error_code),
            ErrorCode::Codec
        );
        assert_eq!(answer.header.sender, server.id);
        answered.push(answer.header.correlation_id.0);
    }
    answered.sort_unstable();
    assert_eq!(answered, [41, 41, 42]);

    // The same raw peer, and a proper client, are still served.
    raw.send(good, 0).unwrap();
    let inbound = server.next_invocation().await;
    assert_eq!(inbound.header.message_id, MessageId(41));
    let client = node();
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::OneWay, 5, client.id), "after", b""))
        .await
        .unwrap();
    assert_eq!(server.next_invocation().await.name(), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_by_libzmq_and_others_are_still_served() {
    let max = 64 * 1024;
    let mut server = node_with(loopback(), 8, max);
    let endpoint = server.endpoint();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    let monitor_endpoint = "inproc://oversize-monitor";
    raw.monitor(monitor_endpoint, zmq::SocketEvent::DISCONNECTED as i32)
        .unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.connect(monitor_endpoint).unwrap();
    raw.connect(&endpoint).unwrap();
    let anon = InstanceId::new_random();
    let huge = wire::encode_to_vec(&header(Kind::OneWay, 9, anon), "big", &vec![7u8; 2 * max]);
    raw.send(huge, 0).unwrap();
    // libzmq drops the connection that carried it.
    assert!(
        monitor.poll(zmq::POLLIN, 5_000).unwrap() > 0,
        "no disconnect"
    );

    let client = node_with(loopback(), 8, max);
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::OneWay, 10, client.id), "small", b"ok"))
        .await
        .unwrap();
    let inbound = server.next_invocation().await;
    assert_eq!(
        inbound.name(),
        "small",
        "the oversized frame must never arrive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_either_ends_limit_are_refused_before_sending() {
    let server = node_with(loopback(), 8, 64 * 1024);
    let client = node_with(loopback(), 8, MAX_FRAME);
    let link = client.connect_to(&server).await;
    let h = header(Kind::OneWay, 1, client.id);
    // Within the client's limit but over the server's (announced at connect).
    let payload = vec![0u8; 100 * 1024];
    let over = frame(h, "big", &payload);
    assert!(matches!(
        link.try_send(over),
        Err(Error::PayloadTooLarge { max, .. }) if max == 64 * 1024
    ));
    assert!(matches!(
        link.send(over).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    // Over our own limit too.
    let small_client = node_with(loopback(), 8, 4096);
    let link = small_client.connect_to(&server).await;
    let payload = vec![0u8; 5000];
    assert!(matches!(
        link.try_send(frame(h, "big", &payload)),
        Err(Error::PayloadTooLarge { max: 4096, .. })
    ));
    assert!(!link.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbox_pushes_back_to_the_sender_without_losing_the_link() {
    // The stall below must outlast the heartbeat timeout, but a live link must
    // not be declared lost because a busy machine delayed a heartbeat: with a
    // 50 ms interval and a 1 s timeout, twenty heartbeats in a row would have
    // to be late.
    let heartbeat_timeout = Duration::from_secs(1);
    let tight = loopback()
        .high_water_mark(4)
        .send_queue(4)
        .heartbeat_interval(Duration::from_millis(50))
        .heartbeat_timeout(heartbeat_timeout);
    let mut server = node_with(tight.clone(), 1, MAX_FRAME);
    let client = node_with(tight, 8, MAX_FRAME);
    let link = client.connect_to(&server).await;
    let payload = vec![0xabu8; 64 * 1024];
    let make = |i: u64| frame(header(Kind::OneWay, i, InstanceId::nil()), "bulk", &payload);

    // Fill with try_send until Full, then check that send() waits; if it got
    // through after all (the I/O thread drained meanwhile), fill again.
    let mut next = 1u64;
    let mut saw_full = 0;
    loop {
        assert!(next < 20_000, "backpressure never reached the sender");
        match link.try_send(make(next)) {
            Ok(()) => {
                next += 1;
                continue;
            }
            Err(Error::Full) => saw_full += 1,
            Err(err) => panic!("try_send while filling: {err}"),
        }
        match tokio::time::timeout(2 * heartbeat_timeout, link.send(make(next))).await {
            Ok(result) => {
                result.expect("send while filling");
                next += 1;
            }
            Err(_waited) => break,
        }
    }
    assert!(saw_full > 0);
    // The link survived a stall longer than the heartbeat timeout (the
    // stalled server keeps saying it lives).
    assert!(!link.is_closed());
    assert_eq!(client.events.lost_count(server.id), 0);

    // A waiting send completes once the server drains, and all arrive in order.
    let waiting = {
        let link = link.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            let h = header(Kind::OneWay, next, InstanceId::nil());
            link.send(frame(h, "bulk", &payload)).await
        })
    };
    for i in 1..=next {
        let inbound = server.next_invocation().await;
        assert_eq!(inbound.header.message_id, MessageId(i));
        assert_eq!(inbound.payload().len(), payload.len());
    }
    waiting.await.unwrap().unwrap();
    assert_eq!(client.events.lost_count(server.id), 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_go_back_to_the_client_that_asked() {
    let mut server = node();
    let clients: Vec<Node> = (0..3).map(|_| node()).collect();
    let mut links = Vec::new();
    for client in &clients {
        links.push(client.connect_to(&server).await);
    }
    for (i, (client, link)) in clients.iter().zip(&links).enumerate() {
        for j in 0..10u64 {
            let id = (i as u64) * 100 + j + 1;
            link.send(frame(header(Kind::Request, id, client.id), "who", b""))
                .await
                .unwrap();
        }
    }
    for _ in 0..30 {
        let inbound = server.next_invocation().await;
        assert_eq!(inbound.reply_link.peer(), inbound.header.sender);
        let mut response = header(Kind::Response, 1, server.id);
        response.correlation_id = inbound.header.message_id;
        let asker = inbound.header.sender.as_bytes().to_vec();
        inbound
            .reply_link
            .send(frame(response, "", &asker))
            .await
            .unwrap();
    }
    for (i, client) in clients.iter().enumerate() {
        let replies = client
            .events
            .wait_for("ten replies", SOON, |seen| {
                (seen.replies.len() >= 10).then(|| seen.replies.clone())
            })
            .await;
        assert_eq!(replies.len(), 10);
        for (j, (h, payload)) in replies.iter().enumerate() {
            assert_eq!(h.correlation_id, MessageId((i as u64) * 100 + j as u64 + 1));
            assert_eq!(payload.as_slice(), client.id.as_bytes());
        }
    }
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
