//! The caller's handle on a streamed response.

use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use tokio::time::{Instant, Sleep};

use crate::client::NetworkClient;
use crate::codec::{AlignedVec, Decode};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::stats::Counters;
use crate::stream::table::{Next, Slot};
use crate::transport::{BoxedLink, OutFrame};
use crate::wire::{Header, Kind, PAYLOAD_ALIGN};

/// How long a Cancel that found the link full waits for room.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// The untyped reading side shared by [`ResponseStream`] and [`BytesStream`].
pub(crate) struct StreamCore {
    id: MessageId,
    slot: Arc<Slot>,
    client: Arc<NetworkClient>,
    link: BoxedLink,
    window: u32,
    /// Items read since credit was last granted.
    unacked: u32,
    idle: Duration,
    /// Armed when the reader starts waiting on an empty queue: the timeout
    /// counts how long the reader waited for an item, not how long it took
    /// between reads.
    sleep: Pin<Box<Sleep>>,
    waiting: bool,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Cancelled by the caller: one `Err(Cancelled)`, then the end.
    Cancelled,
    Finished,
}

impl StreamCore {
    pub(crate) fn new(
        id: MessageId,
        slot: Arc<Slot>,
        client: Arc<NetworkClient>,
        link: BoxedLink,
        window: u32,
        idle: Duration,
    ) -> Self {
        Self {
            id,
            slot,
            client,
            link,
            window,
            unacked: 0,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            waiting: true,
            state: State::Open,
        }
    }

    fn poll_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        match self.state {
            State::Finished => return Poll::Ready(None),
            State::Cancelled => {
                self.state = State::Finished;
                return Poll::Ready(Some(Err(Error::Cancelled)));
            }
            State::Open => {}
        }
        match self.slot.take(cx.waker()) {
            Next::Item(item) => {
                self.consumed();
                self.waiting = false;
                Poll::Ready(Some(Ok(item)))
            }
            Next::End(end) => {
                self.state = State::Finished;
                self.client.streams.calls.remove(self.id);
                Poll::Ready(end.err().map(Err))
            }
            Next::Empty if !self.waiting => {
                self.waiting = true;
                self.sleep.as_mut().reset(Instant::now() + self.idle);
                self.poll_bytes(cx)
            }
            Next::Empty => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    // The peer was alive and silent for the whole budget.
                    self.state = State::Finished;
                    Counters::bump(&self.client.counters.timeouts);
                    self.cancel_remote();
                    Poll::Ready(Some(Err(Error::Timeout(self.idle))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// Grants the producer more credit once half a window was read (so a
    /// producer keeps going while the reader catches up, with one credit
    /// frame per half window).
    fn consumed(&mut self) {
        self.unacked += 1;
        if self.unacked < self.window.div_ceil(2) {
            return;
        }
        let count = std::mem::take(&mut self.unacked);
        self.send_control(Kind::Credit, &count.to_le_bytes());
    }

    /// Sends a control frame for this stream; a full link gets it once
    /// there is room (credit must never be lost: the producer would wait
    /// for it forever).
    fn send_control(&self, kind: Kind, payload: &[u8]) {
        let mut header = Header::new(kind, self.client.next_id(), self.client.instance_id);
        header.correlation_id = self.id;
        match self.link.try_send(OutFrame::bytes(header, "", payload)) {
            Err(Error::Full) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let link = Arc::clone(&self.link);
                let payload = payload.to_vec();
                runtime.spawn(async move {
                    let send = link.send(OutFrame::bytes(header, "", &payload));
                    if let Ok(Err(err)) = tokio::time::timeout(CANCEL_GRACE, send).await {
                        tracing::debug!(%err, ?kind, "deferred stream control frame not delivered");
                    }
                });
            }
            Err(err) => tracing::debug!(%err, ?kind, "stream control frame not delivered"),
            Ok(()) => {}
        }
    }

    /// Removes the stream and tells the producer to stop, if still open.
    fn cancel_remote(&self) {
        if self.client.streams.calls.remove(self.id) {
            self.send_control(Kind::Cancel, &[]);
        }
    }

    fn cancel(&mut self) {
        if self.state == State::Open {
            self.cancel_remote();
            self.state = State::Cancelled;
        }
    }
}

impl Drop for StreamCore {
    fn drop(&mut self) {
        self.cancel_remote();
    }
}

/// A streamed response: items of type `T` as a [`futures::Stream`].
///
/// Outcomes: `Some(Ok(item))` per item in order; `None` after the handler's
/// normal end; `Some(Err(..))` then `None` when the stream fails:
/// [`Error::Handler`] (the handler's error, after the items it sent before
/// it), [`Error::PeerLost`], [`Error::Timeout`] (no item for the call's
/// timeout), [`Error::Cancelled`] (after [`cancel`](Self::cancel)).
/// Dropping the stream cancels the handler and frees both sides.
pub struct ResponseStream<T> {
    core: StreamCore,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ResponseStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("id", &self.core.id)
            .field("peer", &self.core.slot.peer)
            .finish_non_exhaustive()
    }
}

impl<T> ResponseStream<T> {
    pub(crate) fn new(core: StreamCore) -> Self {
        Self {
            core,
            _item: PhantomData,
        }
    }

