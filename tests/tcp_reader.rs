//! An outbound ZeroMQ link's replies are read by a reader task on the
//! runtime that connected it, not by the transport's I/O thread: replies
//! reach the runtime's own threads (also when no caller waits for them),
//! heartbeats still keep an idle link up, a goodbye still ends it, the I/O
//! thread takes reading back when the task's runtime ends, and one-way
//! frames keep their order and bound through the link's preallocated queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
use active_message::transport::{
    BoxedLink, Inbox, LinkEvents, OutFrame, PayloadRef, ThinTransport,
};
use active_message::wire::{Header, Kind, ProtocolError};
use active_message::{Error, InstanceId, MessageId};
use parking_lot::Mutex;
use tokio::sync::Notify;

const MAX_FRAME: usize = 1 << 20;
/// A failsafe only: every wait below ends on a condition long before.
const FAILSAFE: Duration = Duration::from_secs(30);
/// The name of the transport's I/O thread.
const IO_THREAD: &str = "am-zmq-io";

/// What reached the runtime, and on which threads.
#[derive(Default)]
struct Seen {
    /// Correlation id and reading thread of every reply.
    replies: Mutex<Vec<(MessageId, String)>>,
    lost: AtomicUsize,
    /// How many replies had arrived when the link was reported lost.
    replies_at_loss: Mutex<Option<usize>>,
    changed: Notify,
}

impl LinkEvents for Seen {
    fn on_reply(&self, header: &Header, _payload: &[u8]) {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.replies.lock().push((header.correlation_id, thread));
        self.changed.notify_waiters();
    }

    fn on_link_lost(&self, _peer: InstanceId) {
        *self.replies_at_loss.lock() = Some(self.reply_count());
        self.lost.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn on_protocol_error(&self, peer: Option<InstanceId>, error: &ProtocolError) {
        panic!("protocol error from {peer:?}: {error}");
    }
}

impl Seen {
    /// Waits until `done` holds (checked at every change).
    async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if done(self) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(FAILSAFE, wait)
            .await
            .expect("the condition in time");
    }

    fn reply_count(&self) -> usize {
        self.replies.lock().len()
    }

    /// Replies read on the I/O thread.
    fn on_io_thread(&self) -> usize {
        let replies = self.replies.lock();
        replies.iter().filter(|(_, t)| t == IO_THREAD).count()
    }
}

struct Node {
    id: InstanceId,
    transport: Arc<ZmqTransport>,
    seen: Arc<Seen>,
    invocations: active_message::transport::InvocationReceiver,
}

fn node(config: ZmqConfig, inbox_capacity: usize) -> Node {
    let id = InstanceId::new_random();
    let seen = Arc::new(Seen::default());
    let (tx, invocations) = active_message::transport::invocation_queue(inbox_capacity);
    let inbox = Inbox {
        inline: Default::default(),
        invocations: tx,
        events: seen.clone(),
        max_frame: MAX_FRAME,
    };
    let transport = ZmqTransport::bind(config, id, inbox).expect("bind");
    Node {
        id,
        transport,
        seen,
        invocations,
    }
}

fn config() -> ZmqConfig {
    ZmqConfig::new("tcp://127.0.0.1:0")
}

async fn connect(from: &Node, to: &Node) -> BoxedLink {
    let endpoint = to.transport.local_endpoint().expect("listening");
    from.transport
        .connect(to.id, &endpoint)
        .await
        .expect("connect")
}

fn frame(header: Header, payload: &[u8]) -> OutFrame<'_> {
    OutFrame {
        header,
        name: "echo",
        payload: PayloadRef::Bytes(payload),
    }
}

/// Answers every request with its own payload, through its reply link.
fn serve_echo(mut server: Node) -> tokio::task::JoinHandle<Node> {
    let me = server.id;
    tokio::spawn(async move {
        while let Some(inbound) = server.invocations.recv().await {
            if inbound.header.kind != Kind::Request {
                continue;
            }
            let mut header = Header::new(Kind::Response, MessageId(1), me);
            header.correlation_id = inbound.header.message_id;
            let answer = OutFrame {
                header,
                name: "",
                payload: PayloadRef::Bytes(inbound.payload()),
            };
            inbound.reply_link.send(answer).await.expect("reply");
        }
        server
    })
}

