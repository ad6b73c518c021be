//! In-process loopback transport: managers in one process exchange frames
//! through their inboxes directly. Used by tests and single-process setups;
//! it runs the same wire encoding and inbox contract as the real transports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc::error::TrySendError;

use super::{
    BoxFuture, BoxedLink, Inbound, Inbox, OutFrame, PeerLink, ThinTransport, TransportKind,
};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::runtime::router::{self, Frame, Inline, Routed, Router};
use crate::wire;

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
        Arc::new(LocalLink {
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

/// A link to another manager in this process.
struct LocalLink {
    peer: InstanceId,
    local: InstanceId,
    target: Inbox,
    target_closed: Arc<AtomicBool>,
    reply_inbox: Inbox,
    reply_closed: Arc<AtomicBool>,
}

impl LocalLink {
    fn reverse(&self) -> BoxedLink {
        Arc::new(LocalLink {
            peer: self.local,
            local: self.peer,
            target: self.reply_inbox.clone(),
            target_closed: Arc::clone(&self.reply_closed),
            reply_inbox: self.target.clone(),
            reply_closed: Arc::clone(&self.target_closed),
        })
    }

    /// Encodes and routes one frame through the shared router; invocations
    /// come back for the caller to queue.
    fn route(&self, frame: &OutFrame<'_>) -> Result<Option<Inbound>> {
        if self.is_closed() {
            return Err(Error::PeerLost(self.peer));
        }
        let bytes = Bytes::from(frame.to_vec()?);
        if bytes.len() > self.target.max_frame {
            return Err(Error::PayloadTooLarge {
                size: bytes.len(),
                max: self.target.max_frame,
            });
        }
        // Our own encoding: no sender to check.
        let view = router::check(&bytes, self.target.max_frame, None)?;
        let caller = &self.reply_inbox;
        let mut reply = |frame: OutFrame<'_>| match frame.to_vec() {
            Ok(bytes) => match wire::decode(&bytes, usize::MAX) {
                Ok(reply) => caller.events.on_reply(&reply.header, reply.payload),
                Err(err) => caller.events.on_protocol_error(Some(self.peer), &err),
            },
            Err(err) => tracing::warn!(%err, "inline reply could not be encoded"),
        };
        // The frame is already shared bytes: the router keeps it without a copy.
        let mut share = || crate::handler::PayloadBuf::from(bytes.clone());
        let frame = Frame {
            bytes: &bytes,
            shared: Some(&mut share),
        };
        let routed = Router::new().route(
            &self.target,
            &view,
            frame,
            self,
            &|| self.reverse(),
            Inline::Handlers(&mut reply),
        );
        Ok(match routed {
            Routed::Queue(inbound) => Some(inbound),
            Routed::Done | Routed::Control(_) => None,
        })
    }
}

impl PeerLink for LocalLink {
    fn peer(&self) -> InstanceId {
        self.peer
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Local
    }

    fn send<'a>(&'a self, frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        let routed = self.route(&frame);
        Box::pin(async move {
            if let Some(inbound) = routed? {
                self.target
                    .invocations
                    .send(inbound)
                    .await
                    .map_err(|_| Error::PeerLost(self.peer))?;
            }
            Ok(())
        })
    }

    fn try_send(&self, frame: OutFrame<'_>) -> Result<()> {
        // An invocation waits while the peer's inbox is full (as a reader
        // of the other transports stops reading then), looked at before the
        // frame is copied: a sender that waits for room pays no copy per
        // wait, and nothing overtakes what the inbox holds.
        if frame.header.kind.is_invocation() && self.target.invocations.capacity() == 0 {
            return match self.target.invocations.is_closed() {
                true => Err(Error::PeerLost(self.peer)),
                false => Err(Error::Full),
            };
        }
        if let Some(inbound) = self.route(&frame)? {
            self.target
                .invocations
                .try_send(inbound)
                .map_err(|e| match e {
                    TrySendError::Full(_) => Error::Full,
                    TrySendError::Closed(_) => Error::PeerLost(self.peer),
                })?;
        }
        Ok(())
    }

    fn poll_writable(&self, cx: &mut Context<'_>, frame: &OutFrame<'_>) -> Poll<Result<()>> {
        if let Some(size) = frame.exact_len()
            && size > self.target.max_frame
        {
            let max = self.target.max_frame;
            return Poll::Ready(Err(Error::PayloadTooLarge { size, max }));
        }
        if self.is_closed() {
            return Poll::Ready(Err(Error::PeerLost(self.peer)));
        }
        // Room in the peer's inbox, waited for in the caller's own future
        // (its waker kept in the queue's slots: no allocation); the peer's
        // dispatcher taking an invocation, or going, wakes it.
        self.target
            .invocations
            .poll_room(cx)
            .map_err(|_| Error::PeerLost(self.peer))
    }

    fn is_closed(&self) -> bool {
        self.target_closed.load(Ordering::Acquire)
    }

    fn close(&self) {}
}
