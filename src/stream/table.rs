//! The caller's stream table: request id -> the queue its items land in.
//!
//! Kept apart from the pending-call table: items, ends and errors of
//! streams route here (from the transports' reply path, without a task or
//! a channel hop); everything else goes to the pending table. Each queue
//! holds at most one window of items: a producer that sends more than its
//! credit ends its stream with a protocol error instead of growing memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::runtime::pending::remote_error;
use crate::stream::buffers::Buffers;
use crate::wire::{Header, Kind, ProtocolError};

/// One stream being read.
pub(crate) struct Slot {
    pub(crate) peer: InstanceId,
    window: usize,
    buffers: Arc<Buffers>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    items: VecDeque<Bytes>,
    end: Option<Result<()>>,
    waker: Option<Waker>,
}

/// What the reader finds when it looks.
pub(crate) enum Next {
    Item(Bytes),
    End(Result<()>),
    Empty,
}

impl Slot {
    /// Takes the next item (or the end once every item was read), else
    /// registers `waker` to be woken by the next arrival.
    pub(crate) fn take(&self, waker: &Waker) -> Next {
        let mut state = self.state.lock();
        if let Some(item) = state.items.pop_front() {
            return Next::Item(item);
        }
        if let Some(end) = state.end.take() {
            return Next::End(end);
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
        Next::Empty
    }

    /// Items waiting to be read.
    pub(crate) fn buffered(&self) -> usize {
        self.state.lock().items.len()
    }

    fn push(&self, item: Bytes) -> bool {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return true;
        }
        if state.items.len() >= self.window {
            state.end = Some(Err(Error::Protocol(ProtocolError::Link(
                "the stream's producer sent more items than its credit".into(),
            ))));
            wake(state);
            return false;
        }
        state.items.push_back(item);
        wake(state);
        true
    }

    /// Ends the stream (the first end wins).
    pub(crate) fn finish(&self, end: Result<()>) {
        let mut state = self.state.lock();
        if state.end.is_none() {
            state.end = Some(end);
        }
        wake(state);
    }
}

fn wake(mut state: parking_lot::MutexGuard<'_, SlotState>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Streams this manager is reading, by request id.
#[derive(Default)]
pub(crate) struct StreamTable {
    slots: DashMap<MessageId, Arc<Slot>>,
    late_items: AtomicU64,
    overruns: AtomicU64,
}

impl StreamTable {
    /// Registers a stream before its request is sent.
    pub(crate) fn open(&self, id: MessageId, peer: InstanceId, window: u32) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            peer,
            window: window as usize,
            buffers: Buffers::new(window as usize),
            state: Mutex::new(SlotState::default()),
        });
        self.slots.insert(id, Arc::clone(&slot));
        slot
    }

    /// Removes a stream; true if it was still there.
    pub(crate) fn remove(&self, id: MessageId) -> bool {
        self.slots.remove(&id).is_some()
    }

    /// Whether this reply belongs to a stream (items and ends always do; an
    /// error does when its request was a stream's).
    pub(crate) fn routes(&self, header: &Header) -> bool {
        match header.kind {
            Kind::StreamItem | Kind::StreamEnd => true,
            Kind::Error => self.slots.contains_key(&header.correlation_id),
            _ => false,
        }
    }

    /// Delivers an item, end or error. `shared` is the whole frame when it
    /// is already shared memory mapped as `Bytes` (a large frame): the item
    /// then stays where it is, read in place.
    pub(crate) fn deliver(&self, header: &Header, payload: &[u8], shared: Option<&Bytes>) {
        let slot = self
            .slots
            .get(&header.correlation_id)
            .map(|s| Arc::clone(s.value()));
        let Some(slot) = slot else {
            self.late_items.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(id = %header.correlation_id, kind = ?header.kind, "frame for no open stream ignored");
            return;
        };
        match header.kind {
            Kind::StreamItem => {
                if !slot.push(keep(payload, shared, &slot.buffers)) {
                    self.overruns.fetch_add(1, Ordering::Relaxed);
                }
            }
            Kind::StreamEnd => slot.finish(Ok(())),
            _ => slot.finish(Err(remote_error(header.error_code, payload))),
        }
    }

    /// Ends every stream read from `peer` with the error `err` makes.
    pub(crate) fn fail_peer(&self, peer: InstanceId, err: impl Fn() -> Error) -> usize {
        self.fail_where(|slot| slot.peer == peer, err)
    }

    /// Ends every stream (shutdown).
    pub(crate) fn fail_all(&self, err: impl Fn() -> Error) -> usize {
        self.fail_where(|_| true, err)
    }

    fn fail_where(&self, pred: impl Fn(&Slot) -> bool, err: impl Fn() -> Error) -> usize {
        let hit: Vec<Arc<Slot>> = self
            .slots
            .iter()
            .filter(|s| pred(s.value()))
            .map(|s| Arc::clone(s.value()))
            .collect();
        for slot in &hit {
            slot.finish(Err(err()));
        }
        hit.len()
    }

    /// Streams open now.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Items, ends and errors that matched no open stream.
    pub(crate) fn late_items(&self) -> u64 {
        self.late_items.load(Ordering::Relaxed)
    }

    /// Streams ended because their producer ignored the credit.
    pub(crate) fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }
}

