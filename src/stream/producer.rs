//! The producing side: per running stream, the credit its reader granted,
//! and the sender a handler pushes items through.
//!
//! Credit is a [`tokio::sync::Semaphore`] per stream: the initial window is
//! its first permits, each `Credit` frame adds permits, each item sent
//! consumes one. A producer without credit waits in `send`, holding only
//! the item it is sending: nothing is buffered on this side.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::client::NetworkClient;
use crate::codec::Payload;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::stream::{MAX_PRODUCERS, MAX_WINDOW};
use crate::transport::{BoxedLink, OutFrame, PayloadRef};
use crate::wire::{Header, Kind, flags};

/// A stream being produced: its credit, its cancellation, its link.
pub(crate) struct Flow {
    credit: Semaphore,
    pub(crate) cancel: CancellationToken,
    link: BoxedLink,
}

/// The streams this manager's handlers are producing, by (caller, request id).
pub(crate) struct Producers {
    flows: DashMap<(InstanceId, MessageId), Arc<Flow>>,
    /// Bounds the streams served at once.
    pub(crate) slots: Arc<Semaphore>,
    late_credits: AtomicU64,
}

impl Default for Producers {
    fn default() -> Self {
        Self {
            flows: DashMap::new(),
            slots: Arc::new(Semaphore::new(MAX_PRODUCERS)),
            late_credits: AtomicU64::new(0),
        }
    }
}

impl Producers {
    /// Registers a stream with its initial window.
    pub(crate) fn open(
        &self,
        key: (InstanceId, MessageId),
        window: u32,
        cancel: CancellationToken,
        link: BoxedLink,
    ) -> Arc<Flow> {
        let flow = Arc::new(Flow {
            credit: Semaphore::new(window as usize),
            cancel,
            link,
        });
        self.flows.insert(key, Arc::clone(&flow));
        flow
    }

    /// Forgets a finished stream.
    pub(crate) fn close(&self, key: &(InstanceId, MessageId)) {
        self.flows.remove(key);
    }

    /// A `Credit` frame: adds its count to the stream's credit, never past
    /// [`MAX_WINDOW`]. Unknown streams (already ended) and malformed
    /// payloads are ignored and counted.
    pub(crate) fn grant(&self, header: &Header, payload: &[u8]) {
        let key = (header.sender, header.correlation_id);
        let count = <[u8; 4]>::try_from(payload).map(u32::from_le_bytes);
        let flow = self.flows.get(&key).map(|f| Arc::clone(f.value()));
        match (flow, count) {
            (Some(flow), Ok(count)) => {
                // Only this link's reader grants credit to this stream, and
                // sends only take permits away: the sum stays capped.
                let room = (MAX_WINDOW as usize).saturating_sub(flow.credit.available_permits());
                flow.credit.add_permits((count as usize).min(room));
            }
            _ => {
                self.late_credits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(id = %header.correlation_id, "credit for no running stream ignored");
            }
        }
    }

    /// The caller's link is gone: its streams stop (their handlers see
    /// their tokens fire), so none waits for credit that cannot come.
    pub(crate) fn cancel_lost(&self, peer: InstanceId) {
        for flow in self.flows.iter() {
            if flow.key().0 == peer && flow.link.is_closed() {
                flow.cancel.cancel();
            }
        }
    }

    /// Streams being produced now.
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Credit frames that matched no running stream.
    pub(crate) fn late_credits(&self) -> u64 {
        self.late_credits.load(Ordering::Relaxed)
    }
}

/// Where a streaming handler sends its items (raw bytes or any
/// [`Payload`]); [`StreamSender`] is its typed form. Cheap to clone.
///
/// [`send_bytes`](Self::send_bytes) and [`send_value`](Self::send_value)
/// wait while the reader has granted no credit, and fail with
/// [`Error::Cancelled`] once the caller went away (dropped its stream, or its
/// link broke): further items are discarded, never buffered.
#[derive(Clone)]
pub struct ItemSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    flow: Arc<Flow>,
    correlation: MessageId,
    client: Arc<NetworkClient>,
    sent: AtomicU64,
    discarded: AtomicU64,
    waiting: AtomicBool,
}

impl std::fmt::Debug for ItemSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemSink")
            .field("stream", &self.inner.correlation)
            .field("sent", &self.sent())
            .finish_non_exhaustive()
    }
}

impl ItemSink {
    pub(crate) fn new(flow: Arc<Flow>, correlation: MessageId, client: Arc<NetworkClient>) -> Self {
        Self {
            inner: Arc::new(SinkInner {
                flow,
                correlation,
                client,
                sent: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
                waiting: AtomicBool::new(false),
            }),
        }
    }

    /// Sends one item of raw bytes.
    pub async fn send_bytes(&self, item: &[u8]) -> Result<()> {
        self.send(PayloadRef::Bytes(item), flags::RAW).await
    }

