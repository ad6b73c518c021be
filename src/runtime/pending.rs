//! The in-flight table: message id -> the caller waiting for its reply.
//!
//! One entry per outstanding `Confirm` or `Request`. Replies complete it,
//! peer loss fails every entry of that peer at once, and a guard removes the
//! entry (and tells the peer) when the caller stops waiting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, broadcast, oneshot};

use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::stats::Counters;
use crate::transport::{BoxedLink, OutFrame};
use crate::wire::{ErrorCode, Header, Kind};

/// Receiver of the final outcome (ack, response or error).
pub(crate) type DoneRx = oneshot::Receiver<Result<Bytes>>;
/// Receiver of the receipt (handler found and admitted).
pub(crate) type ReceiptRx = oneshot::Receiver<Result<()>>;

struct Entry {
    peer: InstanceId,
    receipt: Option<oneshot::Sender<Result<()>>>,
    done: oneshot::Sender<Result<Bytes>>,
}

/// Cancels waiting for room on a full link, at most.
const DEFERRED_CANCELS: usize = 1024;
/// How long a deferred Cancel waits for room before it is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// Lost peers remembered, so later calls to them say `PeerLost`.
const REMEMBERED_LOSSES: usize = 1024;
/// Loss notices buffered per listener (a slow one sees `Lagged` and rechecks).
const LOSS_NOTICES: usize = 1024;

/// Outstanding calls of one manager.
pub(crate) struct PendingTable {
    entries: DashMap<MessageId, Entry>,
    late_replies: AtomicU64,
    deferred_cancels: Arc<Semaphore>,
    lost: Mutex<VecDeque<InstanceId>>,
    lost_notices: broadcast::Sender<InstanceId>,
}

impl Default for PendingTable {
    fn default() -> Self {
        Self {
            entries: DashMap::new(),
            late_replies: AtomicU64::new(0),
            deferred_cancels: Arc::new(Semaphore::new(DEFERRED_CANCELS)),
            lost: Mutex::new(VecDeque::new()),
            lost_notices: broadcast::channel(LOSS_NOTICES).0,
        }
    }
}

