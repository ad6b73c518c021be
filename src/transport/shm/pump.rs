//! The reader task of every link: it reads the consumer ring until the
//! link ends (the rendezvous socket has its own watcher, [`super::watch`]).
//!
//! The reader hands each record, where it lies, to the shared router
//! through [`super::inbound`]: replies go to `LinkEvents::on_reply`,
//! invocations run in place where they can (an inline handler's reply is
//! written straight into this link's producer ring), else they are copied
//! into the router's arena and queued on the bounded inbox; waiting there is
//! the backpressure (the ring fills, the sender waits). Peers of another uid get
//! their records copied into private aligned memory before anything reads them.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shm_ring::{RingError, SpinStep, Spinner};
use tokio::sync::mpsc;

use super::inbound::{Outcome, frame_bytes, handle};
use super::large::{self, Source};
use super::link::{FLAG_FRAME, FLAG_LARGE, MARKER_LEN, ShmLink};
use super::pooled::{self, FLAG_POOL, FLAG_RETIRE, FLAG_SEGMENT, Step};
use super::reader::ReaderState;
use crate::handler::PayloadBuf;
use crate::transport::{BoxedLink, Inbound, Inbox};
use crate::wire::ProtocolError;

/// How long a marker record may wait for its descriptor (sent before the marker).
const FD_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls between two yields of a spinning reader (to the tasks sharing its
/// thread, then to the OS). A peer thread woken onto this very core (after
/// an eventfd wake-up, or on a loaded host) waits at most this many polls,
/// a few microseconds, for the core, instead of a whole spin budget.
const READER_YIELD_EVERY: u32 = 128;

/// Reads the consumer ring until the link ends, then reports the loss.
///
/// The reader spins on the ring itself under the link's one spin policy
/// ([`Spinner`], from the ring crate: `None` spins for ever, `Some(d)` for
/// `d`, then parks on the doorbell, the consumer's own policy being `Park`).
/// It holds the link's [`ReaderState`] while it polls and puts it back
/// whenever it yields, so a waiting caller can read the ring meanwhile
/// ([`super::reader`]). After a record that woke someone (a reply's caller,
/// the dispatcher) it yields once if the ring is then empty, so the woken
/// task runs before this one spins again (a reader that parks at once just
/// parks); after an invocation that ran fully in place (a one-way stream)
/// it does not.
pub(crate) async fn read_ring(link: Arc<ShmLink>, mut st: Box<ReaderState>) {
    let mut spinner = Spinner::with_budget(st.spin, READER_YIELD_EVERY);
    let mut woke = false;
    loop {
        if st.stopped {
            break;
        }
        // Looked at before it is taken: taking moves the whole (empty) slot.
        if st.queued.is_some()
            && let Some(inbound) = st.queued.take()
        {
            deliver(&link, &st.inbox, inbound).await;
        }
        if !st.deferred.is_empty() {
            flush_deferred(&link, &mut st.deferred).await;
        }
        // Plain frame records back to back without a future per record;
        // other records (pooled, large) take the awaiting read.
        let read = match read_frames(&link, &mut st) {
            Some(read) => read,
            None => read_one(&link, &mut st).await,
        };
        match read {
            Read::Got { woke: w } => woke |= w,
            Read::Queued => {
                woke = true;
                st.router.end_run(&link.counters);
                if let Some(inbound) = st.queued.take() {
                    deliver(&link, &st.inbox, inbound).await;
                }
            }
            Read::Empty => {
                // The run is over: publish it before anything waits.
                st.router.end_run(&link.counters);
                // A parking reader lets the woken task run by parking: a
                // yield first costs the thread one more poll of the reactor
                // (an `epoll_wait`) per round trip.
                if std::mem::take(&mut woke) && !spinner.parks_at_once() {
                    st = yield_released(&link, st, false).await;
                    continue;
                }
                match spinner.step() {
                    SpinStep::Poll => {}
                    SpinStep::Yield => st = yield_released(&link, st, true).await,
                    SpinStep::Park => {
                        // Parked with the state held: a caller then waits
                        // for the wake-up as it always did.
                        if let Err(e) = st.rx.read().await.map(drop) {
                            failed(&link, e);
                            break;
                        }
                    }
                }
                continue;
            }
            Read::End => break,
        }
        spinner.reset();
    }
    st.router.end_run(&link.counters);
    drop(st);
    link.finish();
}

/// Puts the reader state back for the length of one yield (to the tasks
/// sharing this thread, and with `os` to the OS too), then takes it again,
/// waiting while a caller drives the ring.
async fn yield_released(link: &ShmLink, st: Box<ReaderState>, os: bool) -> Box<ReaderState> {
    link.reader.put(st);
    // tokio's yield: a caller that is a runtime's `block_on` future (not
    // a task in the run queue) is only polled once the queue is empty.
    tokio::task::yield_now().await;
    if os {
        std::thread::yield_now();
    }
    link.reader.take().await
}

/// A ring failure ends the link.
fn failed(link: &ShmLink, e: RingError) {
    match e {
        RingError::Closed => {}
        e @ RingError::Corrupt { .. } => link.violation(ProtocolError::Link(e.to_string())),
        e => tracing::warn!(peer = %link.peer, %e, "shm ring read failed"),
    }
}

/// Sends the inline replies that did not fit the producer ring, in order.
async fn flush_deferred(link: &ShmLink, deferred: &mut Vec<Vec<u8>>) {
    for frame in deferred.drain(..) {
        if let Err(e) = link.write(Source::Encoded(&frame)).await {
            tracing::debug!(peer = %link.peer, %e, "deferred reply not delivered");
        }
    }
}

/// What one look at the ring gave (small: an invocation to queue waits in
/// the state's `queued` instead of being moved through the loop).
enum Read {
    /// A record, fully handled; `woke`: it woke (or completed) a caller.
    Got { woke: bool },
    /// An invocation for the dispatcher, in `ReaderState::queued`.
    Queued,
    /// Nothing to read now.
    Empty,
    /// The ring failed or closed, or the link must end.
    End,
}

impl Read {
    /// What became of a record, with an invocation parked in `queued`.
    fn of(outcome: Outcome, queued: &mut Option<Inbound>) -> Self {
        match outcome {
            Outcome::Done { woke } => Self::Got { woke },
            Outcome::Queue(inbound) => {
                *queued = Some(inbound);
                Self::Queued
            }
            Outcome::Stop => Self::End,
        }
    }
}

/// Handles the plain frame records at the ring's head one after another,
/// synchronously, until one needs the reader's loop: returns the first
/// outcome that is not a quiet `Done` (a woken caller, an invocation to
/// queue, the link's end), `Empty`, or `None` when the head record is not a
/// plain frame (left in the ring for [`read_one`]). A reply that could not
/// be written at once also ends the batch, so the loop sends it before the
/// next record is handled.
fn read_frames(link: &Arc<ShmLink>, st: &mut ReaderState) -> Option<Read> {
    let ReaderState {
        rx,
        inbox,
        copy,
        scratch,
        deferred,
        router,
        queued,
        ..
    } = st;
    let reply_link = || Arc::clone(link) as BoxedLink;
    loop {
        let grant = match rx.try_read() {
            Ok(grant) if grant.flags() == FLAG_FRAME => grant,
            // Kept in the ring (a grant dropped unreleased) for `read_one`.
            Ok(_) => return None,
            Err(RingError::Empty) => return Some(Read::Empty),
            Err(e) => {
                failed(link, e);
                return Some(Read::End);
            }
        };
        let bytes = frame_bytes(&grant, *copy, scratch);
        let outcome = handle(link, inbox, router, bytes, None, deferred, &reply_link);
        grant.release();
        match outcome {
            Outcome::Done { woke: false } if deferred.is_empty() => {}
            outcome => return Some(Read::of(outcome, queued)),
        }
    }
}

/// Handles the record at the ring's head, if there is one.
async fn read_one(link: &Arc<ShmLink>, st: &mut ReaderState) -> Read {
    let ReaderState {
        rx,
        fds,
        inbox,
        copy,
        scratch,
        deferred,
        pool,
        router,
        queued,
        ..
    } = st;
    let copy = *copy;
    let grant = match rx.try_read() {
        Ok(grant) => grant,
        Err(RingError::Empty) => return Read::Empty,
        Err(e) => {
            failed(link, e);
            return Read::End;
        }
    };
    let reply_link = || Arc::clone(link) as BoxedLink;
    let outcome = match grant.flags() {
        FLAG_FRAME => {
            let bytes = frame_bytes(&grant, copy, scratch);
            let outcome = handle(link, inbox, router, bytes, None, deferred, &reply_link);
            grant.release();
            outcome
        }
        FLAG_LARGE => {
            let mut marker = [0u8; MARKER_LEN];
            let len = if grant.len() == MARKER_LEN {
                grant.copy_to_slice(&mut marker);
                usize::try_from(u64::from_le_bytes(
                    marker[..8].try_into().unwrap_or_default(),
                ))
                .ok()
                .filter(|_| marker[8..].iter().all(|&b| b == 0))
            } else {
                None
            };
            grant.release();
            let Some(len) = len else {
                link.violation(ProtocolError::Link("malformed large-frame marker".into()));
                return Read::End;
            };
            match take_large(link, fds, len, inbox.max_frame).await {
                Some(frame) => {
                    let mut share = || PayloadBuf::from(frame.clone());
                    let shared = Some(&mut share as &mut dyn FnMut() -> PayloadBuf);
                    handle(link, inbox, router, &frame, shared, deferred, &reply_link)
                }
                None => Outcome::Stop,
            }
        }
        FLAG_POOL | FLAG_SEGMENT | FLAG_RETIRE => {
            match pooled::on_record(link, pool, fds, grant).await {
                Step::Frame(held) if copy => {
                    scratch.clear();
                    scratch.extend_from_slice(held.as_ref());
                    drop(held);
                    handle(link, inbox, router, scratch, None, deferred, &reply_link)
                }
                Step::Frame(held) => {
                    // Shared (one more holder, no allocation) only if kept;
                    // else released when `held` drops here.
                    let mut share = || PayloadBuf::pooled(held.clone());
                    let shared = Some(&mut share as &mut dyn FnMut() -> PayloadBuf);
                    handle(
                        link,
                        inbox,
                        router,
                        held.as_ref(),
                        shared,
                        deferred,
                        &reply_link,
                    )
                }
                Step::Done => Outcome::Done { woke: false },
                Step::Stop => Outcome::Stop,
            }
        }
        other => {
            link.violation(ProtocolError::Link(format!(
                "unknown record flags {other:#06x}"
            )));
            return Read::End;
        }
    };
    Read::of(outcome, queued)
}

/// Queues an invocation for the dispatcher, waiting while the inbox is full.
/// Frames the peer committed before it went are still owed to the handlers
/// (its sender was told they were sent), so they wait for room too; if the
/// peer is already gone, its loss is reported first, so our own calls to it
/// fail now rather than after this backlog.
async fn deliver(link: &ShmLink, inbox: &Inbox, inbound: Inbound) {
    let mut reported = false;
    loop {
        tokio::select! {
            biased;
            permit = inbox.invocations.reserve() => {
                match permit {
                    Ok(permit) => permit.send(inbound),
                    Err(_) => tracing::warn!(peer = %link.peer, "dispatcher gone: invocation dropped"),
                }
                return;
            }
            () = link.lost.cancelled(), if !reported => {
                link.report_lost();
                reported = true;
            }
        }
    }
}

/// Takes the descriptor announced by a marker, acknowledges it and maps it.
async fn take_large(
    link: &ShmLink,
    fds: &mut mpsc::Receiver<OwnedFd>,
    len: usize,
    max_frame: usize,
) -> Option<Bytes> {
    let fd = match tokio::time::timeout(FD_TIMEOUT, fds.recv()).await {
        Ok(Some(fd)) => fd,
        Ok(None) | Err(_) => {
            if !link.lost.is_cancelled() {
                link.violation(ProtocolError::Link(
                    "large-frame marker without a descriptor".into(),
                ));
            }
            return None;
        }
    };
    let mapped = large::map_received(fd, len, max_frame);
    link.ack_large().await;
    match mapped {
        Ok(frame) => Some(frame.into_bytes()),
        Err(e) => {
            link.violation(ProtocolError::Link(e.to_string()));
            None
        }
    }
}