/// The item as the reader keeps it: a slice of the shared frame when there
/// is one, else one copy out of the ring into 16-byte aligned memory, a
/// recycled buffer of this stream (the ring slot is released at once, so a
/// slow reader never holds the ring).
fn keep(payload: &[u8], shared: Option<&Bytes>, buffers: &Arc<Buffers>) -> Bytes {
    if let Some(frame) = shared {
        let range = frame.as_ptr_range();
        let inner = payload.as_ptr_range();
        if range.start <= inner.start && inner.end <= range.end {
            return frame.slice_ref(payload);
        }
    }
    buffers.copy(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PAYLOAD_ALIGN;

    fn header(kind: Kind, correlation: u64) -> Header {
        let mut h = Header::new(kind, MessageId(99), InstanceId::new_random());
        h.correlation_id = MessageId(correlation);
        h
    }

    fn next(slot: &Slot) -> Next {
        slot.take(futures::task::noop_waker_ref())
    }

    #[test]
    fn frames_for_no_open_stream_are_counted_and_ignored() {
        let table = StreamTable::default();
        table.deliver(&header(Kind::StreamItem, 5), b"late", None);
        table.deliver(&header(Kind::StreamEnd, 5), b"", None);
        assert_eq!(table.late_items(), 2);
        assert!(
            !table.routes(&header(Kind::Error, 5)),
            "errors of calls go to the pending table"
        );
        assert!(table.routes(&header(Kind::StreamItem, 5)));
    }

    #[test]
    fn items_then_the_error_then_nothing() {
        let table = StreamTable::default();
        let slot = table.open(MessageId(7), InstanceId::new_random(), 4);
        table.deliver(&header(Kind::StreamItem, 7), b"a", None);
        let mut error = header(Kind::Error, 7);
        error.error_code = crate::wire::ErrorCode::Handler as u8;
        assert!(table.routes(&error));
        table.deliver(&error, b"boom", None);
        assert!(matches!(next(&slot), Next::Item(b) if &b[..] == b"a"));
        assert!(matches!(next(&slot), Next::End(Err(Error::Handler(t))) if t == "boom"));
        assert!(matches!(next(&slot), Next::Empty));
    }

    #[test]
    fn a_producer_past_its_credit_ends_the_stream_without_growing_the_queue() {
        let table = StreamTable::default();
        let slot = table.open(MessageId(7), InstanceId::new_random(), 2);
        for _ in 0..10 {
            table.deliver(&header(Kind::StreamItem, 7), b"x", None);
        }
        assert_eq!(slot.buffered(), 2);
        assert_eq!(table.overruns(), 1);
        assert!(matches!(next(&slot), Next::Item(_)));
        assert!(matches!(next(&slot), Next::Item(_)));
        assert!(matches!(next(&slot), Next::End(Err(Error::Protocol(_)))));
    }

    #[test]
    fn items_are_kept_aligned_and_shared_frames_are_not_copied() {
        let frame = Bytes::from(vec![7u8; 64]);
        let buffers = Buffers::new(1);
        let kept = keep(&frame[16..32], Some(&frame), &buffers);
        assert_eq!(kept.as_ptr(), frame[16..].as_ptr());
        let copied = keep(&[1, 2, 3], None, &buffers);
        assert!((copied.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN));
        assert_eq!(&copied[..], &[1, 2, 3]);
    }
}