impl PendingTable {
    /// Registers a call before its frame is sent (so a fast reply finds it).
    pub(crate) fn register(
        &self,
        id: MessageId,
        peer: InstanceId,
        want_receipt: bool,
    ) -> (Option<ReceiptRx>, DoneRx) {
        let (done, done_rx) = oneshot::channel();
        let (receipt, receipt_rx) = if want_receipt {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.entries.insert(
            id,
            Entry {
                peer,
                receipt,
                done,
            },
        );
        (receipt_rx, done_rx)
    }

    /// Routes one reply frame to its waiter. Unknown ids (late replies after a
    /// timeout or cancel) are dropped and counted. A response whose frame is
    /// `shared` (a mapped large frame) keeps a slice of it instead of a copy.
    pub(crate) fn complete(&self, header: &Header, payload: &[u8], shared: Option<&Bytes>) {
        let id = header.correlation_id;
        if header.kind == Kind::Receipt {
            let receipt = self.entries.get_mut(&id).and_then(|mut e| e.receipt.take());
            match receipt {
                Some(tx) => {
                    let _ = tx.send(Ok(()));
                }
                None => self.count_late(header),
            }
            return;
        }
        let Some((_, entry)) = self.entries.remove(&id) else {
            self.count_late(header);
            return;
        };
        let outcome = match header.kind {
            Kind::Response => Ok(match shared {
                // `slice_ref` needs the payload inside the frame's memory.
                Some(frame) if within(frame, payload) => frame.slice_ref(payload),
                Some(_) => Bytes::copy_from_slice(payload),
                None => Bytes::copy_from_slice(payload),
            }),
            Kind::Ack => Ok(Bytes::new()),
            _ => Err(remote_error(header.error_code, payload)),
        };
        match (entry.receipt, outcome) {
            // The call failed before it was admitted: the receipt waiter hears it.
            (Some(receipt), Err(err)) => {
                let _ = receipt.send(Err(err));
            }
            (_, outcome) => {
                let _ = entry.done.send(outcome);
            }
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
        self.fail_where(|e| e.peer == peer, || Error::PeerLost(peer))
    }

    /// Fails every call waiting on `peer`, which stopped answering.
    pub(crate) fn fail_unresponsive(&self, peer: InstanceId) -> usize {
        self.fail_where(|e| e.peer == peer, || Error::PeerUnresponsive(peer))
    }

    /// Fails every outstanding call (shutdown).
    pub(crate) fn fail_all(&self, err: impl Fn() -> Error) -> usize {
        self.fail_where(|_| true, err)
    }

    fn fail_where(&self, pred: impl Fn(&Entry) -> bool, err: impl Fn() -> Error) -> usize {
        let ids: Vec<MessageId> = self
            .entries
            .iter()
            .filter(|e| pred(e.value()))
            .map(|e| *e.key())
            .collect();
        let mut failed = 0;
        for id in ids {
            if let Some((_, entry)) = self.entries.remove(&id) {
                failed += 1;
                match entry.receipt {
                    Some(receipt) => {
                        let _ = receipt.send(Err(err()));
                    }
                    None => {
                        let _ = entry.done.send(Err(err()));
                    }
                }
            }
        }
        failed
    }

    /// Sends a Cancel that did not fit a full link once there is room: a
    /// bounded number wait at once, each at most [`CANCEL_GRACE`]; the link
    /// failing ends the wait at once.
    fn cancel_later(&self, link: BoxedLink, header: Header) {
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

    /// Removes an entry; true if it was still there.
    pub(crate) fn remove(&self, id: MessageId) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// Calls awaiting a reply from `peer` (a scan: for statistics only).
    pub(crate) fn in_flight_to(&self, peer: InstanceId) -> usize {
        self.entries.iter().filter(|e| e.peer == peer).count()
    }

    /// Number of calls in flight.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Replies that arrived for no waiting call.
    pub(crate) fn late_replies(&self) -> u64 {
        self.late_replies.load(Ordering::Relaxed)
    }
}

/// Turns an `Error` frame into the caller's error.
pub(crate) fn remote_error(code: u8, payload: &[u8]) -> Error {
    let text = String::from_utf8_lossy(payload).into_owned();
    match ErrorCode::from_u8(code) {
        ErrorCode::NoSuchHandler => Error::NoSuchHandler(text),
        ErrorCode::Handler | ErrorCode::Internal => Error::Handler(text),
        ErrorCode::Refused | ErrorCode::TooLarge => Error::Refused(text),
        ErrorCode::ShuttingDown => Error::ShuttingDown,
        ErrorCode::Codec => Error::Codec(text),
    }
}

/// Removes a call from the table when its waiter goes away, and tells the
/// peer so a running handler can stop.
pub(crate) struct PendingGuard {
    pub(crate) table: Arc<PendingTable>,
    pub(crate) id: MessageId,
    pub(crate) link: BoxedLink,
    pub(crate) local: InstanceId,
    pub(crate) cancel_id: MessageId,
    pub(crate) counters: Arc<Counters>,
}

impl PendingGuard {
    /// Forgets the entry (it was completed); nothing is sent. The guard is
    /// then dropped normally, releasing its link handle.
    pub(crate) fn disarm(self) {
        self.table.remove(self.id);
    }

    /// The caller's budget ran out: counts it; dropping the guard then
    /// cancels the call on the peer.
    pub(crate) fn timed_out(self) {
        Counters::bump(&self.counters.timeouts);
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if !self.table.remove(self.id) {
            return;
        }
        let mut header = Header::new(Kind::Cancel, self.cancel_id, self.local);
        header.correlation_id = self.id;
        match self.link.try_send(OutFrame::bytes(header, "", &[])) {
            Ok(()) => {}
            // A full link (a slow or stopped peer) still gets its Cancel,
            // once there is room.
            Err(Error::Full) => self.table.cancel_later(Arc::clone(&self.link), header),
            // A broken link runs nothing any more.
            Err(_) => {}
        }
    }
}

/// Whether `part` lies inside `whole`'s memory.
fn within(whole: &Bytes, part: &[u8]) -> bool {
    let range = whole.as_ptr_range();
    let inner = part.as_ptr_range();
    part.is_empty() || (range.start <= inner.start && inner.end <= range.end)
}
