//! The one inbound router every built-in transport shares.
//!
//! A transport reads bytes (a ring record, a zmq message, a frame handed
//! over in process) and hands each frame here; what happens to a frame is
//! decided once, the same way for every transport:
//! - [`check`]: decode against the frame limit, and the sender must be the
//!   link's peer where the link knows it;
//! - replies go straight to the pending-call table (`LinkEvents::on_reply`);
//! - heartbeats and goodbyes come back to the transport ([`Routed::Control`]):
//!   answering a probe or closing a link is its byte-level business;
//! - invocations and cancels are run in place where the transport allows it
//!   ([`Inline`]): synchronous handlers over the bytes where they lie, async
//!   one-way handlers polled once in a reused slot; the rest become an
//!   [`Inbound`] for the dispatcher's bounded inbox ([`Routed::Queue`]),
//!   whose bytes come from the reader's [`RxArena`] (no allocation per frame)
//!   unless the transport can share the frame as it is.

use std::sync::Arc;

use crate::handler::PayloadBuf;
use crate::ids::InstanceId;
use crate::protocol::shape::Shape;
use crate::runtime::run::InPlaceRun;
use crate::runtime::rx_arena::{self, RxArena};
use crate::runtime::trace;
use crate::stats::LinkCounters;
use crate::transport::{BoxedLink, Inbound, Inbox, InlineDispatch, OutFrame, PeerLink};
use crate::wire::{self, FrameRef, Header, Kind, ProtocolError};

/// What became of one routed frame.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Fully handled here: a reply routed, a handler run, a cancel applied.
    Done,
    /// A heartbeat or goodbye, for the transport to act on.
    Control(Header),
    /// An invocation for the dispatcher: the transport queues it, waiting
    /// (or pausing its reads) while the inbox is full.
    Queue(Inbound),
}

/// How much of the dispatcher a transport lets run on its reading thread.
pub(crate) enum Inline<'r> {
    /// Trusted links (shared memory, in process): handlers run in place and
    /// their replies go to the closure, to be written back on the link.
    Handlers(&'r mut dyn FnMut(OutFrame<'_>)),
    /// Only cancels are applied in place (a thread that must not run
    /// handlers, or links that are not all trusted).
    CancelOnly,
}

/// One received frame.
pub(crate) struct Frame<'f> {
    /// The frame's bytes, as the transport holds them.
    pub(crate) bytes: &'f [u8],
    /// Shares `bytes` without a copy (a mapped large frame); called at most
    /// once. Without it the router copies into its arena.
    pub(crate) shared: Option<&'f mut dyn FnMut() -> PayloadBuf>,
}

impl<'f> Frame<'f> {
    /// Bytes the router copies if it must keep them.
    pub(crate) fn borrowed(bytes: &'f [u8]) -> Self {
        Self {
            bytes,
            shared: None,
        }
    }
}

/// A frame's owned bytes, made at most once whoever asks first.
struct Owned<'a, 'f> {
    frame: Frame<'f>,
    arena: &'a mut RxArena,
    made: Option<PayloadBuf>,
}

impl Owned<'_, '_> {
    /// The payload (from `offset` on). Unless the whole frame was already
    /// made, only the payload is copied, with no shared handle kept besides
    /// the one returned (an in-place handler's payload).
    fn payload_at(&mut self, offset: usize) -> PayloadBuf {
        if self.made.is_none() && self.frame.shared.is_none() {
            // Aligned: the payload lies at an aligned offset of the frame.
            return self.arena.copy(&self.frame.bytes[offset..]).into();
        }
        self.get().slice(offset..)
    }

    fn get(&mut self) -> PayloadBuf {
        if let Some(bytes) = &self.made {
            return bytes.clone();
        }
        let bytes = match self.frame.shared.take() {
            Some(share) => share(),
            None => self.arena.copy(self.frame.bytes).into(),
        };
        self.made = Some(bytes.clone());
        bytes
    }
}

/// Frames after which a run is published even if the ring is not empty.
const RUN_MAX: u64 = 256;

