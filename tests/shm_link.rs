//! The shared-memory transport driven directly, through the `ThinTransport`
//! contract, with inboxes the test controls: `try_send` and backpressure,
//! ordering (small and large frames), replies, link loss on both sides,
//! identity checks, stale and live rendezvous sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::transport::shm::{ShmConfig, ShmTransport};
use active_message::transport::{
    BoxedLink, Inbound, Inbox, InlineSlot, LinkEvents, OutFrame, ThinTransport, TransportKind,
};
use active_message::wire::{self, Header, Kind, ProtocolError};
use active_message::{Error, TransportKind as Kind2};
use active_message::{InstanceId, MessageId};
use parking_lot::Mutex;

/// Records what a transport reports.
#[derive(Default)]
struct Recorder {
    replies: Mutex<Vec<(Header, Vec<u8>)>>,
    lost: Mutex<Vec<InstanceId>>,
    errors: Mutex<Vec<String>>,
}

impl LinkEvents for Recorder {
    fn on_reply(&self, header: &Header, payload: &[u8]) {
        self.replies.lock().push((*header, payload.to_vec()));
    }
    fn on_link_lost(&self, peer: InstanceId) {
        self.lost.lock().push(peer);
    }
    fn on_protocol_error(&self, _peer: Option<InstanceId>, error: &ProtocolError) {
        self.errors.lock().push(error.to_string());
    }
}

struct Node {
    id: InstanceId,
    transport: Arc<ShmTransport>,
    rx: active_message::transport::InvocationReceiver,
    events: Arc<Recorder>,
}

const MAX_FRAME: usize = 16 << 20;

fn config() -> ShmConfig {
    ShmConfig::default().with_dir(std::env::temp_dir().join("am-shm-link-tests"))
}

fn node_with(config: ShmConfig, id: InstanceId, inbox_capacity: usize) -> Node {
    let (tx, rx) = active_message::transport::invocation_queue(inbox_capacity);
    let events = Arc::new(Recorder::default());
    let inbox = Inbox {
        invocations: tx,
        events: Arc::clone(&events) as Arc<dyn LinkEvents>,
        inline: Arc::new(InlineSlot::default()),
        max_frame: MAX_FRAME,
    };
    let transport = ShmTransport::bind(config, id, inbox).unwrap();
    Node {
        id,
        transport,
        rx,
        events,
    }
}

fn node(config: ShmConfig) -> Node {
    node_with(config, InstanceId::new_random(), 1)
}

async fn connect(from: &Node, to: &Node) -> BoxedLink {
    from.transport
        .connect(to.id, &to.transport.local_endpoint().unwrap())
        .await
        .unwrap()
}

fn one_way(sender: InstanceId, seq: u64) -> Header {
    Header::new(Kind::OneWay, MessageId(seq + 1), sender)
}

fn seq_of(inbound: &Inbound) -> u64 {
    u64::from_le_bytes(inbound.payload()[..8].try_into().unwrap())
}

/// The error of a connect that must fail.
fn connect_err(result: Result<BoxedLink, Error>) -> Error {
    match result {
        Ok(_) => panic!("connected where it must not"),
        Err(e) => e,
    }
}

