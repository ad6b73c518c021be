//! The server's ROUTER is read by a reader task on the runtime that bound
//! the transport, not by the transport's I/O thread: invocations are routed
//! on the runtime's own threads, a request on an authenticated (trusted)
//! link is answered by a handler run in place there, an untrusted one never
//! runs in place, and the I/O thread reads the ROUTER itself when the
//! task's runtime is not running or is gone.

use std::sync::Arc;
use std::time::Duration;

use active_message::PayloadBuf;
use active_message::transport::zmq::{AuthSecret, ZmqConfig, ZmqTransport};
use active_message::transport::{
    BoxedLink, Inbox, InlineDispatch, InlineSlot, InvocationReceiver, LinkEvents, OutFrame,
    PayloadRef, ThinTransport, invocation_queue,
};
use active_message::wire::{Header, Kind, ProtocolError};
use active_message::{InstanceId, MessageId};
use parking_lot::Mutex;
use tokio::sync::Notify;

const MAX_FRAME: usize = 1 << 20;
/// A failsafe only: every wait below ends on a condition long before.
const FAILSAFE: Duration = Duration::from_secs(20);
/// The name of the transport's I/O thread.
const IO_THREAD: &str = "am-zmq-io";

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Replies the client got, and a signal per reply.
#[derive(Default)]
struct Replies {
    ids: Mutex<Vec<MessageId>>,
    changed: Notify,
}

impl LinkEvents for Replies {
    fn on_reply(&self, header: &Header, _payload: &[u8]) {
        self.ids.lock().push(header.correlation_id);
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
    /// Waits until `count` replies arrived.
    async fn wait_for(&self, count: usize) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.ids.lock().len() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(FAILSAFE, wait)
            .await
            .expect("the replies in time");
    }
}

/// Stands in for the dispatcher: applies cancels, answers requests in
/// place (echoing the payload), and records the thread of every call.
struct Recorder {
    me: InstanceId,
    /// Kind and thread of every frame routed to it.
    calls: Mutex<Vec<(Kind, String)>>,
}

impl InlineDispatch for Recorder {
    fn try_inline(
        &self,
        header: &Header,
        _name: &str,
        _payload: &[u8],
        _reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        if header.kind != Kind::Cancel {
            return false;
        }
        self.calls.lock().push((header.kind, thread_name()));
        true
    }

    fn try_in_place(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        _owned: &mut dyn FnMut() -> PayloadBuf,
        _reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        if header.kind != Kind::Request {
            return self.try_inline(header, name, payload, reply);
        }
        self.calls.lock().push((header.kind, thread_name()));
        let mut answer = Header::new(Kind::Response, MessageId(1), self.me);
        answer.correlation_id = header.message_id;
        reply(OutFrame::bytes(answer, "", payload));
        true
    }
}

struct Node {
    id: InstanceId,
    transport: Arc<ZmqTransport>,
    replies: Arc<Replies>,
    invocations: InvocationReceiver,
    recorder: Arc<Recorder>,
}

/// A transport whose inbox's in-place dispatcher is a [`Recorder`].
fn node(config: ZmqConfig) -> Node {
    let id = InstanceId::new_random();
    let replies = Arc::new(Replies::default());
    let recorder = Arc::new(Recorder {
        me: id,
        calls: Mutex::default(),
    });
    let inline = Arc::new(InlineSlot::default());
    let dispatch: Arc<dyn InlineDispatch> = recorder.clone();
    inline.set(Arc::downgrade(&dispatch));
    let (tx, invocations) = invocation_queue(64);
    let inbox = Inbox {
        inline,
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
        recorder,
    }
}

fn config() -> ZmqConfig {
    ZmqConfig::new("tcp://127.0.0.1:0")
}

fn authenticated() -> ZmqConfig {
    config().auth_secret(AuthSecret::new("a shared secret of some length").unwrap())
}

async fn connect(from: &Node, to: &Node) -> BoxedLink {
    let endpoint = to.transport.local_endpoint().expect("listening");
    from.transport
        .connect(to.id, &endpoint)
        .await
        .expect("connect")
}

