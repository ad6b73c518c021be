//! One frame record's way through the shared router, for the link's reader
//! task ([`super::pump`]) and for a caller that drives the ring itself
//! ([`super::reader`]): its bytes (in place, or copied for a peer of
//! another uid), the routing, and an inline handler's reply written
//! straight back into the producer ring.

use rkyv::util::AlignedVec;

use super::large::Source;
use super::link::{ShmLink, Wrote};
use crate::handler::PayloadBuf;
use crate::runtime::router::{Frame, Inline, Routed, Router};
use crate::transport::{BoxedLink, Inbound, Inbox, OutFrame};
use crate::wire::{Kind, PAYLOAD_ALIGN};

/// What became of one frame.
pub(crate) enum Outcome {
    /// Fully handled (reply routed, handler run inline, control frame);
    /// `woke`: it was a reply, which woke (or completed) a waiting caller.
    Done { woke: bool },
    /// An invocation for the dispatcher.
    Queue(Inbound),
    /// The link must end.
    Stop,
}

/// A plain frame record's bytes: in place, or copied into `scratch` first
/// (a peer of another uid, whose memory we never read twice).
pub(crate) fn frame_bytes<'a>(
    grant: &'a shm_ring::ReadGrant<'_>,
    copy: bool,
    scratch: &'a mut AlignedVec<PAYLOAD_ALIGN>,
) -> &'a [u8] {
    if !copy {
        return grant.payload();
    }
    scratch.clear();
    scratch.resize(grant.len(), 0);
    grant.copy_to_slice(scratch);
    scratch
}

/// Routes one frame through the shared router. `shared` makes the same
/// frame `Bytes` without a copy (a mapped large frame), for when it is kept.
pub(crate) fn handle<'f>(
    link: &ShmLink,
    inbox: &Inbox,
    router: &mut Router,
    bytes: &'f [u8],
    shared: Option<&'f mut dyn FnMut() -> PayloadBuf>,
    deferred: &mut Vec<Vec<u8>>,
    reply_link: &dyn Fn() -> BoxedLink,
) -> Outcome {
    router.received(&link.counters, bytes.len());
    if shared.is_none() && router.repeat(bytes, inbox.max_frame, link.peer, link) {
        if router.run_is_long() {
            router.end_run(&link.counters);
        }
        return Outcome::Done { woke: false };
    }
    let view = match router.check(bytes, inbox.max_frame, Some(link.peer)) {
        Ok(view) => view,
        Err(e) => {
            link.violation(e);
            return Outcome::Stop;
        }
    };
    let woke = view.header.kind.is_reply();
    let frame = Frame { bytes, shared };
    let mut reply = |reply: OutFrame<'_>| reply_inline(link, reply, deferred);
    let routed = router.route(
        inbox,
        &view,
        frame,
        link,
        reply_link,
        Inline::Handlers(&mut reply),
    );
    if router.run_is_long() {
        router.end_run(&link.counters);
    }
    match routed {
        Routed::Done => Outcome::Done { woke },
        Routed::Control(header) => {
            if header.kind == Kind::Goodbye {
                tracing::debug!(peer = %link.peer, "goodbye received");
                link.shut();
            }
            Outcome::Done { woke: false }
        }
        Routed::Queue(inbound) => Outcome::Queue(inbound),
    }
}

/// Writes an inline handler's reply straight into the producer ring; if the
/// ring is busy or full (or the reply is large), copies it for the reader to
/// send right after, so replies keep their order.
fn reply_inline(link: &ShmLink, reply: OutFrame<'_>, deferred: &mut Vec<Vec<u8>>) {
    if deferred.is_empty() {
        let wrote = match link.tx.try_lock() {
            Ok(mut tx) => link.write_now(&mut tx, Source::Frame(&reply)),
            Err(_) => Ok(Wrote::Full),
        };
        match wrote {
            Ok(Wrote::Done) => return,
            // Too big for a record: straight into the pool if it has room
            // now, with no copy into a deferred frame.
            Ok(Wrote::Large) if link.try_write_large(Source::Frame(&reply)).is_ok() => return,
            Ok(Wrote::Full | Wrote::Large) => {}
            Err(e) => {
                tracing::debug!(peer = %link.peer, %e, "inline reply not delivered");
                return;
            }
        }
    }
    match reply.to_vec() {
        Ok(frame) => deferred.push(frame),
        Err(e) => tracing::warn!(peer = %link.peer, %e, "inline reply could not be encoded"),
    }
}
