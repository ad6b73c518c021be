//! What an in-process link reuses from one frame to the next, so that
//! handing a frame over allocates nothing in steady state: an aligned buffer
//! the frame is encoded into, a second one for the archives of replies that
//! handlers run in place return, and the router whose arena keeps the bytes
//! of frames that outlive the hand-over (queued invocations, payloads of
//! async handlers).
//!
//! A link keeps a few of them in a bounded pool: a sender takes one for the
//! length of one hand-over and puts it back. Nothing is locked while the
//! frame is routed, so a handler run in place that sends on the same link
//! (or several threads sending at once) takes another one instead of waiting.

use parking_lot::Mutex;
use rkyv::util::AlignedVec;

use crate::codec::DoesNotFit;
use crate::runtime::router::Router;
use crate::wire::PAYLOAD_ALIGN;

/// Frames up to this size are encoded into the reused buffer; larger ones
/// are encoded into a vector of their own and shared as they are (a buffer
/// kept per link should not grow to the largest frame ever sent).
pub(super) const KEEP: usize = 64 * 1024;

/// First size of a buffer whose frame's size is unknown until it is
/// encoded (an archive).
const FIRST: usize = 4096;

/// Scratch sets a link keeps: one per sender at once, for a few at once.
const POOL: usize = 2;

/// An aligned buffer that grows once to the largest frame seen (up to a
/// bound) and is reused.
pub(super) type Buf = AlignedVec<PAYLOAD_ALIGN>;

/// One sender's reused state.
pub(super) struct Scratch {
    /// The frame being handed over.
    pub(super) out: Buf,
    /// The archive of a reply returned by a handler run in place.
    pub(super) reply: Buf,
    /// Routes the frame; its arena owns the bytes that outlive the hand-over.
    pub(super) router: Router,
}

impl Scratch {
    fn new() -> Self {
        Self {
            out: Buf::new(),
            reply: Buf::new(),
            router: Router::new(),
        }
    }
}

/// A link's scratch sets, bounded.
pub(super) struct Pool {
    free: Mutex<Vec<Scratch>>,
}

impl Pool {
    /// An empty pool with room for its sets (pushing never reallocates).
    pub(super) fn new() -> Self {
        Self {
            free: Mutex::new(Vec::with_capacity(POOL)),
        }
    }

    /// A set for one hand-over: a free one, or a new one when every set is
    /// in use (only while more senders than `POOL` hand over at once).
    pub(super) fn take(&self) -> Scratch {
        let free = self.free.lock().pop();
        free.unwrap_or_else(Scratch::new)
    }

    /// Gives a set back; one over the bound is dropped.
    pub(super) fn put(&self, scratch: Scratch) {
        let mut free = self.free.lock();
        if free.len() < POOL {
            free.push(scratch);
        }
    }
}

/// Fills the start of `buf` with `encode`, growing it (from `hint` bytes,
/// or `FIRST`, doubling) up to `max` bytes; the bytes written, or `None`
/// when they do not fit in `max`.
pub(super) fn fill(
    buf: &mut Buf,
    hint: Option<usize>,
    max: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, DoesNotFit>,
) -> Option<usize> {
    let mut room = hint.unwrap_or_else(|| buf.len().clamp(FIRST.min(max), max));
    if room > max {
        return None;
    }
    loop {
        if buf.len() < room {
            buf.resize(room, 0);
        }
        match encode(&mut buf[..room]) {
            Ok(len) => return Some(len),
            Err(DoesNotFit) if room >= max => return None,
            Err(DoesNotFit) => room = room.saturating_mul(2).min(max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, MessageId};
    use crate::transport::{OutFrame, PayloadRef};
    use crate::wire::{self, Header, Kind};

    fn frame(value: &Vec<u8>) -> OutFrame<'_> {
        let header = Header::new(Kind::OneWay, MessageId(9), InstanceId::new_random());
        OutFrame {
            header,
            name: "sink",
            payload: PayloadRef::Archive(value),
        }
    }

    #[test]
    fn archives_of_any_size_up_to_the_bound_encode_as_a_fresh_vector_does() {
        let mut buf = Buf::new();
        for len in [0usize, 64, 5000, 40_000, 3] {
            let value = vec![4u8; len];
            let f = frame(&value);
            let n = fill(&mut buf, None, KEEP, |dst| f.encode_into(dst)).expect("fits");
            assert_eq!(&buf[..n], &f.to_vec().unwrap()[..], "len {len}");
            assert_eq!(wire::decode(&buf[..n], KEEP).unwrap().name, "sink");
        }
    }

    #[test]
    fn a_frame_over_the_bound_does_not_fill() {
        let mut buf = Buf::new();
        let value = vec![4u8; 2 * KEEP];
        let f = frame(&value);
        assert_eq!(fill(&mut buf, None, KEEP, |dst| f.encode_into(dst)), None);
        assert_eq!(fill(&mut buf, Some(KEEP + 1), KEEP, |_| Ok(0)), None);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        let pool = Pool::new();
        let sets: Vec<_> = (0..POOL + 2).map(|_| pool.take()).collect();
        for set in sets {
            pool.put(set);
        }
        assert_eq!(pool.free.lock().len(), POOL);
    }
}
