//! Callers send requests and replies straight into the ZeroMQ sockets (the
//! I/O thread only takes what finds the socket full or a queue behind it,
//! and one-way frames): many callers on one link from a multi-thread
//! runtime, and one caller whose frames switch between the direct and the
//! queued path under HWM backpressure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
use active_message::transport::{
    BoxedLink, Inbox, LinkEvents, OutFrame, PayloadRef, ThinTransport,
};
use active_message::wire::{Header, Kind, ProtocolError};
use active_message::{InstanceId, MessageId};
use parking_lot::Mutex;
use tokio::sync::Notify;

const MAX_FRAME: usize = 1 << 20;
/// A failsafe only: every wait below ends on a condition long before.
const FAILSAFE: Duration = Duration::from_secs(30);

/// Replies by correlation id, and a way to wait for a count of them.
#[derive(Default)]
struct Replies {
    seen: Mutex<HashMap<MessageId, Vec<u8>>>,
    duplicates: Mutex<usize>,
    changed: Notify,
}

impl LinkEvents for Replies {
    fn on_reply(&self, header: &Header, payload: &[u8]) {
        if self
            .seen
            .lock()
            .insert(header.correlation_id, payload.to_vec())
            .is_some()
        {
            *self.duplicates.lock() += 1;
        }
        self.changed.notify_waiters();
    }

    fn on_link_lost(&self, peer: InstanceId) {
        panic!("link to {peer} lost");
    }

    fn on_protocol_error(&self, peer: Option<InstanceId>, error: &ProtocolError) {
        panic!("protocol error from {peer:?}: {error}");
    }
}

impl Replies {
    async fn wait_for_count(&self, count: usize) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.seen.lock().len() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(FAILSAFE, wait)
            .await
            .expect("every reply in time");
    }
}

struct Node {
    id: InstanceId,
    transport: Arc<ZmqTransport>,
    replies: Arc<Replies>,
    invocations: active_message::transport::InvocationReceiver,
}

fn node(config: ZmqConfig, inbox_capacity: usize) -> Node {
    let id = InstanceId::new_random();
    let replies = Arc::new(Replies::default());
    let (tx, invocations) = active_message::transport::invocation_queue(inbox_capacity);
    let inbox = Inbox {
        inline: Default::default(),
        invocations: tx,
        events: replies.clone(),
        max_frame: MAX_FRAME,
    };
    let transport = ZmqTransport::bind(config, id, inbox).expect("bind");
    Node {
        id,
        transport,
        replies,
        invocations,
    }
}

async fn connect(from: &Node, to: &Node) -> BoxedLink {
    let endpoint = to.transport.local_endpoint().expect("listening");
    from.transport
        .connect(to.id, &endpoint)
        .await
        .expect("connect")
}

fn frame<'a>(header: Header, payload: &'a [u8]) -> OutFrame<'a> {
    OutFrame {
        header,
        name: "echo",
        payload: PayloadRef::Bytes(payload),
    }
}

/// Answers every request with its own payload, through its reply link.
fn serve_echo(mut server: Node, me: InstanceId) -> tokio::task::JoinHandle<Node> {
    tokio::spawn(async move {
        while let Some(inbound) = server.invocations.recv().await {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_on_one_link_get_their_own_replies_once() {
    const TASKS: u64 = 8;
    const EACH: u64 = 400;
    let server = node(ZmqConfig::new("tcp://127.0.0.1:0"), 64);
    let client = node(ZmqConfig::new("tcp://127.0.0.1:0"), 64);
    let link = connect(&client, &server).await;
    let server_id = server.id;
    let _serving = serve_echo(server, server_id);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let link = link.clone();
        let me = client.id;
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let id = task * EACH + i + 1;
                let payload = id.to_le_bytes();
                let header = Header::new(Kind::Request, MessageId(id), me);
                // Half go through `try_send` (full queues fall back to `send`).
                if i % 2 == 0 && link.try_send(frame(header, &payload)).is_ok() {
                    continue;
                }
                link.send(frame(header, &payload)).await.expect("send");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = (TASKS * EACH) as usize;
    client.replies.wait_for_count(total).await;
    let seen = client.replies.seen.lock();
    for (id, payload) in seen.iter() {
        assert_eq!(payload.as_slice(), &id.0.to_le_bytes(), "reply to {id:?}");
    }
    assert_eq!(seen.len(), total);
    assert_eq!(*client.replies.duplicates.lock(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_frames_keep_their_order_through_backpressure() {
    let tight = ZmqConfig::new("tcp://127.0.0.1:0")
        .high_water_mark(2)
        .send_queue(2);
    let mut server = node(tight.clone(), 1);
    let client = node(tight, 8);
    let link = connect(&client, &server).await;
    let payload = vec![0x5au8; 32 * 1024];
    const FRAMES: u64 = 600;
    let sender = {
        let link = link.clone();
        let payload = payload.clone();
        let me = client.id;
        tokio::spawn(async move {
            for id in 1..=FRAMES {
                // Requests go direct whenever they may (one-way frames
                // always queue); nobody answers them here.
                let header = Header::new(Kind::Request, MessageId(id), me);
                link.send(frame(header, &payload)).await.expect("send");
            }
        })
    };
    // A slow reader: the sender meets a full socket and a full queue, and
    // its later frames go direct again once both have drained.
    for id in 1..=FRAMES {
        let inbound = tokio::time::timeout(FAILSAFE, server.invocations.recv())
            .await
            .expect("a frame in time")
            .expect("inbox open");
        assert_eq!(inbound.header.message_id, MessageId(id));
        assert_eq!(inbound.payload().len(), payload.len());
        if id % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    sender.await.unwrap();
    let counters = link.counters().expect("zmq links count");
    assert_eq!(counters.values().messages_out, FRAMES);
}
