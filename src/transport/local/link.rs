//! A link to another manager of this process: each frame is encoded into
//! the link's reused buffer and routed through the shared router on the
//! sender's thread (see [`super::scratch`]); nothing is allocated per frame
//! in steady state.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

use super::scratch::{self, Buf, KEEP, Pool};
use crate::error::{Error, Result};
use crate::handler::PayloadBuf;
use crate::ids::InstanceId;
use crate::runtime::router::{self, Frame, Inline, Routed, Router};
use crate::transport::{
    BoxFuture, BoxedLink, Inbound, Inbox, OutFrame, PayloadRef, PeerLink, TransportKind,
};

/// Both ends of a link as seen from its sender.
#[derive(Clone)]
pub(super) struct Ends {
    pub(super) peer: InstanceId,
    pub(super) local: InstanceId,
    pub(super) target: Inbox,
    pub(super) target_closed: Arc<AtomicBool>,
    pub(super) reply_inbox: Inbox,
    pub(super) reply_closed: Arc<AtomicBool>,
}

impl Ends {
    /// The same ends seen from the peer.
    fn reversed(&self) -> Self {
        Self {
            peer: self.local,
            local: self.peer,
            target: self.reply_inbox.clone(),
            target_closed: Arc::clone(&self.reply_closed),
            reply_inbox: self.target.clone(),
            reply_closed: Arc::clone(&self.target_closed),
        }
    }
}

/// The link the peer's replies and invocations come back on. The
/// connecting side's link holds it; it refers back weakly, so the pair
/// makes no cycle and each is made once (not once per invocation).
enum Back {
    Strong(BoxedLink),
    Weak(Weak<LocalLink>),
}

/// A link to another manager in this process.
pub(super) struct LocalLink {
    ends: Ends,
    back: Back,
    scratch: Pool,
}

/// A send that was done when `send` returned: zero-sized, so boxing it
/// allocates nothing.
struct Sent;

impl Future for Sent {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl LocalLink {
    fn new(ends: Ends, back: Back) -> Self {
        Self {
            ends,
            back,
            scratch: Pool::new(),
        }
    }

    /// The connecting side's link, holding its peer's way back.
    pub(super) fn pair(ends: Ends) -> Arc<Self> {
        Arc::new_cyclic(|me| {
            let back = Arc::new(Self::new(ends.reversed(), Back::Weak(me.clone())));
            Self::new(ends, Back::Strong(back))
        })
    }

    /// The link from the peer back to this side.
    pub(super) fn reverse(&self) -> BoxedLink {
        match &self.back {
            Back::Strong(link) => Arc::clone(link),
            Back::Weak(me) => match me.upgrade() {
                Some(link) => link,
                // The connecting side let its link go: a link of its own
                // per use (rare: that side no longer calls this one).
                None => Arc::new(Self::new(self.ends.reversed(), Back::Weak(Weak::new()))),
            },
        }
    }

    fn target(&self) -> &Inbox {
        &self.ends.target
    }

    /// Encodes and routes one frame through the shared router; invocations
    /// come back for the caller to queue.
    fn route(&self, frame: &OutFrame<'_>) -> Result<Option<Inbound>> {
        if self.is_closed() {
            return Err(Error::PeerLost(self.peer()));
        }
        let max = self.target().max_frame;
        let mut set = self.scratch.take();
        let scratch::Scratch { out, reply, router } = &mut set;
        let encoded = scratch::fill(out, frame.exact_len(), max.min(KEEP), |dst| {
            frame.encode_into(dst)
        });
        let routed = match encoded {
            Some(len) => self.route_bytes(router, reply, &out[..len], None),
            None => self.route_large(router, reply, frame),
        };
        self.scratch.put(set);
        routed
    }

    /// A frame over [`KEEP`] (or over the limit): encoded into a vector of
    /// its own, which the router shares as it is if it keeps the frame.
    fn route_large(
        &self,
        router: &mut Router,
        reply: &mut Buf,
        frame: &OutFrame<'_>,
    ) -> Result<Option<Inbound>> {
        let max = self.target().max_frame;
        // Refused before it is encoded, when its size is known ahead.
        if let Some(size) = frame.exact_len()
            && size > max
        {
            return Err(Error::PayloadTooLarge { size, max });
        }
        let bytes = Bytes::from(frame.to_vec()?);
        if bytes.len() > max {
            return Err(Error::PayloadTooLarge {
                size: bytes.len(),
                max,
            });
        }
        let mut share = || PayloadBuf::from(bytes.clone());
        self.route_bytes(router, reply, &bytes, Some(&mut share))
    }

