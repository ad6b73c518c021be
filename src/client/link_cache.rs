//! The link each thread last sent on, so that a stream of messages built one
//! by one (`active_message(..)?...execute()`) does not look its peer up in
//! the peer map each time: that lookup (hashing the instance id, locking a
//! shard, cloning the link's `Arc`) cost more than writing a 64-byte frame
//! into a ring.
//!
//! The cache holds a `Weak` reference: it never keeps a link (its rings,
//! mappings, descriptors) alive. A cached link is used only while it is open
//! and responsive; the peer map never swaps an open link for another (a new
//! link replaces one that closed, or the old one is closed as it is
//! replaced, and a link leaves the map closed), so an open cached link is
//! the one the map holds, and a closed one sends the caller to the map,
//! which says what became of the peer (reconnected, lost, unknown).
//!
//! That needs a link to say it is closed once it was closed, which shared
//! memory and TCP links do; an in-process link stays open while its target
//! runs, and a plugged-in transport promises nothing, so their links are
//! never cached (the map is asked each time, as before).

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::error::Result;
use crate::ids::InstanceId;
use crate::transport::{BoxedLink, PeerLink, TransportKind};

/// One thread's last link: which client sent on it, to which peer.
struct Last {
    client: InstanceId,
    peer: InstanceId,
    link: Weak<dyn PeerLink>,
}

thread_local! {
    static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
}

/// The link to `peer` for the client `client`: this thread's cached one if
/// it is still open and responsive, else `lookup()`'s (then cached).
pub(crate) fn link(
    client: InstanceId,
    peer: InstanceId,
    lookup: impl FnOnce() -> Result<BoxedLink>,
) -> Result<BoxedLink> {
    if let Some(link) = cached(client, peer) {
        return Ok(link);
    }
    let link = lookup()?;
    if !matches!(link.kind(), TransportKind::Shm | TransportKind::Tcp) {
        return Ok(link);
    }
    // A thread being torn down has no cache left to fill: nothing is lost.
    let _ = LAST.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(Last {
                client,
                peer,
                link: Arc::downgrade(&link),
            });
        }
    });
    Ok(link)
}

fn cached(client: InstanceId, peer: InstanceId) -> Option<BoxedLink> {
    LAST.try_with(|last| {
        let last = last.try_borrow().ok()?;
        let last = last.as_ref()?;
        if last.client != client || last.peer != peer {
            return None;
        }
        let link = last.link.upgrade()?;
        (!link.is_closed() && !link.is_unresponsive()).then_some(link)
    })
    .ok()
    .flatten()
}