/// Sends requests `first..first + count` and waits for all their replies.
async fn requests(client: &Node, link: &BoxedLink, first: u64, count: u64) {
    let want = client.seen.reply_count() + count as usize;
    for id in first..first + count {
        let header = Header::new(Kind::Request, MessageId(id), client.id);
        link.send(frame(header, &id.to_le_bytes()))
            .await
            .expect("send");
    }
    client.seen.wait_until(|s| s.reply_count() >= want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_read_on_the_runtime_even_when_no_caller_waits() {
    let server = node(config(), 64);
    let client = node(config(), 64);
    let link = connect(&client, &server).await;
    let _serving = serve_echo(server);
    // Nobody waits on these calls: the replies are read all the same.
    requests(&client, &link, 1, 300).await;
    assert_eq!(client.seen.reply_count(), 300);
    assert_eq!(
        client.seen.on_io_thread(),
        0,
        "replies crossed the I/O thread"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_read_by_its_task_outlives_the_heartbeat_timeout() {
    let quick = config()
        .heartbeat_interval(Duration::from_millis(10))
        .heartbeat_timeout(Duration::from_millis(40));
    let server = node(quick.clone(), 8);
    let client = node(quick, 8);
    let link = connect(&client, &server).await;
    let _serving = serve_echo(server);
    // Pongs to the idle link's probes, read by its task, keep it up: wait
    // for many more than a heartbeat timeout's worth of them. (Each probe
    // the I/O thread sends may take the signal the task sleeps on; a pong
    // stranded that way loses the link.)
    let counters = link.counters().expect("zmq links count");
    let wait = async {
        while counters.values().messages_in < 30 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(FAILSAFE, wait)
        .await
        .expect("pongs in time");
    assert!(!link.is_closed(), "the idle link was lost");
    assert_eq!(client.seen.lost.load(Ordering::SeqCst), 0);
    requests(&client, &link, 1, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_loss_ends_a_link_read_by_its_task_once() {
    let mut server = node(config(), 8);
    let client = node(config(), 8);
    let link = connect(&client, &server).await;
    // A request answered, so the task has read from this link.
    let header = Header::new(Kind::Request, MessageId(1), client.id);
    link.send(frame(header, b"x")).await.expect("send");
    let inbound = server.invocations.recv().await.expect("request");
    let mut answer = Header::new(Kind::Response, MessageId(1), server.id);
    answer.correlation_id = inbound.header.message_id;
    inbound
        .reply_link
        .send(frame(answer, b"x"))
        .await
        .expect("reply");
    client.seen.wait_until(|s| s.reply_count() == 1).await;
    // The server goes (a goodbye, then the connection closes).
    server.transport.shutdown().await;
    client
        .seen
        .wait_until(|s| s.lost.load(Ordering::SeqCst) > 0)
        .await;
    assert!(link.is_closed());
    let header = Header::new(Kind::Request, MessageId(2), client.id);
    let err = link
        .send(frame(header, b"y"))
        .await
        .expect_err("link closed");
    assert!(matches!(err, Error::PeerLost(_)), "{err:?}");
    assert_eq!(client.seen.lost.load(Ordering::SeqCst), 1, "reported once");
}

#[test]
fn the_io_thread_reads_again_once_the_tasks_runtime_ends() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, client) = main.block_on(async { (node(config(), 64), node(config(), 64)) });
    // The link (and its reader task) is made on a runtime that then ends.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let link = first.block_on(connect(&client, &server));
    drop(first);
    main.block_on(async {
        let _serving = serve_echo(server);
        requests(&client, &link, 1, 50).await;
        assert_eq!(client.seen.on_io_thread(), 50, "the I/O thread took over");
        assert!(!link.is_closed());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_frames_keep_order_and_bound_through_the_queue() {
    let tight = config().high_water_mark(2).send_queue(4);
    let mut server = node(tight.clone(), 1);
    let client = node(tight, 8);
    let link = connect(&client, &server).await;
    let payload = vec![0x7eu8; 16 * 1024];
    // Nobody reads the server's inbox: the sockets, then the queue, fill.
    let mut sent = 0u64;
    let full = loop {
        let header = Header::new(Kind::OneWay, MessageId(sent + 1), client.id);
        match link.try_send(frame(header, &payload)) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break true,
            Err(other) => panic!("try_send: {other}"),
        }
        if sent > 100_000 {
            break false;
        }
        if sent.is_multiple_of(16) {
            tokio::task::yield_now().await;
        }
    };
    assert!(full, "the link never said Full");
    // A waiting send gets its room once the server reads.
    let waiting = {
        let link = link.clone();
        let (me, payload) = (client.id, payload.clone());
        tokio::spawn(async move {
            let header = Header::new(Kind::OneWay, MessageId(sent + 1), me);
            link.send(frame(header, &payload)).await
        })
    };
    for id in 1..=sent + 1 {
        let inbound = tokio::time::timeout(FAILSAFE, server.invocations.recv())
            .await
            .expect("a frame in time")
            .expect("inbox open");
        assert_eq!(inbound.header.message_id, MessageId(id), "in order");
    }
    waiting.await.unwrap().expect("the waiting send went out");
}

#[test]
fn a_link_whose_runtime_sleeps_is_read_by_the_io_thread() {
    let quick = config()
        .heartbeat_interval(Duration::from_millis(10))
        .heartbeat_timeout(Duration::from_millis(40));
    let serving_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, client) = serving_rt.block_on(async { (node(quick.clone(), 8), node(quick, 8)) });
    // The link's reader task lives on a current-thread runtime that only
    // runs inside `block_on`: between calls nothing reads for it.
    let caller_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let link = caller_rt.block_on(connect(&client, &server));
    let _serving = serving_rt.spawn(async move { serve_echo(server).await });
    // Many heartbeat timeouts' worth of pongs while the runtime sleeps.
    let counters = link.counters().expect("zmq links count");
    let failsafe = std::time::Instant::now() + FAILSAFE;
    while counters.values().messages_in < 30 && !link.is_closed() {
        assert!(std::time::Instant::now() < failsafe, "no pongs read");
        std::thread::yield_now();
    }
    assert!(!link.is_closed(), "lost while its runtime slept");
    assert_eq!(client.seen.lost.load(Ordering::SeqCst), 0);
    caller_rt.block_on(requests(&client, &link, 1, 10));
}

#[test]
fn a_reply_sent_before_the_peer_went_arrives_before_its_loss() {
    let serving_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (mut server, client) =
        serving_rt.block_on(async { (node(config(), 8), node(config(), 8)) });
    // The reader task's runtime does not run after the connect: the reply
    // and the loss both reach the I/O thread first.
    let caller_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let link = caller_rt.block_on(connect(&client, &server));
    let header = Header::new(Kind::Request, MessageId(7), client.id);
    link.try_send(frame(header, b"last words")).expect("send");
    serving_rt.block_on(async {
        let inbound = server.invocations.recv().await.expect("request");
        let mut answer = Header::new(Kind::Response, MessageId(1), server.id);
        answer.correlation_id = inbound.header.message_id;
        let reply = frame(answer, b"last words");
        inbound.reply_link.send(reply).await.expect("reply");
        server.transport.shutdown().await;
    });
    let failsafe = std::time::Instant::now() + FAILSAFE;
    while client.seen.lost.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < failsafe, "loss not reported");
        std::thread::yield_now();
    }
    assert_eq!(
        *client.seen.replies_at_loss.lock(),
        Some(1),
        "the reply came before the loss"
    );
}