/// What a batched router keeps over one run of frames.
#[derive(Default)]
struct Run {
    /// The dispatcher, upgraded at the run's first invocation.
    dispatch: Option<Arc<dyn InlineDispatch>>,
    in_place: InPlaceRun,
    /// Frames read in this run, and their bytes (the link's counters).
    frames: u64,
    bytes: u64,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(dispatch) = self.dispatch.take() {
            dispatch.end_run(&mut self.in_place);
        }
    }
}

/// Decodes `bytes` against `max_frame` and, when the link knows its peer,
/// checks that the frame says it comes from that peer.
pub(crate) fn check(
    bytes: &[u8],
    max_frame: usize,
    peer: Option<InstanceId>,
) -> Result<FrameRef<'_>, ProtocolError> {
    sender_is_peer(wire::decode(bytes, max_frame)?, peer)
}

/// The frame, if it says it comes from the link's peer (when known).
#[inline]
fn sender_is_peer(
    view: FrameRef<'_>,
    peer: Option<InstanceId>,
) -> Result<FrameRef<'_>, ProtocolError> {
    match peer {
        Some(peer) if view.header.sender != peer => Err(ProtocolError::Link(format!(
            "frame from {} on the link to {peer}",
            view.header.sender
        ))),
        _ => Ok(view),
    }
}

/// The inbound router of one reader (a link's reader task, a ROUTER socket).
#[derive(Default)]
pub(crate) struct Router {
    arena: RxArena,
    /// Set for a reader that drains runs of frames ([`Router::batched`]).
    run: Option<Run>,
    /// The last frame's repeated bytes (see [`Router::check`]).
    shape: Shape,
}

impl Router {
    /// A router with an empty arena.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A router for a reader that reads frames in runs and calls
    /// [`Router::end_run`] before it waits (see [`crate::runtime::run`]).
    pub(crate) fn batched() -> Self {
        Self {
            arena: RxArena::new(),
            run: Some(Run::default()),
            shape: Shape::default(),
        }
    }

