//! The in-flight table's own rules: who hears a failure, what is counted
//! late, and that reply buffers are reused rather than allocated per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use super::*;
use crate::wire::PAYLOAD_ALIGN;

fn reply(kind: Kind, to: MessageId, from: InstanceId) -> Header {
    let mut h = Header::new(kind, MessageId(u64::MAX), from);
    h.correlation_id = to;
    h
}

/// Counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn outcome(t: &PendingTable, id: MessageId) -> Poll<Result<Reply>> {
    t.poll_outcome(id, &mut Context::from_waker(Waker::noop()))
}

#[test]
fn reply_buffers_are_reused_from_call_to_call() {
    let (t, peer) = (PendingTable::default(), InstanceId::new_random());
    let mut seen = Vec::new();
    for n in 1..=3 {
        let id = MessageId(n);
        t.register(id, peer, false);
        t.complete(&reply(Kind::Response, id, peer), &[n as u8; 64], None);
        let Poll::Ready(Ok(got)) = outcome(&t, id) else {
            panic!("no response for call {n}");
        };
        assert_eq!(got.as_slice(), &[n as u8; 64]);
        assert_eq!(got.as_slice().as_ptr() as usize % PAYLOAD_ALIGN, 0);
        seen.push(got.as_slice().as_ptr());
        t.recycle(got);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    assert_eq!(t.late_replies(), 0);
}

#[test]
fn a_failure_before_the_receipt_is_the_receipts_after_it_the_responses() {
    let (t, peer) = (PendingTable::default(), InstanceId::new_random());
    let noop = &mut Context::from_waker(Waker::noop());
    let early = MessageId(1);
    t.register(early, peer, true);
    assert!(t.poll_receipt(early, noop).is_pending());
    t.complete(&reply(Kind::Error, early, peer), b"no", None);
    assert!(matches!(t.poll_receipt(early, noop), Poll::Ready(Err(_))));
    assert_eq!(t.forget(early), Forgot::Finished);

    let late = MessageId(2);
    t.register(late, peer, true);
    t.complete(&reply(Kind::Receipt, late, peer), &[], None);
    t.complete(&reply(Kind::Error, late, peer), b"no", None);
    assert!(matches!(t.poll_receipt(late, noop), Poll::Ready(Ok(()))));
    assert!(matches!(
        outcome(&t, late),
        Poll::Ready(Err(Error::Handler(_)))
    ));
}

#[test]
fn peer_loss_wakes_only_its_waiting_calls_and_later_replies_count_as_late() {
    let t = PendingTable::default();
    let (lost, other) = (InstanceId::new_random(), InstanceId::new_random());
    let count = Arc::new(Count::default());
    let waker = Waker::from(Arc::clone(&count));
    let cx = &mut Context::from_waker(&waker);
    for (id, peer) in [(1, lost), (2, lost), (3, other)] {
        t.register(MessageId(id), peer, false);
        assert!(t.poll_outcome(MessageId(id), cx).is_pending());
    }
    t.complete(&reply(Kind::Ack, MessageId(2), lost), &[], None);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(t.fail_peer(lost), 1, "call 2 already had its outcome");
    assert_eq!(count.0.load(Ordering::SeqCst), 2);
    assert!(matches!(outcome(&t, MessageId(1)), Poll::Ready(Err(Error::PeerLost(p))) if p == lost));
    assert!(matches!(
        outcome(&t, MessageId(2)),
        Poll::Ready(Ok(Reply::Empty))
    ));
    assert_eq!((t.len(), t.in_flight_to(other)), (1, 1));
    t.complete(&reply(Kind::Ack, MessageId(1), lost), &[], None);
    assert_eq!(t.late_replies(), 1);
    assert_eq!(t.forget(MessageId(3)), Forgot::Waiting);
    assert_eq!(t.len(), 0);
}
