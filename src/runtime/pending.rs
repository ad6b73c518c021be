//! The in-flight table: message id -> the state of the call waiting for its
//! reply. It is the one owner of a pending call's state; the caller's handle
//! ([`super::call::PendingCall`]) waits on it, replies complete it, peer loss
//! fails every entry of that peer at once.
//!
//! Steady state allocates nothing: an entry is a slot of a map whose capacity
//! stays, the waiter's waker is stored in the slot (no channel per call), and
//! a reply's payload is copied into a recycled, aligned buffer that the caller
//! decodes in place and hands back.

mod reply;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, broadcast};

pub(crate) use self::reply::{Reply, remote_error};
use self::reply::{ReplyBuf, keep_spare, reply_of};
use crate::error::{Error, Result};
use crate::handler::PayloadBuf;
use crate::ids::{InstanceId, MessageId};
use crate::transport::{BoxedLink, OutFrame};
use crate::wire::{Header, Kind};

/// Cancels waiting for room on a full link, at most.
const DEFERRED_CANCELS: usize = 1024;
/// How long a deferred Cancel waits for room before it is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// Lost peers remembered, so later calls to them say `PeerLost`.
const REMEMBERED_LOSSES: usize = 1024;
/// Loss notices buffered per listener (a slow one sees `Lagged` and rechecks).
const LOSS_NOTICES: usize = 1024;

/// Whether the caller asked for a receipt, and whether it came.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receipt {
    NotAsked,
    Waiting,
    Came,
}

/// One call in flight.
struct Slot {
    peer: InstanceId,
    receipt: Receipt,
    /// Set once, by the reply or a failure; taken by the caller.
    outcome: Option<Result<Reply>>,
    waker: Option<Waker>,
}

/// Hashes our own message ids: they come from one counter of this process
/// (a peer's correlation ids are only looked up, never inserted), so a
/// multiplicative hash spreads them well and no hostile key set exists.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Calls in flight the table holds before it first grows.
const CALLS_PRESIZED: usize = 64;

struct Calls {
    slots: HashMap<MessageId, Slot, BuildHasherDefault<IdHasher>>,
    spare: Vec<ReplyBuf>,
}

/// What [`PendingTable::forget`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Forgot {
    /// The call was still waiting: the peer should hear a Cancel.
    Waiting,
    /// It had its outcome (or was gone already): nothing to tell.
    Finished,
}

/// Outstanding calls of one manager.
pub(crate) struct PendingTable {
    calls: Mutex<Calls>,
    late_replies: AtomicU64,
    deferred_cancels: Arc<Semaphore>,
    lost: Mutex<VecDeque<InstanceId>>,
    lost_notices: broadcast::Sender<InstanceId>,
}

impl Default for PendingTable {
    fn default() -> Self {
        Self {
            // Sized up front for a few dozen calls in flight, so that a new
            // peak of concurrent calls does not grow the table (or the
            // spares' list) in the middle of a steady stream.
            calls: Mutex::new(Calls {
                slots: HashMap::with_capacity_and_hasher(CALLS_PRESIZED, Default::default()),
                spare: Vec::with_capacity(reply::SPARE_BUFFERS),
            }),
            late_replies: AtomicU64::new(0),
            deferred_cancels: Arc::new(Semaphore::new(DEFERRED_CANCELS)),
            lost: Mutex::new(VecDeque::new()),
            lost_notices: broadcast::channel(LOSS_NOTICES).0,
        }
    }
}

impl PendingTable {
    /// Registers a call before its frame is sent (so a fast reply finds it).
    pub(crate) fn register(&self, id: MessageId, peer: InstanceId, want_receipt: bool) {
        let slot = Slot {
            peer,
            receipt: if want_receipt {
                Receipt::Waiting
            } else {
                Receipt::NotAsked
            },
            outcome: None,
            waker: None,
        };
        self.calls.lock().slots.insert(id, slot);
    }