/// Sends `count` frames of `kind` with ids from `first` on.
async fn send(link: &BoxedLink, from: InstanceId, kind: Kind, first: u64, count: u64) {
    for id in first..first + count {
        let header = Header::new(kind, MessageId(id), from);
        let frame = OutFrame {
            header,
            name: "echo",
            payload: PayloadRef::Bytes(&id.to_le_bytes()),
        };
        link.send(frame).await.expect("send");
    }
}

/// Answers every request in the inbox with its own payload.
fn serve_inbox(mut invocations: InvocationReceiver, me: InstanceId) {
    tokio::spawn(async move {
        while let Some(inbound) = invocations.recv().await {
            let mut header = Header::new(Kind::Response, MessageId(1), me);
            header.correlation_id = inbound.header.message_id;
            let answer = OutFrame::bytes(header, "", inbound.payload());
            inbound.reply_link.send(answer).await.expect("reply");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_are_routed_on_the_runtime_not_the_io_thread() {
    let server = node(config());
    let client = node(config());
    let link = connect(&client, &server).await;
    // Cancels are applied where the ROUTER is read.
    send(&link, client.id, Kind::Cancel, 1, 200).await;
    let wait = async {
        while server.recorder.calls.lock().len() < 200 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(FAILSAFE, wait)
        .await
        .expect("the cancels in time");
    let calls = server.recorder.calls.lock();
    let on_io = calls.iter().filter(|(_, t)| t == IO_THREAD).count();
    assert_eq!(on_io, 0, "invocations crossed the I/O thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_request_is_answered_in_place_on_the_runtime() {
    let mut server = node(authenticated());
    let client = node(authenticated());
    let link = connect(&client, &server).await;
    send(&link, client.id, Kind::Request, 1, 100).await;
    client.replies.wait_for(100).await;
    let calls = server.recorder.calls.lock().clone();
    assert_eq!(calls.len(), 100, "every request ran in place");
    assert!(
        calls
            .iter()
            .all(|(kind, t)| *kind == Kind::Request && t != IO_THREAD)
    );
    assert!(
        server.invocations.try_recv().is_err(),
        "none went to the inbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_request_never_runs_in_place() {
    let server = node(config());
    let client = node(config());
    let link = connect(&client, &server).await;
    serve_inbox(server.invocations, server.id);
    send(&link, client.id, Kind::Request, 1, 50).await;
    client.replies.wait_for(50).await;
    assert!(
        server.recorder.calls.lock().is_empty(),
        "a handler ran in place"
    );
}

#[test]
fn the_io_thread_reads_the_router_once_the_runtime_that_bound_it_ends() {
    let bound_on = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = bound_on.block_on(async { node(config()) });
    drop(bound_on);
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    main.block_on(async {
        let client = node(config());
        let link = connect(&client, &server).await;
        serve_inbox(server.invocations, server.id);
        send(&link, client.id, Kind::Request, 1, 50).await;
        client.replies.wait_for(50).await;
    });
}

#[test]
fn a_router_whose_runtime_sleeps_is_read_by_the_io_thread() {
    let quick = config()
        .heartbeat_interval(Duration::from_millis(10))
        .heartbeat_timeout(Duration::from_millis(200));
    // The server's reader task lives on a current-thread runtime that only
    // runs inside `block_on`: after this call nothing runs it.
    let sleeping = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = sleeping.block_on(async { node(quick.clone()) });
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    main.block_on(async {
        let client = node(quick);
        // The handshake, the probes of the idle link and the requests are
        // read by the I/O thread.
        let link = connect(&client, &server).await;
        let counters = link.counters().expect("zmq links count");
        let pongs = async {
            while counters.values().messages_in < 30 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(FAILSAFE, pongs)
            .await
            .expect("pongs in time");
        serve_inbox(server.invocations, server.id);
        send(&link, client.id, Kind::Request, 1, 20).await;
        client.replies.wait_for(20).await;
        assert!(!link.is_closed(), "lost while the server's runtime slept");
    });
    drop(sleeping);
}
