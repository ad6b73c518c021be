//! The two tasks of every link: the reader of the consumer ring, and the
//! watcher of the rendezvous socket (descriptors, acknowledgements, EOF).
//!
//! The reader handles each record where it lies: replies go to
//! `LinkEvents::on_reply`, invocations first to the inline dispatcher (whose
//! reply is written straight into this link's producer ring), else they are
//! copied into `Bytes` and queued on the bounded inbox; waiting there is the
//! backpressure (the ring fills, the sender waits). Peers of another uid get
//! their records copied into private aligned memory before anything reads them.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rkyv::util::AlignedVec;
use shm_ring::fdpass::recv_fds;
use shm_ring::{Consumer, RingError};
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::large::{self, Source};
use super::link::{
    FLAG_FRAME, FLAG_LARGE, LARGE_WINDOW, MARKER_LEN, MSG_ACK, MSG_FD, MSG_PING, MSG_PONG, ShmLink,
    Wrote,
};
use super::liveness;
use super::pool::RxPool;
use super::pooled::{self, FLAG_POOL, FLAG_RETIRE, FLAG_SEGMENT, Step};
use crate::transport::{BoxedLink, Inbound, Inbox, OutFrame};
use crate::wire::{self, Kind, PAYLOAD_ALIGN, ProtocolError};

/// How long a marker record may wait for its descriptor (sent before the marker).
const FD_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of one frame.
enum Outcome {
    /// Fully handled (reply routed, handler run inline, control frame).
    Done,
    /// An invocation for the dispatcher.
    Queue(Inbound),
    /// The link must end.
    Stop,
}

/// Waits until the consumer has a record (or an error) at its head.
///
/// `spin`: `None` spins for ever (`Spin`), `Some(d)` spins for `d`, then
/// parks on the doorbell (the consumer's own policy is then `Park`).
/// Each spin round yields to the tokio scheduler (so tasks sharing the
/// thread run) and then to the OS. When the peer's thread was woken onto
/// this very core (schedulers like to do that after an eventfd wake-up, and
/// a loaded host does it all the time), a spinner that keeps the core holds
/// up the very answer it waits for until its budget runs out. Measured on a
/// loaded 2-core VM, 64-byte echo, median round trip: `Adaptive` ~210 µs
/// when never yielding the core (threads co-located) against ~5-7 µs when
/// yielding every round; `Spin` 3.3 µs or 100-135 µs (co-located) when
/// yielding every 64 rounds, against a steady ~6 µs when yielding every
/// round. On an idle core the extra `sched_yield` is cheap.
async fn wait_record(rx: &mut Consumer, spin: Option<Duration>) -> Result<(), RingError> {
    // A record left unreleased (dropped grant) stays at the head.
    let ready = |rx: &mut Consumer| match rx.try_read() {
        Ok(_) => Ok(true),
        Err(RingError::Empty) => Ok(false),
        Err(e) => Err(e),
    };
    if ready(rx)? {
        return Ok(());
    }
    if spin != Some(Duration::ZERO) {
        let start = std::time::Instant::now();
        while spin.is_none_or(|budget| start.elapsed() < budget) {
            tokio::task::yield_now().await;
            std::thread::yield_now();
            if ready(rx)? {
                return Ok(());
            }
        }
    }
    rx.read().await.map(drop)
}

/// Reads the consumer ring until the link ends, then reports the loss.
/// `spin` is the busy-wait budget (see [`wait_record`]).
pub(crate) async fn read_ring(
    link: Arc<ShmLink>,
    mut rx: Consumer,
    mut fds: mpsc::Receiver<OwnedFd>,
    inbox: Inbox,
    copy: bool,
    spin: Option<Duration>,
) {
    let mut scratch = AlignedVec::<PAYLOAD_ALIGN>::new();
    let mut deferred: Vec<Vec<u8>> = Vec::new();
    let mut pool = RxPool::new(pooled::max_segment(inbox.max_frame));
    loop {
        let grant = match wait_record(&mut rx, spin).await {
            Ok(()) => rx.try_read(),
            Err(e) => Err(e),
        };
        let grant = match grant {
            Ok(grant) => grant,
            Err(RingError::Closed) => break,
            Err(e @ RingError::Corrupt { .. }) => {
                link.violation(ProtocolError::Link(e.to_string()));
                break;
            }
            Err(e) => {
                tracing::warn!(peer = %link.peer, %e, "shm ring read failed");
                break;
            }
        };
        let outcome = match grant.flags() {
            FLAG_FRAME => {
                let bytes: &[u8] = if copy {
                    scratch.clear();
                    scratch.resize(grant.len(), 0);
                    grant.copy_to_slice(&mut scratch);
                    &scratch
                } else {
                    grant.payload()
                };
                let outcome = handle(&link, &inbox, bytes, None, &mut deferred);
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
                    break;
                };
                match take_large(&link, &mut fds, len, inbox.max_frame).await {
                    Some(frame) => {
                        let mut share = || frame.clone();
                        handle(&link, &inbox, &frame, Some(&mut share), &mut deferred)
                    }
                    None => Outcome::Stop,
                }
            }
            FLAG_POOL | FLAG_SEGMENT | FLAG_RETIRE => {
                match pooled::on_record(&link, &mut pool, &mut fds, grant).await {
                    Step::Frame(held) if copy => {
                        scratch.clear();
                        scratch.extend_from_slice(held.as_ref());
                        drop(held);
                        handle(&link, &inbox, &scratch, None, &mut deferred)
                    }
                    Step::Frame(held) => {
                        let view = held.view();
                        // Becomes `Bytes` only if queued; else released here.
                        let mut held = Some(held);
                        let mut share = || Bytes::from_owner(held.take().expect("shared once"));
                        handle(
                            &link,
                            &inbox,
                            view.as_ref(),
                            Some(&mut share),
                            &mut deferred,
                        )
                    }
                    Step::Done => Outcome::Done,
                    Step::Stop => Outcome::Stop,
                }
            }
            other => {
                link.violation(ProtocolError::Link(format!(
                    "unknown record flags {other:#06x}"
                )));
                break;
            }
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Queue(inbound) => deliver(&link, &inbox, inbound).await,
            Outcome::Stop => break,
        }
        for frame in deferred.drain(..) {
            if let Err(e) = link.write(Source::Encoded(&frame)).await {
                tracing::debug!(peer = %link.peer, %e, "deferred reply not delivered");
            }
        }
    }
    link.finish();
}

