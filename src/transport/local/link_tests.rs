//! The link's own bookkeeping: the way back made once and without a cycle,
//! frames queued whole with their way back, inline replies handed over
//! unchanged, and a closed peer refused.

use std::sync::Mutex;

use super::*;
use crate::ids::MessageId;
use crate::transport::invocations::{InvocationReceiver, invocation_queue};
use crate::transport::{InlineSlot, LinkEvents};
use crate::wire::{Header, Kind, ProtocolError};

/// Replies delivered to a side, as (header, payload).
#[derive(Default)]
struct Replies(Mutex<Vec<(Header, Vec<u8>)>>);

impl LinkEvents for Replies {
    fn on_reply(&self, header: &Header, payload: &[u8]) {
        self.0.lock().unwrap().push((*header, payload.to_vec()));
    }

    fn on_link_lost(&self, _: InstanceId) {}

    fn on_protocol_error(&self, _: Option<InstanceId>, error: &ProtocolError) {
        panic!("protocol error on an in-process link: {error}");
    }
}

/// One side's inbox (no dispatcher: every invocation is queued), its queue
/// and what it was replied.
fn side() -> (Inbox, InvocationReceiver, Arc<Replies>) {
    let (invocations, queue) = invocation_queue(8);
    let replies = Arc::new(Replies::default());
    let inbox = Inbox {
        invocations,
        events: Arc::clone(&replies) as Arc<dyn LinkEvents>,
        inline: Arc::new(InlineSlot::default()),
        max_frame: 1 << 20,
    };
    (inbox, queue, replies)
}

struct Pair {
    link: Arc<LocalLink>,
    server_queue: InvocationReceiver,
    client_queue: InvocationReceiver,
    client_replies: Arc<Replies>,
    server_closed: Arc<AtomicBool>,
}

fn pair() -> Pair {
    let (server, server_queue, _) = side();
    let (client, client_queue, client_replies) = side();
    let server_closed = Arc::new(AtomicBool::new(false));
    let link = LocalLink::pair(Ends {
        peer: InstanceId::new_random(),
        local: InstanceId::new_random(),
        target: server,
        target_closed: Arc::clone(&server_closed),
        reply_inbox: client,
        reply_closed: Arc::new(AtomicBool::new(false)),
    });
    Pair {
        link,
        server_queue,
        client_queue,
        client_replies,
        server_closed,
    }
}

fn header(kind: Kind, sender: InstanceId) -> Header {
    Header::new(kind, MessageId(11), sender)
}

#[test]
fn the_way_back_is_made_once_and_refers_back_weakly() {
    let Pair {
        link,
        mut client_queue,
        ..
    } = pair();
    let back = link.reverse();
    assert!(Arc::ptr_eq(&back, &link.reverse()), "made again");
    let (client, server) = (link.ends.local, link.ends.peer);
    assert_eq!(back.peer(), client);
    let forward = Arc::downgrade(&link);
    drop(link);
    assert!(forward.upgrade().is_none(), "the pair holds itself alive");
    // The way back still sends, and still has a way back of its own.
    let frame = OutFrame::bytes(header(Kind::OneWay, server), "sink", b"back");
    back.try_send(frame).unwrap();
    let inbound = client_queue.try_recv().unwrap();
    assert_eq!(inbound.payload(), b"back");
    assert_eq!(inbound.reply_link.peer(), server);
}

#[test]
fn an_invocation_is_queued_whole_with_its_way_back() {
    let Pair {
        link,
        mut server_queue,
        ..
    } = pair();
    let payload = [3u8; 100];
    let frame = OutFrame::bytes(header(Kind::OneWay, link.ends.local), "sink", &payload);
    link.try_send(frame).unwrap();
    let inbound = server_queue.try_recv().unwrap();
    assert_eq!(inbound.name(), "sink");
    assert_eq!(inbound.payload(), &payload[..]);
    assert!(Arc::ptr_eq(&inbound.reply_link, &link.reverse()));
}

#[test]
fn inline_replies_reach_the_caller_unchanged() {
    let Pair {
        link,
        client_replies,
        ..
    } = pair();
    let mut reply = header(Kind::Response, link.ends.peer);
    reply.correlation_id = MessageId(5);
    let mut buf = Buf::new();
    link.deliver_reply(&mut buf, OutFrame::bytes(reply, "", b"raw"));
    let value = vec![9u32; 3000];
    let archived = OutFrame {
        header: reply,
        name: "",
        payload: PayloadRef::Archive(&value),
    };
    link.deliver_reply(&mut buf, archived);
    let got = client_replies.0.lock().unwrap();
    assert_eq!(got[0], (reply, b"raw".to_vec()));
    let encoded = crate::codec::Payload::encode(&value).unwrap();
    assert_eq!(got[1], (reply, encoded.to_vec()));
}

#[test]
fn a_closed_peer_is_refused_at_once() {
    let Pair {
        link,
        server_closed,
        ..
    } = pair();
    server_closed.store(true, Ordering::Release);
    let frame = OutFrame::bytes(header(Kind::OneWay, link.ends.local), "sink", b"x");
    let sent = futures::executor::block_on(link.send(frame));
    assert!(matches!(sent, Err(Error::PeerLost(_))), "{sent:?}");
}