    /// [`check`], with the fields a stream of frames repeats compared to
    /// the last frame's instead of decoded again (see [`Shape`]): the same
    /// result, every check made.
    #[inline]
    pub(crate) fn check<'b>(
        &mut self,
        bytes: &'b [u8],
        max_frame: usize,
        peer: Option<InstanceId>,
    ) -> Result<FrameRef<'b>, ProtocolError> {
        let view = self.shape.decode(bytes, max_frame)?;
        sender_is_peer(view, peer)
    }

    /// Counts one frame of `len` bytes read on the link of `counters`; a
    /// batched router counts it at the end of the run.
    #[inline]
    pub(crate) fn received(&mut self, counters: &LinkCounters, len: usize) {
        match &mut self.run {
            Some(run) => {
                run.frames += 1;
                run.bytes += len as u64;
            }
            None => counters.record_received(len),
        }
    }

    /// Whether the run has gone on long enough to be published now.
    #[inline]
    pub(crate) fn run_is_long(&self) -> bool {
        self.run.as_ref().is_some_and(|run| run.frames >= RUN_MAX)
    }

    /// Ends a run of frames: publishes its counts, lets go of the
    /// dispatcher and the handler it held. Cheap when nothing ran.
    pub(crate) fn end_run(&mut self, counters: &LinkCounters) {
        if let Some(run) = &mut self.run {
            counters.record_received_run(run.frames, run.bytes);
            run.frames = 0;
            run.bytes = 0;
            if let Some(dispatch) = run.dispatch.take() {
                dispatch.end_run(&mut run.in_place);
            }
        }
    }

    /// Runs `bytes` the way the run's last frame ran, if it is a one-way
    /// frame of the same shape (see [`Shape`]) from the link's `peer` and
    /// that frame ran in place ([`InlineDispatch::repeat_in_run`]): the
    /// frame is neither decoded in full nor routed again. False, having
    /// done nothing, when it must take [`Router::check`] and
    /// [`Router::route`] (which also report what is wrong with it).
    #[inline]
    pub(crate) fn repeat(
        &mut self,
        bytes: &[u8],
        max_frame: usize,
        peer: InstanceId,
        link: &dyn PeerLink,
    ) -> bool {
        let Router { arena, run, shape } = self;
        let Some(Run {
            dispatch: Some(dispatch),
            in_place,
            ..
        }) = run
        else {
            return false;
        };
        if !in_place.is_armed() {
            return false;
        }
        let Some(view) = shape.same(bytes, max_frame) else {
            return false;
        };
        if view.header.kind != Kind::OneWay || view.header.sender != peer {
            return false;
        }
        let _span = trace::inbound(&view.header, view.name, link).entered();
        let offset = view.payload_offset;
        let mut payload = || arena.copy(&bytes[offset..]).into();
        dispatch.repeat_in_run(in_place, &view.header, view.payload, &mut payload)
    }

    /// Routes one checked frame (see the module docs). `link` is the link it
    /// came on (for the per-message span); `reply_link` makes the handle an
    /// invocation's replies go back on, only when one is needed.
    pub(crate) fn route(
        &mut self,
        inbox: &Inbox,
        view: &FrameRef<'_>,
        frame: Frame<'_>,
        link: &dyn PeerLink,
        reply_link: &dyn Fn() -> BoxedLink,
        inline: Inline<'_>,
    ) -> Routed {
        let header = view.header;
        let Router { arena, run, .. } = self;
        let mut owned = Owned {
            frame,
            arena,
            made: None,
        };
        if header.kind.is_reply() {
            if owned.frame.shared.is_some() {
                let frame = owned.get();
                inbox.events.on_reply_shared(&header, view.payload, &frame);
            } else if view.payload.len() > rx_arena::MAX_POOLED {
                // A medium reply is kept in the arena (no allocation), where
                // its caller may take it as a payload; small ones are copied
                // into the pending table's recycled buffers.
                let offset = view.payload.as_ptr() as usize - owned.frame.bytes.as_ptr() as usize;
                let payload = owned.payload_at(offset);
                inbox.events.on_reply_shared(&header, &payload, &payload);
            } else {
                inbox.events.on_reply(&header, view.payload);
            }
            return Routed::Done;
        }
        if matches!(header.kind, Kind::Heartbeat | Kind::Goodbye) {
            return Routed::Control(header);
        }
        let unbatched;
        let (dispatch, in_run) = match run {
            // Upgraded once per run, not per frame.
            Some(Run {
                dispatch, in_place, ..
            }) => {
                if dispatch.is_none() {
                    *dispatch = inbox.inline.get();
                }
                (dispatch.as_deref(), Some(in_place))
            }
            None => {
                unbatched = inbox.inline.get();
                (unbatched.as_deref(), None)
            }
        };
        if let Some(dispatch) = dispatch {
            let ran = match inline {
                Inline::Handlers(reply) => {
                    let _span = trace::inbound(&header, view.name, link).entered();
                    let (name, bytes) = (view.name, view.payload);
                    let offset = view.payload_offset;
                    let mut payload = || owned.payload_at(offset);
                    match in_run {
                        Some(run) => dispatch.try_in_run(
                            run,
                            &header,
                            name,
                            bytes,
                            &mut payload,
                            reply_link,
                            reply,
                        ),
                        None => dispatch.try_in_place(
                            &header,
                            name,
                            bytes,
                            &mut payload,
                            reply_link,
                            reply,
                        ),
                    }
                }
                // Cancels and stream credit never wait behind the concurrency limit.
                Inline::CancelOnly if matches!(header.kind, Kind::Cancel | Kind::Credit) => {
                    dispatch.try_inline(&header, view.name, view.payload, &mut |_| {})
                }
                Inline::CancelOnly => false,
            };
            if ran {
                return Routed::Done;
            }
        }
        Routed::Queue(Inbound::from_frame(owned.get(), view, reply_link()))
    }
}
