//! A committed record at the consumer's head: read in place or copied out,
//! then released.

use super::{Consumer, Rec};
use crate::layout::RECORD_HEADER_SIZE;

/// A committed record at the consumer's head. Read it, then
/// [`release`](ReadGrant::release) it; dropping it without releasing keeps the record
/// for the next read.
pub struct ReadGrant<'a> {
    pub(super) consumer: &'a mut Consumer,
    pub(super) rec: Rec,
}

impl std::fmt::Debug for ReadGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGrant")
            .field("pos", &self.rec.pos)
            .field("len", &self.rec.len)
            .field("flags", &self.rec.flags)
            .finish()
    }
}

impl ReadGrant<'_> {
    #[inline]
    fn payload_ptr(&self) -> *const u8 {
        let pos = self.rec.pos.wrapping_add(RECORD_HEADER_SIZE as u64);
        self.consumer.core.data_ptr(pos)
    }

    /// Payload length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.rec.len
    }

    /// True for a zero-length record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }

    /// The user flags set by the producer.
    #[inline]
    pub fn flags(&self) -> u16 {
        self.rec.flags
    }

    /// The payload in place: 16-byte aligned, bounds-checked, zero-copy.
    ///
    /// **Trust contract.** These bytes live in shared memory. A peer that follows the
    /// protocol never writes them while this grant is alive, and the slice is then an
    /// ordinary immutable view. A hostile or broken peer *can* still write them: the
    /// content may then change under the slice (so validating it in place, e.g. with
    /// rkyv, is a check-then-use race). Use this view only with peers you trust as much
    /// as your own process (same uid: they could already ptrace you); otherwise copy out
    /// with [`copy_to_slice`](Self::copy_to_slice) / [`to_vec`](Self::to_vec) and
    /// validate the copy. The length and position are always safe: they were validated
    /// from a private copy of the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        // SAFETY: `validate` proved `[pos + 16, pos + 16 + len)` lies inside the data area
        // and below the published tail; the bytes are initialised (regions start zeroed);
        // the producer does not write them before we release (trust contract above).
        unsafe { std::slice::from_raw_parts(self.payload_ptr(), self.rec.len) }
    }

    /// Copies the payload into `dst` without forming a reference to shared memory.
    ///
    /// # Panics
    /// If `dst.len() != self.len()` (a caller bug).
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.rec.len, "copy_to_slice length mismatch");
        // SAFETY: source validated in bounds as in `payload`; `dst` is private memory of
        // the same length, so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.payload_ptr(), dst.as_mut_ptr(), dst.len()) }
    }

    /// Copies the payload into a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.rec.len];
        self.copy_to_slice(&mut v);
        v
    }

    /// Frees the record for the producer.
    #[inline]
    pub fn release(self) {
        let ReadGrant { consumer, rec } = self;
        consumer.release_rec(rec);
    }
}
