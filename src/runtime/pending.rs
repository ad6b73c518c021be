//! The in-flight table: message id -> the caller waiting for its reply.
//!
//! One entry per outstanding `Confirm` or `Request`. Replies complete it,
//! peer loss fails every entry of that peer at once, and a guard removes the
//! entry (and tells the peer) when the caller stops waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
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

/// Outstanding calls of one manager.
#[derive(Default)]
pub struct PendingTable {
    entries: DashMap<MessageId, Entry>,
    late_replies: AtomicU64,
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
    /// timeout or cancel) are dropped and counted.
    pub(crate) fn complete(&self, header: &Header, payload: &[u8]) {
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
            Kind::Response => Ok(Bytes::copy_from_slice(payload)),
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

    /// Fails every call waiting on `peer`.
    pub(crate) fn fail_peer(&self, peer: InstanceId) -> usize {
        self.fail_where(|e| e.peer == peer, || Error::PeerLost(peer))
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

    /// Removes an entry; true if it was still there.
    pub(crate) fn remove(&self, id: MessageId) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// Number of calls in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Replies that arrived for no waiting call.
    pub fn late_replies(&self) -> u64 {
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
}

impl PendingGuard {
    /// Forgets the entry (it was completed); nothing is sent.
    pub(crate) fn disarm(self) {
        self.table.remove(self.id);
        std::mem::forget(self);
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.table.remove(self.id) {
            let mut header = Header::new(Kind::Cancel, self.cancel_id, self.local);
            header.correlation_id = self.id;
            // Best effort: a full or broken link just means the handler runs on.
            let _ = self.link.try_send(OutFrame::bytes(header, "", &[]));
        }
    }
}