    /// Routes one reply frame to its waiter. Unknown ids (late replies after a
    /// timeout or cancel) are dropped and counted. A response whose frame is
    /// `shared` (a mapped large frame) keeps a slice of it instead of a copy.
    pub(crate) fn complete(&self, header: &Header, payload: &[u8], shared: Option<&PayloadBuf>) {
        let mut calls = self.calls.lock();
        let Calls { slots, spare } = &mut *calls;
        let slot = slots
            .get_mut(&header.correlation_id)
            .filter(|s| s.outcome.is_none());
        let Some(slot) = slot else {
            drop(calls);
            self.count_late(header);
            return;
        };
        match header.kind {
            Kind::Receipt if slot.receipt == Receipt::Waiting => slot.receipt = Receipt::Came,
            Kind::Receipt => {
                drop(calls);
                self.count_late(header);
                return;
            }
            Kind::Response => slot.outcome = Some(Ok(reply_of(payload, shared, spare))),
            Kind::Ack => slot.outcome = Some(Ok(Reply::Empty)),
            _ => slot.outcome = Some(Err(remote_error(header.error_code, payload))),
        }
        let waker = slot.waker.take();
        drop(calls);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The call's outcome, once it has one (the entry is then gone).
    pub(crate) fn poll_outcome(&self, id: MessageId, cx: &mut Context<'_>) -> Poll<Result<Reply>> {
        let mut calls = self.calls.lock();
        let Some(slot) = calls.slots.get_mut(&id) else {
            // Only a call that was already finished gets here.
            return Poll::Ready(Err(Error::ShuttingDown));
        };
        if slot.outcome.is_none() {
            store_waker(&mut slot.waker, cx);
            return Poll::Pending;
        }
        let outcome = calls.slots.remove(&id).and_then(|s| s.outcome);
        Poll::Ready(outcome.unwrap_or(Err(Error::ShuttingDown)))
    }

    /// Ready once the receipt came (`Ok`), or the call failed before it did
    /// (the error; the entry is then gone). A final reply implies the receipt.
    pub(crate) fn poll_receipt(&self, id: MessageId, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut calls = self.calls.lock();
        let Some(slot) = calls.slots.get_mut(&id) else {
            return Poll::Ready(Err(Error::ShuttingDown));
        };
        match (slot.receipt, &slot.outcome) {
            // A failure before the receipt is the receipt's; after it, the
            // response's.
            (Receipt::Waiting, Some(Err(_))) => {}
            (Receipt::Came | Receipt::NotAsked, _) | (Receipt::Waiting, Some(Ok(_))) => {
                return Poll::Ready(Ok(()));
            }
            (Receipt::Waiting, None) => {
                store_waker(&mut slot.waker, cx);
                return Poll::Pending;
            }
        }
        match calls.slots.remove(&id).and_then(|s| s.outcome) {
            Some(Err(err)) => Poll::Ready(Err(err)),
            _ => Poll::Ready(Err(Error::ShuttingDown)),
        }
    }

    /// Removes a call whose caller stopped waiting; says whether it was
    /// still waiting for its reply. A reply it did not read is recycled.
    pub(crate) fn forget(&self, id: MessageId) -> Forgot {
        let mut calls = self.calls.lock();
        match calls.slots.remove(&id) {
            Some(Slot { outcome: None, .. }) => Forgot::Waiting,
            Some(Slot {
                outcome: Some(Ok(Reply::Pooled(buf))),
                ..
            }) => {
                keep_spare(&mut calls.spare, buf);
                Forgot::Finished
            }
            Some(_) | None => Forgot::Finished,
        }
    }

    /// Hands a reply's buffer back for the next reply.
    pub(crate) fn recycle(&self, reply: Reply) {
        if let Reply::Pooled(buf) = reply {
            keep_spare(&mut self.calls.lock().spare, buf);
        }
    }

    fn count_late(&self, header: &Header) {
        self.late_replies.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(correlation = %header.correlation_id, kind = ?header.kind, "late or unknown reply dropped");
    }

    /// Remembers (boundedly) that the link to `peer` broke.
    pub(crate) fn note_lost(&self, peer: InstanceId) {
        let mut lost = self.lost.lock();
        if !lost.contains(&peer) {
            if lost.len() == REMEMBERED_LOSSES {
                lost.pop_front();
            }
            lost.push_back(peer);
        }
        drop(lost);
        // Nobody listening is fine: cohorts subscribe when they need it.
        let _ = self.lost_notices.send(peer);
    }

    /// Notices of broken links, as `note_lost` records them (cohort liveness).
    pub(crate) fn subscribe_lost(&self) -> broadcast::Receiver<InstanceId> {
        self.lost_notices.subscribe()
    }

    /// Whether the link to `peer` broke recently (rather than never existing).
    pub(crate) fn was_lost(&self, peer: InstanceId) -> bool {
        self.lost.lock().contains(&peer)
    }

    /// Forgets a loss (the peer was connected again).
    pub(crate) fn forget_loss(&self, peer: InstanceId) {
        self.lost.lock().retain(|p| *p != peer);
    }

    /// Fails every call waiting on `peer`.
    pub(crate) fn fail_peer(&self, peer: InstanceId) -> usize {
        self.fail_where(|p| p == peer, || Error::PeerLost(peer))
    }

    /// Fails every call waiting on `peer`, which stopped answering.
    pub(crate) fn fail_unresponsive(&self, peer: InstanceId) -> usize {
        self.fail_where(|p| p == peer, || Error::PeerUnresponsive(peer))
    }

    /// Fails every outstanding call (shutdown).
    pub(crate) fn fail_all(&self, err: impl Fn() -> Error) -> usize {
        self.fail_where(|_| true, err)
    }

    fn fail_where(&self, pred: impl Fn(InstanceId) -> bool, err: impl Fn() -> Error) -> usize {
        let mut wakers = Vec::new();
        let mut calls = self.calls.lock();
        for slot in calls.slots.values_mut() {
            if slot.outcome.is_none() && pred(slot.peer) {
                slot.outcome = Some(Err(err()));
                wakers.push(slot.waker.take());
            }
        }
        drop(calls);
        let failed = wakers.len();
        wakers.into_iter().flatten().for_each(Waker::wake);
        failed
    }

    /// Sends a Cancel that did not fit a full link once there is room: a
    /// bounded number wait at once, each at most [`CANCEL_GRACE`]; the link
    /// failing ends the wait at once.
    pub(crate) fn cancel_later(&self, link: BoxedLink, header: Header) {
        let Ok(permit) = Arc::clone(&self.deferred_cancels).try_acquire_owned() else {
            tracing::debug!(id = %header.correlation_id, "too many deferred cancels: this one is dropped");
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let cancel = link.send(OutFrame::bytes(header, "", &[]));
            if let Ok(Err(err)) = tokio::time::timeout(CANCEL_GRACE, cancel).await {
                tracing::debug!(%err, "deferred cancel not delivered");
            }
            drop(permit);
        });
    }

    /// Calls awaiting a reply from `peer` (a scan: for statistics only).
    pub(crate) fn in_flight_to(&self, peer: InstanceId) -> usize {
        let calls = self.calls.lock();
        let waiting = calls.slots.values();
        waiting
            .filter(|s| s.peer == peer && s.outcome.is_none())
            .count()
    }

    /// Number of calls in flight (a scan: for statistics only).
    pub(crate) fn len(&self) -> usize {
        let calls = self.calls.lock();
        calls.slots.values().filter(|s| s.outcome.is_none()).count()
    }

    /// Replies that arrived for no waiting call.
    pub(crate) fn late_replies(&self) -> u64 {
        self.late_replies.load(Ordering::Relaxed)
    }
}

/// Keeps `cx`'s waker unless the stored one already wakes the same task
/// (a tokio waker's clone is a reference count, not an allocation).
fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

#[cfg(test)]
#[path = "pending_tests.rs"]
mod tests;
