//! Which link loss fails a peer's calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use super::*;
use crate::error::Result;
use crate::ids::MessageId;
use crate::runtime::pending::Reply;
use crate::transport::{BoxFuture, OutFrame, PeerLink, TransportKind};

/// A link that is closed at once but reports its loss only when told to,
/// as a shm link does while its reader drains what the peer committed.
struct DrainingLink {
    peer: InstanceId,
    reported: AtomicBool,
}

impl PeerLink for DrainingLink {
    fn peer(&self) -> InstanceId {
        self.peer
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Shm
    }
    fn send<'a>(&'a self, _frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Err(Error::PeerLost(self.peer)) })
    }
    fn try_send(&self, _frame: OutFrame<'_>) -> Result<()> {
        Err(Error::PeerLost(self.peer))
    }
    fn is_closed(&self) -> bool {
        true
    }
    fn loss_reported(&self) -> bool {
        self.reported.load(Ordering::SeqCst)
    }
    fn close(&self) {}
}

fn outcome(t: &PendingTable, id: MessageId) -> Poll<Result<Reply>> {
    t.poll_outcome(id, &mut Context::from_waker(Waker::noop()))
}

/// A peer that answers and exits at once closes both its links; the reverse
/// link may report first while our outbound link's reader still holds the
/// reply. That report must not fail the call; the outbound link's own does.
#[test]
fn a_closed_link_still_draining_keeps_its_calls_until_it_reports() {
    let peer = InstanceId::new_random();
    let link = Arc::new(DrainingLink {
        peer,
        reported: AtomicBool::new(false),
    });
    let links = Arc::new(DashMap::new());
    links.insert(peer, Arc::clone(&link) as BoxedLink);
    let events = RuntimeEvents {
        pending: Arc::new(PendingTable::default()),
        links: Arc::clone(&links),
        counters: Arc::new(Counters::default()),
        streams: Arc::default(),
    };
    let call = MessageId(7);
    events.pending.register(call, peer, false);

    // The reverse link's loss, reported while the outbound link drains.
    events.on_link_lost(peer);
    assert!(outcome(&events.pending, call).is_pending());
    assert!(links.contains_key(&peer));

    // The outbound link has drained: now the call fails and the link goes.
    link.reported.store(true, Ordering::SeqCst);
    events.on_link_lost(peer);
    assert!(matches!(
        outcome(&events.pending, call),
        Poll::Ready(Err(Error::PeerLost(p))) if p == peer
    ));
    assert!(!links.contains_key(&peer));
}
