//! A reserved record on the producer's side: written in place, then
//! committed (or dropped, publishing nothing).

use std::ops::{Deref, DerefMut};

use super::{Producer, Slot};
use crate::layout::RECORD_HEADER_SIZE;

/// A reserved record: write the payload in place (`DerefMut<Target = [u8]>`), then
/// [`commit`](WriteGrant::commit). Dropping it without committing publishes nothing.
///
/// The payload starts 16-byte aligned. Its bytes live in shared memory: a peer that
/// breaks the protocol could write them concurrently (see the crate's trust model).
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    slot: Slot,
    len: usize,
    flags: u16,
}

impl std::fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGrant")
            .field("pos", &self.slot.pos)
            .field("len", &self.len)
            .field("flags", &self.flags)
            .finish()
    }
}

impl<'a> WriteGrant<'a> {
    #[inline]
    pub(super) fn new(producer: &'a mut Producer, slot: Slot, len: usize) -> Self {
        WriteGrant {
            producer,
            slot,
            len,
            flags: 0,
        }
    }

    /// Sets the record's user flags (opaque to the ring, delivered to the consumer).
    pub fn set_flags(&mut self, flags: u16) {
        self.flags = flags;
    }

    /// Shortens the record to `len` bytes (no-op if `len` is not shorter): for payloads
    /// whose final size is known only after writing them in place.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Publishes the record with its current length.
    #[inline]
    pub fn commit(self) {
        let WriteGrant {
            producer,
            slot,
            len,
            flags,
        } = self;
        producer.commit_slot(slot, len, flags);
    }

    /// Publishes the record with its first `len` payload bytes.
    ///
    /// # Panics
    /// If `len` exceeds the reserved length (a caller bug, never shared-memory contents).
    pub fn commit_len(mut self, len: usize) {
        assert!(
            len <= self.len,
            "commit_len({len}) beyond reserved {}",
            self.len
        );
        self.len = len;
        self.commit();
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let p = self
            .producer
            .core
            .data_ptr(self.slot.pos.wrapping_add(RECORD_HEADER_SIZE as u64));
        // SAFETY: the slot's payload bytes are in bounds (the record never crosses the
        // buffer end), initialised (regions start zeroed), and owned by the producer
        // until commit: the consumer does not touch them (trust model in the crate docs).
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self
            .producer
            .core
            .data_ptr(self.slot.pos.wrapping_add(RECORD_HEADER_SIZE as u64));
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }
}