    /// The request's id.
    pub fn id(&self) -> MessageId {
        self.core.id
    }

    /// The peer producing the stream.
    pub fn peer(&self) -> InstanceId {
        self.core.slot.peer
    }

    /// Items received and not yet read (never more than the window).
    pub fn queued(&self) -> usize {
        self.core.slot.buffered()
    }

    /// Stops the stream: the handler's cancellation token fires, and the
    /// next read yields [`Error::Cancelled`], then the end.
    pub fn cancel(&mut self) {
        self.core.cancel();
    }

    /// The next item's bytes, undecoded (a raw stream's items).
    pub async fn next_bytes(&mut self) -> Option<Result<Bytes>> {
        std::future::poll_fn(|cx| self.core.poll_bytes(cx)).await
    }

    /// The stream as raw byte items.
    pub fn into_bytes(self) -> BytesStream {
        BytesStream { core: self.core }
    }

    /// The next item validated and read in place, without deserializing it
    /// (large items stay in the shared-memory area they arrived in).
    pub async fn next_archived(&mut self) -> Option<Result<ArchivedItem<T>>>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        let item = self.next_bytes().await?;
        Some(item.and_then(ArchivedItem::new))
    }
}

impl<T: Decode> Stream for ResponseStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.core
            .poll_bytes(cx)
            .map(|item| item.map(|bytes| bytes.and_then(|b| T::decode(&b))))
    }
}

/// A streamed response of raw byte items (see [`ResponseStream`]).
pub struct BytesStream {
    core: StreamCore,
}

impl std::fmt::Debug for BytesStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesStream")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

impl BytesStream {
    /// Stops the stream (see [`ResponseStream::cancel`]).
    pub fn cancel(&mut self) {
        self.core.cancel();
    }
}

impl Stream for BytesStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.core.poll_bytes(cx)
    }
}

/// One item of a stream, validated and read in place as `T`'s archived form.
pub struct ArchivedItem<T: rkyv::Archive> {
    bytes: Bytes,
    _item: PhantomData<fn() -> T>,
}

impl<T> ArchivedItem<T>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    fn new(bytes: Bytes) -> Result<Self> {
        let bytes = if (bytes.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) {
            bytes
        } else {
            let mut copy = AlignedVec::<PAYLOAD_ALIGN>::with_capacity(bytes.len());
            copy.extend_from_slice(&bytes);
            Bytes::from_owner(copy)
        };
        rkyv::access::<T::Archived, rancor::Error>(&bytes).map_err(Error::codec)?;
        Ok(Self {
            bytes,
            _item: PhantomData,
        })
    }

    /// The item's bytes (its archive).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl<T: rkyv::Archive> Deref for ArchivedItem<T> {
    type Target = T::Archived;

    fn deref(&self) -> &T::Archived {
        // SAFETY: `new` validated these exact bytes as a `T::Archived` at
        // this (16-byte aligned) address, and `Bytes` never changes them.
        unsafe { rkyv::access_unchecked::<T::Archived>(&self.bytes) }
    }
}

impl<T: rkyv::Archive> std::fmt::Debug for ArchivedItem<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchivedItem({} bytes)", self.bytes.len())
    }
}
