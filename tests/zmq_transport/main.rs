//! Integration tests of the ZeroMQ-over-TCP transport through its public API,
//! with raw libzmq sockets standing in for broken, silent or killed peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
use active_message::transport::{BoxedLink, Inbound, Inbox, LinkEvents, OutFrame, ThinTransport};
use active_message::wire::{self, Header, Kind, ProtocolError, flags};
use active_message::{InstanceId, MessageId};
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

mod connect;
mod delivery;
mod limits;
mod loss;
