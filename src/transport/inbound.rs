//! What comes in: an inbound invocation ([`Inbound`]), the runtime's
//! callbacks for replies and link events ([`LinkEvents`]), and the
//! [`Inbox`] a transport is bound with.

use std::fmt;
use std::sync::Arc;

#[cfg(doc)]
use super::invocation_queue;
use super::{BoxedLink, InlineSlot, InvocationSender};
use crate::handler::PayloadBuf;
use crate::ids::InstanceId;
use crate::wire::{self, FrameRef, Header, ProtocolError};

/// One inbound invocation frame with the link to answer on.
#[derive(Clone)]
pub struct Inbound {
    /// The decoded header.
    pub header: Header,
    /// The whole frame (header, name, payload): `Bytes`, or a frame read in
    /// place from a peer's shared-memory pool.
    pub frame: PayloadBuf,
    /// Offset of the payload in `frame`.
    pub payload_offset: usize,
    /// Length of the handler name.
    pub name_len: usize,
    /// The link replies go back on.
    pub reply_link: BoxedLink,
    /// When the caller gives up (from the header's budget, counted from
    /// arrival, or its absolute deadline); `None` without a budget.
    pub deadline: Option<tokio::time::Instant>,
}

impl Inbound {
    /// Builds an inbound frame from checked frame bytes.
    pub fn from_frame(
        frame: impl Into<PayloadBuf>,
        view: &FrameRef<'_>,
        reply_link: BoxedLink,
    ) -> Self {
        let frame = frame.into();
        Self {
            deadline: crate::runtime::deadline::deadline_of(
                &view.header,
                tokio::time::Instant::now(),
            ),
            header: view.header,
            payload_offset: view.payload_offset,
            name_len: view.name.len(),
            frame,
            reply_link,
        }
    }

    /// The handler name.
    pub fn name(&self) -> &str {
        let bytes = &self.frame[wire::HEADER_LEN..wire::HEADER_LEN + self.name_len];
        // The frame was checked by `wire::decode` before this value was built.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_offset..]
    }

    /// The payload, sharing the frame's memory (no copy, no allocation).
    pub fn payload_bytes(&self) -> PayloadBuf {
        self.frame.slice(self.payload_offset..)
    }
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("header", &self.header)
            .field("name", &self.name())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// Callbacks a transport makes into the runtime. They must not block.
pub trait LinkEvents: Send + Sync + 'static {
    /// A reply (`Ack`, `Response`, `Error`, `Receipt`) arrived.
    fn on_reply(&self, header: &Header, payload: &[u8]);
    /// A reply whose frame is already shared (a mapped large frame):
    /// `payload` lies inside `frame`, so the response can keep it without a
    /// copy. Defaults to [`on_reply`](Self::on_reply).
    fn on_reply_shared(&self, header: &Header, payload: &[u8], frame: &PayloadBuf) {
        let _ = frame;
        self.on_reply(header, payload);
    }
    /// The link to `peer` is broken; fail everything pending on it.
    fn on_link_lost(&self, peer: InstanceId);
    /// A frame was malformed and dropped.
    fn on_protocol_error(&self, peer: Option<InstanceId>, error: &ProtocolError);
    /// The peer stopped answering liveness probes: fail what is pending on
    /// it with `PeerUnresponsive` (the link stays up). Ignored unless
    /// overridden.
    fn on_peer_unresponsive(&self, peer: InstanceId) {
        let _ = peer;
    }
    /// A frame was refused before reaching the dispatcher (its connection
    /// did not authenticate). Ignored unless overridden.
    fn on_refused(&self, peer: Option<InstanceId>) {
        let _ = peer;
    }
}
/// Where a transport delivers what it receives.
#[derive(Clone)]
pub struct Inbox {
    /// Invocations for the dispatcher: a bounded queue, preallocated (see
    /// [`invocation_queue`]); when it is full, stop reading.
    pub invocations: InvocationSender,
    /// Replies and link events.
    pub events: Arc<dyn LinkEvents>,
    /// Inline execution of synchronous handlers (transports may ignore it).
    pub inline: Arc<InlineSlot>,
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}