    fn route_bytes<'f>(
        &self,
        router: &mut Router,
        reply_buf: &mut Buf,
        bytes: &'f [u8],
        shared: Option<&'f mut dyn FnMut() -> PayloadBuf>,
    ) -> Result<Option<Inbound>> {
        // Our own encoding: no sender to check.
        let view = router::check(bytes, self.target().max_frame, None)?;
        let mut reply = |frame: OutFrame<'_>| self.deliver_reply(reply_buf, frame);
        let routed = router.route(
            self.target(),
            &view,
            Frame { bytes, shared },
            self,
            &|| self.reverse(),
            Inline::Handlers(&mut reply),
        );
        Ok(match routed {
            Routed::Queue(inbound) => Some(inbound),
            Routed::Done | Routed::Control(_) => None,
        })
    }

    /// Hands the reply of a handler run in place straight to the caller's
    /// pending call: no frame is encoded and decoded again; only an archive
    /// is written out, into the reused buffer.
    fn deliver_reply(&self, buf: &mut Buf, frame: OutFrame<'_>) {
        let caller = &self.ends.reply_inbox.events;
        let header = &frame.header;
        match frame.payload {
            PayloadRef::Bytes(bytes) => caller.on_reply(header, bytes),
            PayloadRef::Loan(loan) => caller.on_reply(header, loan),
            PayloadRef::Archive(value) => {
                match scratch::fill(buf, None, KEEP, |dst| value.encode_into(dst)) {
                    Some(len) => caller.on_reply(header, &buf[..len]),
                    // Larger than the reused buffer keeps: one of its own.
                    None => match value.encode() {
                        Ok(archive) => caller.on_reply(header, &archive),
                        Err(err) => tracing::warn!(%err, "inline reply could not be encoded"),
                    },
                }
            }
        }
    }

    /// [`PeerLink::send`]: routed at once; only a frame
    /// that must wait for room in the peer's inbox returns a future that
    /// allocates (boxed), a routed one returns a zero-sized one.
    fn send_now<'a>(&'a self, frame: &OutFrame<'_>) -> BoxFuture<'a, Result<()>> {
        let inbound = match self.route(frame) {
            Ok(None) => return Box::pin(Sent),
            Ok(Some(inbound)) => inbound,
            Err(err) => return Box::pin(failed(err)),
        };
        let invocations = &self.target().invocations;
        match invocations.try_send(inbound) {
            Ok(()) => Box::pin(Sent),
            Err(TrySendError::Closed(_)) => Box::pin(failed(Error::PeerLost(self.peer()))),
            Err(TrySendError::Full(inbound)) => Box::pin(async move {
                let sent = invocations.send(inbound).await;
                sent.map_err(|_| Error::PeerLost(self.peer()))
            }),
        }
    }
}

fn failed(err: Error) -> Ready<Result<()>> {
    ready(Err(err))
}

impl PeerLink for LocalLink {
    fn peer(&self) -> InstanceId {
        self.ends.peer
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Local
    }

    fn send<'a>(&'a self, frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        self.send_now(&frame)
    }

    fn try_send(&self, frame: OutFrame<'_>) -> Result<()> {
        // An invocation waits while the peer's inbox is full (as a reader
        // of the other transports stops reading then), looked at before the
        // frame is routed: a sender that waits for room pays nothing per
        // wait, and nothing overtakes what the inbox holds.
        let invocations = &self.target().invocations;
        if frame.header.kind.is_invocation() && invocations.capacity() == 0 {
            return match invocations.is_closed() {
                true => Err(Error::PeerLost(self.peer())),
                false => Err(Error::Full),
            };
        }
        if let Some(inbound) = self.route(&frame)? {
            invocations.try_send(inbound).map_err(|e| match e {
                TrySendError::Full(_) => Error::Full,
                TrySendError::Closed(_) => Error::PeerLost(self.peer()),
            })?;
        }
        Ok(())
    }

    fn poll_writable(&self, cx: &mut Context<'_>, frame: &OutFrame<'_>) -> Poll<Result<()>> {
        let max = self.target().max_frame;
        if let Some(size) = frame.exact_len()
            && size > max
        {
            return Poll::Ready(Err(Error::PayloadTooLarge { size, max }));
        }
        if self.is_closed() {
            return Poll::Ready(Err(Error::PeerLost(self.peer())));
        }
        // Room in the peer's inbox, waited for in the caller's own future
        // (its waker kept in the queue's slots: no allocation); the peer's
        // dispatcher taking an invocation, or going, wakes it.
        self.target()
            .invocations
            .poll_room(cx)
            .map_err(|_| Error::PeerLost(self.peer()))
    }

    fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release swap of the peer's shutdown.
        self.ends.target_closed.load(Ordering::Acquire)
    }

    fn close(&self) {}
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