    /// Sends one item archived straight into the link's buffer (a
    /// shared-memory ring slot).
    pub async fn send_value(&self, item: &dyn Payload) -> Result<()> {
        self.send(PayloadRef::Archive(item), 0).await
    }

    async fn send(&self, payload: PayloadRef<'_>, flag: u16) -> Result<()> {
        let inner = &*self.inner;
        let flow = &*inner.flow;
        let credit = match flow.credit.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                // Relaxed: an observation for tests and stats only.
                inner.waiting.store(true, Ordering::Relaxed);
                let permit = tokio::select! {
                    biased;
                    () = flow.cancel.cancelled() => None,
                    permit = flow.credit.acquire() => permit.ok(),
                };
                inner.waiting.store(false, Ordering::Relaxed);
                match permit {
                    Some(permit) => permit,
                    None => return Err(self.discard()),
                }
            }
        };
        if flow.cancel.is_cancelled() {
            return Err(self.discard());
        }
        credit.forget();
        let client = &inner.client;
        let mut header = Header::new(Kind::StreamItem, client.next_id(), client.instance_id);
        header.correlation_id = inner.correlation;
        header.flags = flag;
        let frame = OutFrame {
            header,
            name: "",
            payload,
        };
        let sent = tokio::select! {
            biased;
            () = flow.cancel.cancelled() => return Err(self.discard()),
            sent = flow.link.send(frame) => sent,
        };
        if let Err(err) = sent {
            // The link is gone or refused the item: nothing more can follow.
            flow.cancel.cancel();
            return Err(err);
        }
        inner.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn discard(&self) -> Error {
        self.inner.discarded.fetch_add(1, Ordering::Relaxed);
        Error::Cancelled
    }

    /// Items sent so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Items refused after the caller went away.
    pub fn discarded(&self) -> u64 {
        self.inner.discarded.load(Ordering::Relaxed)
    }

    /// Whether a send is waiting for the reader's credit right now.
    pub fn is_waiting_for_credit(&self) -> bool {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Credit left: items that can be sent before the reader grants more.
    pub fn credit(&self) -> usize {
        self.inner.flow.credit.available_permits()
    }

    /// Whether the caller went away (or the manager is shutting down).
    pub fn is_cancelled(&self) -> bool {
        self.inner.flow.cancel.is_cancelled()
    }

    /// Completes when the caller goes away (or the manager shuts down).
    pub async fn cancelled(&self) {
        self.inner.flow.cancel.cancelled().await;
    }
}

/// The typed sender a streaming handler gets: items of type `T`, archived
/// straight into the link's buffer.
pub struct StreamSender<T> {
    sink: ItemSink,
    _item: PhantomData<fn(T)>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for StreamSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sink.fmt(f)
    }
}

impl<T: Payload> StreamSender<T> {
    pub(crate) fn new(sink: ItemSink) -> Self {
        Self {
            sink,
            _item: PhantomData,
        }
    }

    /// Sends one item; waits for credit; fails with [`Error::Cancelled`]
    /// once the caller went away.
    pub async fn send(&self, item: &T) -> Result<()> {
        self.sink.send_value(item).await
    }

    /// The untyped sink underneath (counters, cancellation).
    pub fn sink(&self) -> &ItemSink {
        &self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{BoxFuture, PeerLink, TransportKind};

    /// A link that takes every frame (credit never touches it).
    struct NullLink(InstanceId);

    impl PeerLink for NullLink {
        fn peer(&self) -> InstanceId {
            self.0
        }
        fn kind(&self) -> TransportKind {
            TransportKind::Local
        }
        fn send<'a>(&'a self, _frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn try_send(&self, _frame: OutFrame<'_>) -> Result<()> {
            Ok(())
        }
        fn is_closed(&self) -> bool {
            false
        }
        fn close(&self) {}
    }

    fn credit(producers: &Producers, key: (InstanceId, MessageId), payload: &[u8]) {
        let mut h = Header::new(Kind::Credit, MessageId(50), key.0);
        h.correlation_id = key.1;
        producers.grant(&h, payload);
    }

    #[test]
    fn credit_adds_up_to_the_cap_and_bad_or_late_credit_is_counted() {
        let link: BoxedLink = Arc::new(NullLink(InstanceId::new_random()));
        let producers = Producers::default();
        let key = (link.peer(), MessageId(9));
        let flow = producers.open(key, 4, CancellationToken::new(), link);
        credit(&producers, key, &3u32.to_le_bytes());
        assert_eq!(flow.credit.available_permits(), 7);
        credit(&producers, key, &u32::MAX.to_le_bytes());
        assert_eq!(flow.credit.available_permits(), MAX_WINDOW as usize);
        credit(&producers, key, b"bad");
        credit(&producers, (key.0, MessageId(10)), &1u32.to_le_bytes());
        assert_eq!(producers.late_credits(), 2);
        producers.close(&key);
        credit(&producers, key, &1u32.to_le_bytes());
        assert_eq!(producers.late_credits(), 3);
        assert_eq!(producers.len(), 0);
    }
}