async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_reports_full_send_waits_and_nothing_is_lost() {
    let small = config().with_ring_capacity(4096);
    let mut server = node(small.clone());
    let client = node(small);
    let link = connect(&client, &server).await;
    assert_eq!(link.kind(), TransportKind::Shm);
    assert_eq!(link.peer(), server.id);

    // Nobody reads the server's inbox: the ring fills and `try_send` says so.
    let payload = [0u8; 200];
    let mut sent = 0u64;
    loop {
        let mut body = payload;
        body[..8].copy_from_slice(&sent.to_le_bytes());
        match link.try_send(OutFrame::bytes(one_way(client.id, sent), "h", &body)) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(sent < 1000, "a 4 KiB ring never filled");
    }
    assert!(sent >= 10, "only {sent} frames fit");

    // `send` waits for room instead.
    let waiting = {
        let link = Arc::clone(&link);
        let id = client.id;
        tokio::spawn(async move {
            let mut body = [0u8; 200];
            body[..8].copy_from_slice(&sent.to_le_bytes());
            link.send(OutFrame::bytes(one_way(id, sent), "h", &body))
                .await
        })
    };
    for expected in 0..=sent {
        let inbound = tokio::time::timeout(Duration::from_secs(5), server.rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seq_of(&inbound), expected);
        assert_eq!(inbound.name(), "h");
        assert_eq!(inbound.header.kind, Kind::OneWay);
    }
    waiting.await.unwrap().unwrap();
    assert!(server.events.errors.lock().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_frames_keep_their_order_and_replies_come_back() {
    let mut server = node_with(config(), InstanceId::new_random(), 64);
    let client = node(config());
    let link = connect(&client, &server).await;
    let big = vec![0x5au8; 3 << 20];
    let sizes = [10usize, big.len(), 20, big.len(), 30];
    for (seq, &size) in sizes.iter().enumerate() {
        let mut body = big[..size].to_vec();
        body[..8].copy_from_slice(&(seq as u64).to_le_bytes());
        let frame = OutFrame::bytes(one_way(client.id, seq as u64), "h", &body);
        if seq == 3 {
            link.try_send(frame).unwrap();
        } else {
            link.send(frame).await.unwrap();
        }
    }
    for (seq, &size) in sizes.iter().enumerate() {
        let inbound = server.rx.recv().await.unwrap();
        assert_eq!(seq_of(&inbound), seq as u64);
        assert_eq!(inbound.payload().len(), size);
        assert!(inbound.payload()[8..].iter().all(|&b| b == 0x5a));
    }

    // A request answered through the inbound's reply link.
    let request = Header::new(Kind::Request, MessageId(99), client.id);
    link.send(OutFrame::bytes(request, "echo", b"ping"))
        .await
        .unwrap();
    let inbound = server.rx.recv().await.unwrap();
    let mut reply = Header::new(Kind::Response, MessageId(1), server.id);
    reply.correlation_id = inbound.header.message_id;
    inbound
        .reply_link
        .send(OutFrame::bytes(reply, "", inbound.payload()))
        .await
        .unwrap();
    // And a large reply.
    let mut reply = Header::new(Kind::Response, MessageId(2), server.id);
    reply.correlation_id = MessageId(100);
    inbound
        .reply_link
        .send(OutFrame::bytes(reply, "", &big))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || client
            .events
            .replies
            .lock()
            .len()
            == 2)
        .await
    );
    let replies = client.events.replies.lock();
    assert_eq!(replies[0].0.correlation_id, MessageId(99));
    assert_eq!(replies[0].1, b"ping");
    assert_eq!(replies[1].1.len(), big.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_peer_limit_are_refused() {
    let server = node(config());
    let client = node(config());
    let link = connect(&client, &server).await;
    let body = vec![0u8; MAX_FRAME];
    let err = link
        .send(OutFrame::bytes(one_way(client.id, 0), "h", &body))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    let err = link
        .try_send(OutFrame::bytes(one_way(client.id, 0), "h", &body))
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    assert!(!link.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_link_is_reported_once_on_both_sides() {
    let server = node(config());
    let client = node(config());
    let link = connect(&client, &server).await;
    assert!(
        eventually(Duration::from_secs(5), || server.transport.link_count()
            == 1)
        .await
    );
    link.close();
    assert!(link.is_closed());
    let err = link
        .send(OutFrame::bytes(one_way(client.id, 0), "h", b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PeerLost(p) if p == server.id),
        "{err:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            server.transport.link_count() == 0 && client.transport.link_count() == 0
        })
        .await
    );
    assert_eq!(*server.events.lost.lock(), [client.id]);
    assert_eq!(*client.events.lost.lock(), [server.id]);
    link.close();
    assert_eq!(client.events.lost.lock().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_links_and_removes_the_socket() {
    let server = node(config());
    let client = node(config());
    let link = connect(&client, &server).await;
    let path = server.transport.socket_path().to_path_buf();
    assert!(path.exists());
    server.transport.shutdown().await;
    assert!(!path.exists());
    assert!(eventually(Duration::from_secs(5), || link.is_closed()).await);
    assert!(
        eventually(Duration::from_secs(5), || client.events.lost.lock().len()
            == 1)
        .await
    );
    let err = connect_err(
        client
            .transport
            .connect(server.id, &format!("shm://{}", path.display()))
            .await,
    );
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_endpoint_errors_are_prompt_and_typed() {
    let server = node(config());
    let client = node(config());
    let endpoint = server.transport.local_endpoint().unwrap();
    // Each error's kind shows it was not a handshake timeout.
    let err = connect_err(
        client
            .transport
            .connect(InstanceId::new_random(), &endpoint)
            .await,
    );
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    let err = connect_err(
        client
            .transport
            .connect(server.id, "shm:///nonexistent/am.sock")
            .await,
    );
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    let err = connect_err(
        client
            .transport
            .connect(server.id, "tcp://127.0.0.1:1")
            .await,
    );
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(server.transport.link_count(), 0);
    // Nothing half-made is left: a good connection still works.
    let link = connect(&client, &server).await;
    assert!(!link.is_closed());
    assert_eq!(Kind2::Shm, link.kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = std::env::temp_dir().join(format!("am-stale-{}", &uuid_suffix()));
    let cfg = config().with_dir(&dir);
    let id = InstanceId::new_random();
    // A dead process left its socket file behind.
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join(format!("am-{id}.sock"));
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let first = node_with(cfg.clone(), id, 1);
    assert_eq!(first.transport.socket_path(), path);
    // A live one is never taken over.
    let (tx, _rx) = active_message::transport::invocation_queue(1);
    let inbox = Inbox {
        invocations: tx,
        events: Arc::new(Recorder::default()),
        inline: Arc::default(),
        max_frame: MAX_FRAME,
    };
    let err = ShmTransport::bind(cfg, id, inbox).unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(path.exists());
    let client = node(config());
    connect(&client, &first).await;
    drop(first);
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn uuid_suffix() -> String {
    InstanceId::new_random().to_string()[..8].to_owned()
}

#[test]
fn wire_frames_used_here_are_valid() {
    let frame = wire::encode_to_vec(&one_way(InstanceId::new_random(), 0), "h", b"x");
    wire::decode(&frame, 1024).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_never_hang_a_handshake() {
    let quick = config().with_handshake_timeout(Duration::from_millis(200));
    let server = node(quick.clone());
    let client = node(quick);

    // A connection that never says hello does not hold up anyone else.
    let path = server.transport.socket_path().to_path_buf();
    let silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    let link = connect(&client, &server).await;
    assert!(!link.is_closed());
    // The server gives up on it after the timeout (it sees end of file).
    let mut buf = [0u8; 8];
    let mut silent = silent;
    let n = tokio::time::timeout(Duration::from_secs(2), async {
        use tokio::io::AsyncReadExt;
        silent.read(&mut buf).await
    })
    .await
    .expect("the server kept a silent connection")
    .unwrap_or(0);
    assert_eq!(n, 0);

    // A listener that accepts and never answers: the client gives up promptly.
    let dir = std::env::temp_dir().join("am-shm-link-tests");
    let mute_path = dir.join(format!("mute-{}.sock", uuid_suffix()));
    let mute = tokio::net::UnixListener::bind(&mute_path).unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = mute.accept().await {
            held.push(stream);
        }
    });
    let t0 = Instant::now();
    let err = connect_err(
        client
            .transport
            .connect(server.id, &format!("shm://{}", mute_path.display()))
            .await,
    );
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    held.abort();
    let _ = std::fs::remove_file(&mute_path);
}
