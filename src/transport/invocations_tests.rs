//! The invocation queue keeps the channel's bound, order and close rules.

use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll, Waker};

use super::*;
use crate::error::Result;
use crate::handler::PayloadBuf;
use crate::ids::{InstanceId, MessageId};
use crate::transport::{BoxFuture, BoxedLink, OutFrame, PeerLink, TransportKind};
use crate::wire::{Header, Kind};

/// A link that takes every frame; it notes when it is dropped.
struct NullLink(Arc<AtomicBool>);

impl PeerLink for NullLink {
    fn peer(&self) -> InstanceId {
        InstanceId::nil()
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Local
    }
    fn send<'a>(&'a self, _frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn try_send(&self, _frame: OutFrame<'_>) -> Result<()> {
        Ok(())
    }
    fn is_closed(&self) -> bool {
        false
    }
    fn close(&self) {}
}

impl Drop for NullLink {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn inbound_on(id: u64, dropped: &Arc<AtomicBool>) -> Inbound {
    let link: BoxedLink = Arc::new(NullLink(Arc::clone(dropped)));
    Inbound {
        header: Header::new(Kind::OneWay, MessageId(id), InstanceId::nil()),
        frame: PayloadBuf::default(),
        payload_offset: 0,
        name_len: 0,
        reply_link: link,
        deadline: None,
    }
}

fn inbound(id: u64) -> Inbound {
    inbound_on(id, &Arc::new(AtomicBool::new(false)))
}

fn id(inbound: &Inbound) -> u64 {
    inbound.header.message_id.0
}

/// Polls `fut` once without a runtime.
fn poll_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_full_queue_refuses_then_takes_again_in_order() {
    let (tx, mut rx) = invocation_queue(2);
    tx.try_send(inbound(1)).unwrap();
    tx.try_send(inbound(2)).unwrap();
    match tx.try_send(inbound(3)) {
        Err(TrySendError::Full(back)) => assert_eq!(id(&back), 3),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(id(&rx.try_recv().unwrap()), 1);
    tx.try_send(inbound(3)).unwrap();
    assert_eq!(id(&rx.try_recv().unwrap()), 2);
    assert_eq!(id(&rx.try_recv().unwrap()), 3);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
fn a_held_slot_counts_until_used_or_dropped() {
    let (tx, mut rx) = invocation_queue(1);
    let mut reserve = pin!(tx.reserve());
    let Poll::Ready(Ok(permit)) = poll_once(reserve.as_mut()) else {
        panic!("an empty queue has room");
    };
    assert!(matches!(
        tx.try_send(inbound(1)),
        Err(TrySendError::Full(_))
    ));
    drop(permit);
    tx.try_send(inbound(2)).unwrap();
    assert_eq!(id(&rx.try_recv().unwrap()), 2);
}

#[test]
fn a_waiting_sender_is_woken_by_the_receiver_taking_one() {
    let (tx, mut rx) = invocation_queue(1);
    tx.try_send(inbound(1)).unwrap();
    let mut send = pin!(tx.send(inbound(2)));
    assert!(poll_once(send.as_mut()).is_pending(), "a full queue waits");
    assert_eq!(id(&rx.try_recv().unwrap()), 1);
    assert!(matches!(poll_once(send.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(id(&rx.try_recv().unwrap()), 2);
}

#[test]
fn a_closed_receiver_gives_values_back_and_drops_what_was_queued() {
    let (tx, rx) = invocation_queue(2);
    let queued = Arc::new(AtomicBool::new(false));
    tx.try_send(inbound_on(1, &queued)).unwrap();
    tx.try_send(inbound(2)).unwrap();
    let mut send = pin!(tx.send(inbound(3)));
    assert!(poll_once(send.as_mut()).is_pending());
    drop(rx);
    assert!(
        queued.load(Ordering::SeqCst),
        "queued invocations are dropped"
    );
    match poll_once(send.as_mut()) {
        Poll::Ready(Err(SendError(back))) => assert_eq!(id(&back), 3),
        _ => panic!("a waiting sender is told the receiver is gone"),
    }
    assert!(tx.is_closed());
    assert!(matches!(
        tx.try_send(inbound(4)),
        Err(TrySendError::Closed(_))
    ));
}

#[test]
fn the_receiver_gets_what_is_queued_then_none_once_senders_are_gone() {
    let (tx, mut rx) = invocation_queue(4);
    let tx2 = tx.clone();
    tx.try_send(inbound(1)).unwrap();
    drop(tx);
    tx2.try_send(inbound(2)).unwrap();
    match poll_once(pin!(rx.recv())) {
        Poll::Ready(Some(i)) => assert_eq!(id(&i), 1),
        _ => panic!("the first invocation is there"),
    }
    assert_eq!(id(&rx.try_recv().unwrap()), 2);
    assert!(poll_once(pin!(rx.recv())).is_pending());
    drop(tx2);
    assert!(matches!(poll_once(pin!(rx.recv())), Poll::Ready(None)));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_deliver_everything_in_per_sender_order() {
    const PER: u64 = 5_000;
    let (tx, mut rx) = invocation_queue(8);
    let mut tasks = Vec::new();
    for s in 0..3u64 {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER {
                tx.send(inbound(s << 32 | i)).await.unwrap();
            }
        }));
    }
    drop(tx);
    let mut next = [0u64; 3];
    while let Some(inbound) = rx.recv().await {
        let (s, i) = ((id(&inbound) >> 32) as usize, id(&inbound) & 0xffff_ffff);
        assert_eq!(i, next[s], "sender {s} out of order");
        next[s] += 1;
    }
    assert_eq!(next, [PER; 3]);
    for task in tasks {
        task.await.unwrap();
    }
}