/// Routes one frame. `shared` makes the same frame `Bytes` without a copy
/// (a mapped large frame), for when it is queued.
fn handle(
    link: &Arc<ShmLink>,
    inbox: &Inbox,
    bytes: &[u8],
    shared: Option<&mut dyn FnMut() -> Bytes>,
    deferred: &mut Vec<Vec<u8>>,
) -> Outcome {
    link.counters.record_received(bytes.len());
    let view = match wire::decode(bytes, inbox.max_frame) {
        Ok(view) => view,
        Err(e) => {
            link.violation(e);
            return Outcome::Stop;
        }
    };
    if view.header.sender != link.peer {
        link.violation(ProtocolError::Link(format!(
            "frame from {} on the link to {}",
            view.header.sender, link.peer
        )));
        return Outcome::Stop;
    }
    let kind = view.header.kind;
    if kind.is_reply() {
        match shared {
            Some(share) => {
                let frame = share();
                link.events
                    .on_reply_shared(&view.header, view.payload, &frame);
            }
            None => link.events.on_reply(&view.header, view.payload),
        }
        return Outcome::Done;
    }
    match kind {
        Kind::Heartbeat => return Outcome::Done,
        Kind::Goodbye => {
            tracing::debug!(peer = %link.peer, "goodbye received");
            link.shut();
            return Outcome::Done;
        }
        _ => {}
    }
    let _span = crate::runtime::trace::inbound(&view.header, view.name, &**link).entered();
    // Cancels and credits are handled here too: they never wait behind the
    // concurrency limit.
    if (kind.is_invocation() || kind == Kind::Cancel || kind == Kind::Credit)
        && let Some(inline) = inbox.inline.get()
        && inline.try_inline(&view.header, view.name, view.payload, &mut |reply| {
            reply_inline(link, reply, deferred)
        })
    {
        return Outcome::Done;
    }
    let frame = match shared {
        Some(share) => share(),
        None => Bytes::copy_from_slice(bytes),
    };
    let reply_link: BoxedLink = Arc::clone(link) as BoxedLink;
    Outcome::Queue(Inbound::from_frame(frame, &view, reply_link))
}

/// Writes an inline handler's reply straight into the producer ring; if the
/// ring is busy or full (or the reply is large), copies it for the reader to
/// send right after, so replies keep their order.
fn reply_inline(link: &ShmLink, reply: OutFrame<'_>, deferred: &mut Vec<Vec<u8>>) {
    if deferred.is_empty()
        && let Ok(mut tx) = link.tx.try_lock()
    {
        match link.write_now(&mut tx, Source::Frame(&reply)) {
            Ok(Wrote::Done) => return,
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

/// Reads the rendezvous socket until end of file (the peer is gone) or a
/// protocol violation, then shuts the link.
pub(crate) async fn watch_socket(link: Arc<ShmLink>, fds: mpsc::Sender<OwnedFd>) {
    let mut byte = [0u8; 1];
    loop {
        let got = link
            .stream
            .async_io(Interest::READABLE, || {
                recv_fds(link.stream.as_fd(), &mut byte).map_err(|e| match e {
                    RingError::Io(e) => e,
                    other => std::io::Error::other(other.to_string()),
                })
            })
            .await;
        let violation = match got {
            Ok((0, _)) => break,
            Ok((_, received)) => match (byte[0], <[OwnedFd; 1]>::try_from(received)) {
                (MSG_FD, Ok([fd])) => match fds.try_send(fd) {
                    Ok(()) => continue,
                    Err(_) => "more large frames in flight than the window allows",
                },
                (MSG_PING, Err(none)) if none.is_empty() => {
                    link.send_byte_now(MSG_PONG);
                    continue;
                }
                (MSG_PONG, Err(none)) if none.is_empty() => {
                    liveness::heard(&link);
                    continue;
                }
                (MSG_ACK, Err(none)) if none.is_empty() => {
                    if link.large_window.available_permits() < LARGE_WINDOW {
                        link.large_window.add_permits(1);
                        continue;
                    }
                    "acknowledgement of no large frame"
                }
                _ => "unexpected message on the rendezvous socket",
            },
            Err(e) => {
                tracing::debug!(peer = %link.peer, %e, "rendezvous socket failed");
                break;
            }
        };
        link.violation(ProtocolError::Link(violation.into()));
        break;
    }
    link.shut();
}
