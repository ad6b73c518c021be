//! Record headers: encoding, decoding and the pure validation of what a consumer finds at
//! its head (the function a fuzzer would drive).
//!
//! ```text
//! word 0: len: u32 | kind: u16 | flags: u16      (little-endian packing into one u64)
//! word 1: pos: u64  the record's own free-running position (catches stale or torn data)
//! ```
//! A DATA record occupies [`record_footprint`]`(len)` bytes. A PAD record fills the data
//! area from its start to the end of the buffer exactly; its `len` is that extent minus
//! the header.

use crate::error::{Result, corrupt};
use crate::layout::{RECORD_ALIGN, RECORD_HEADER_SIZE, record_footprint};

/// Kind of a record carrying a payload.
pub(crate) const KIND_DATA: u16 = 1;
/// Kind of the filler record written at a wrap.
pub(crate) const KIND_PAD: u16 = 2;

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) len: u32,
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) pos: u64,
}

impl RecordHeader {
    /// The two words stored in the ring.
    #[inline]
    pub(crate) fn to_words(self) -> [u64; 2] {
        let w0 = self.len as u64 | (self.kind as u64) << 32 | (self.flags as u64) << 48;
        [w0, self.pos]
    }

    /// Decodes the two words read from the ring (any bit pattern decodes).
    #[inline]
    pub(crate) fn from_words(w: [u64; 2]) -> Self {
        RecordHeader {
            len: w[0] as u32,
            kind: (w[0] >> 32) as u16,
            flags: (w[0] >> 48) as u16,
            pos: w[1],
        }
    }
}

/// What a consumer found at its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// A PAD record: skip `skip` bytes (to the start of the buffer).
    Pad { skip: u64 },
    /// A DATA record with a `len`-byte payload.
    Data { len: usize, flags: u16 },
}

/// Validates the header found at position `head` given `avail = tail - head` committed
/// bytes (already checked `<= capacity`). Never panics, for any input.
#[inline]
pub(crate) fn validate(
    hdr: RecordHeader,
    head: u64,
    avail: u64,
    capacity: u64,
    max_record: u64,
) -> Result<Found> {
    debug_assert!(capacity.is_power_of_two() && avail <= capacity);
    debug_assert!(head.is_multiple_of(RECORD_ALIGN as u64));
    if hdr.pos != head {
        return corrupt("record.pos", hdr.pos);
    }
    let off = head & (capacity - 1);
    let rest = capacity - off; // >= 16: positions and capacity are 16-aligned
    match hdr.kind {
        KIND_PAD => {
            if off == 0 {
                return corrupt("pad at buffer start", hdr.len as u64);
            }
            if hdr.len as u64 != rest - RECORD_HEADER_SIZE as u64 {
                return corrupt("pad.len", hdr.len as u64);
            }
            if rest > avail {
                return corrupt("pad.len beyond tail", hdr.len as u64);
            }
            Ok(Found::Pad { skip: rest })
        }
        KIND_DATA => {
            let len = hdr.len as u64;
            if len > max_record {
                return corrupt("record.len", len);
            }
            let footprint = record_footprint(len as usize) as u64;
            if footprint > rest {
                return corrupt("record.len crosses buffer end", len);
            }
            if footprint > avail {
                return corrupt("record.len beyond tail", len);
            }
            Ok(Found::Data {
                len: len as usize,
                flags: hdr.flags,
            })
        }
        kind => corrupt("record.kind", kind as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, kind: u16, pos: u64) -> RecordHeader {
        RecordHeader {
            len,
            kind,
            flags: 7,
            pos,
        }
    }

    #[test]
    fn words_round_trip() {
        let h = hdr(0xdead_beef, KIND_PAD, u64::MAX - 3);
        assert_eq!(RecordHeader::from_words(h.to_words()), h);
    }

    #[test]
    fn accepts_good_records() {
        let f = validate(hdr(20, KIND_DATA, 256), 256, 48, 512, 240).unwrap();
        assert_eq!(f, Found::Data { len: 20, flags: 7 });
        let p = validate(hdr(512 - 480 - 16, KIND_PAD, 480), 480, 64, 512, 240).unwrap();
        assert_eq!(p, Found::Pad { skip: 32 });
    }

    #[test]
    fn rejects_hostile_records() {
        let v = |h, head, avail| validate(h, head, avail, 512, 240).is_err();
        assert!(v(hdr(20, KIND_DATA, 0), 16, 64)); // wrong pos
        assert!(v(hdr(241, KIND_DATA, 0), 0, 512)); // over max
        assert!(v(hdr(u32::MAX, KIND_DATA, 0), 0, 512)); // huge
        assert!(v(hdr(100, KIND_DATA, 0), 0, 64)); // beyond tail
        assert!(v(hdr(64, KIND_DATA, 448), 448, 512)); // crosses end
        assert!(v(hdr(15, KIND_PAD, 480), 480, 64)); // short pad
        assert!(v(hdr(16, KIND_PAD, 480), 480, 16)); // pad beyond tail
        assert!(v(hdr(1, 0, 0), 0, 64)); // unknown kinds
        assert!(v(hdr(1, 3, 0), 0, 64));
    }
}
