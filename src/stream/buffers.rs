//! Recycled item buffers of one stream.
//!
//! An item that arrives in a ring slot is copied once into aligned memory
//! (the slot is released at once). Allocating that memory per item costs
//! more than the copy for large items: glibc hands freed 64 KiB blocks back
//! to the kernel and faults fresh pages in for the next one (measured in
//! `docs/performance.md`). So each stream keeps the buffers of items its
//! reader dropped, at most one window of them, and reuses them.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::codec::AlignedVec;
use crate::wire::PAYLOAD_ALIGN;

/// Buffers larger than this are freed rather than kept (large items travel
/// through the shared pooled area and are not copied at all).
const KEEP_AT_MOST: usize = 1 << 20;

/// A stream's free buffers.
pub(crate) struct Buffers {
    free: Mutex<Vec<AlignedVec<PAYLOAD_ALIGN>>>,
    cap: usize,
}

impl Buffers {
    /// A pool keeping at most `cap` free buffers.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            cap,
        })
    }

    /// `payload` copied into a recycled (or new) aligned buffer.
    pub(crate) fn copy(self: &Arc<Self>, payload: &[u8]) -> Bytes {
        let mut buf = self.free.lock().pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        Bytes::from_owner(Recycled {
            buf,
            home: Arc::clone(self),
        })
    }

    /// Free buffers kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().len()
    }
}

/// An item's memory: goes back to its stream's pool when the item is dropped.
struct Recycled {
    buf: AlignedVec<PAYLOAD_ALIGN>,
    home: Arc<Buffers>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if self.buf.capacity() > KEEP_AT_MOST {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let mut free = self.home.free.lock();
        if free.len() < self.home.cap {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_items_give_their_buffers_back_up_to_the_cap() {
        let pool = Buffers::new(2);
        let items: Vec<Bytes> = (0..3u8).map(|i| pool.copy(&[i; 100])).collect();
        for (i, item) in items.iter().enumerate() {
            assert_eq!(&item[..], &[i as u8; 100]);
            assert!((item.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN));
        }
        drop(items);
        assert_eq!(pool.kept(), 2);
        let again = pool.copy(&[9; 10]);
        assert_eq!(&again[..], &[9; 10]);
        assert_eq!(pool.kept(), 1, "a kept buffer was reused");
        // The big item takes the kept buffer and grows it past the limit:
        // dropped, it is freed rather than kept.
        let big = pool.copy(&vec![1u8; KEEP_AT_MOST + 1]);
        assert_eq!(pool.kept(), 0);
        drop(big);
        assert_eq!(pool.kept(), 0, "a buffer over the limit is freed");
        drop(again);
        assert_eq!(pool.kept(), 1);
    }
}
