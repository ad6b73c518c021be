//! In-process loopback transport: managers in one process exchange frames
//! through their inboxes directly. Used by tests and single-process setups;
//! it runs the same wire encoding and inbox contract as the real transports,
//! and allocates nothing per frame in steady state (its links reuse their
//! buffers and router: `scratch.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use dashmap::DashMap;

use super::{BoxFuture, BoxedLink, Inbox, ThinTransport, TransportKind};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use link::{Ends, LocalLink};

mod link;
mod scratch;

/// Endpoint scheme of the loopback transport.
pub const SCHEME: &str = "local://";

/// Managers that connected to an endpoint: their links seen from its side.
type Callers = Arc<DashMap<InstanceId, BoxedLink>>;

struct Endpoint {
    inbox: Inbox,
    closed: Arc<AtomicBool>,
    callers: Callers,
}

static ENDPOINTS: LazyLock<DashMap<InstanceId, Endpoint>> = LazyLock::new(DashMap::new);

/// The loopback transport of one manager.
pub struct LocalTransport {
    local: InstanceId,
    inbox: Inbox,
    closed: Arc<AtomicBool>,
    callers: Callers,
}

impl LocalTransport {
    /// Registers `local` in this process so other managers can connect to it.
    pub fn bind(local: InstanceId, inbox: Inbox) -> Arc<Self> {
        let closed = Arc::new(AtomicBool::new(false));
        let callers = Callers::default();
        ENDPOINTS.insert(
            local,
            Endpoint {
                inbox: inbox.clone(),
                closed: Arc::clone(&closed),
                callers: Arc::clone(&callers),
            },
        );
        Arc::new(Self {
            local,
            inbox,
            closed,
            callers,
        })
    }

    fn link_to(&self, peer: InstanceId, target: &Endpoint) -> Arc<LocalLink> {
        LocalLink::pair(Ends {
            peer,
            local: self.local,
            target: target.inbox.clone(),
            target_closed: Arc::clone(&target.closed),
            reply_inbox: self.inbox.clone(),
            reply_closed: Arc::clone(&self.closed),
        })
    }
}

impl ThinTransport for LocalTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Local
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(format!("{SCHEME}{}", self.local))
    }

    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<BoxedLink>> {
        Box::pin(async move {
            if endpoint != format!("{SCHEME}{peer}") {
                return Err(Error::Transport(format!(
                    "{endpoint:?} is not the local endpoint of {peer}"
                )));
            }
            let target = ENDPOINTS.get(&peer).ok_or(Error::PeerLost(peer))?;
            if target.closed.load(Ordering::Acquire) {
                return Err(Error::PeerLost(peer));
            }
            let link = self.link_to(peer, &target);
            // Callers that shut down since are forgotten here, so the list stays bounded.
            target.callers.retain(|_, caller| !caller.is_closed());
            target.callers.insert(self.local, link.reverse());
            Ok(link as BoxedLink)
        })
    }

    fn inbound_links(&self) -> Vec<BoxedLink> {
        let callers = self.callers.iter().filter(|e| !e.value().is_closed());
        callers.map(|e| Arc::clone(e.value())).collect()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Release: pairs with the Acquire loads of peers sending to us.
            if self.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            ENDPOINTS.remove(&self.local);
            let peers: Vec<Inbox> = ENDPOINTS.iter().map(|e| e.inbox.clone()).collect();
            for inbox in peers {
                inbox.events.on_link_lost(self.local);
            }
        })
    }
}

impl Drop for LocalTransport {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        ENDPOINTS.remove_if(&self.local, |_, e| Arc::ptr_eq(&e.closed, &self.closed));
    }
}
