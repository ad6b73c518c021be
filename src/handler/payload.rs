//! [`PayloadBuf`]: the bytes a handler receives.
//!
//! Most frames arrive as [`Bytes`] (a small frame from the reader's reused
//! arena, a TCP message, a frame handed over in process). A frame too big
//! for a ring record is read in place from the sender's pooled shared
//! memory instead; wrapping that in `Bytes` would allocate a shared header
//! per message (`Bytes::from_owner`), and an owner-backed `Bytes` cannot say
//! when its last clone is gone without one. A `PayloadBuf` holds such a
//! frame directly: its holder count lives in the segment's long-lived
//! receive record, so taking, cloning, slicing and dropping it never
//! allocates, and the last drop returns the buffer to the sender.

use std::fmt;
use std::ops::{Bound, Deref, RangeBounds};

use bytes::Bytes;

use crate::transport::shm::pool::Held;

/// A received payload: shared, immutable bytes, like [`Bytes`].
///
/// It derefs to `[u8]`; cloning and [`slice`](Self::slice) share the memory
/// (one atomic increment, no allocation, no copy). A payload that arrived
/// through the shared-memory pool keeps its buffer from being reused by the
/// sender for as long as any clone lives, and keeps it mapped even after
/// the link ends: keep it only as long as needed, since the sender waits
/// for it (or maps another buffer within its cap) while it is held.
///
/// A small payload may share a reused receive buffer with other frames: a
/// handler that keeps it for long should keep a copy instead
/// ([`PayloadBuf::copy_from_slice`], or `to_vec`). One of at most 64 bytes
/// given to an [`am_handler`](crate::handler_impls::am_handler) (or any
/// handler of kind `ActiveMessage`) run in place as a one-way call is held
/// in the value itself (cloning and slicing copy it then). Reading it costs
/// nothing; converting it into [`Bytes`] copies it.
#[derive(Clone, Default)]
pub struct PayloadBuf(Repr);

#[derive(Clone)]
enum Repr {
    Bytes(Bytes),
    Pooled(Held),
    /// A small payload held in the value itself (see [`PayloadBuf::inline`]).
    Inline(Inline),
}

/// Most bytes a payload holds inline: one cache line.
pub(crate) const INLINE_MAX: usize = 64;

/// A small payload's bytes, aligned as the wire aligns payloads (archives
/// are read in place).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Inline {
    bytes: [u8; INLINE_MAX],
    len: u8,
}

impl Default for Repr {
    fn default() -> Self {
        Self::Bytes(Bytes::new())
    }
}

impl PayloadBuf {
    /// An empty payload.
    pub const fn new() -> Self {
        Self(Repr::Bytes(Bytes::new()))
    }

    /// A payload of a copy of `data` (allocates, as `Bytes::copy_from_slice`).
    pub fn copy_from_slice(data: &[u8]) -> Self {
        Self(Repr::Bytes(Bytes::copy_from_slice(data)))
    }

    /// A payload of static bytes (no allocation).
    pub const fn from_static(data: &'static [u8]) -> Self {
        Self(Repr::Bytes(Bytes::from_static(data)))
    }

    /// A copy of `data` held in the value itself, if it is at most
    /// [`INLINE_MAX`] bytes: no shared buffer and no reference count to
    /// take and drop (two locked instructions per message on x86). Only for
    /// a handler that reads its payload: [`to_bytes`](Self::to_bytes) then
    /// copies it (an allocation), where a shared payload converts for free.
    pub(crate) fn inline(data: &[u8]) -> Option<Self> {
        let len = u8::try_from(data.len())
            .ok()
            .filter(|&n| usize::from(n) <= INLINE_MAX)?;
        let mut bytes = [0u8; INLINE_MAX];
        bytes[..data.len()].copy_from_slice(data);
        Some(Self(Repr::Inline(Inline { bytes, len })))
    }

    /// A frame held in a peer's pooled segment.
    pub(crate) fn pooled(held: Held) -> Self {
        Self(Repr::Pooled(held))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Bytes(b) => b,
            Repr::Pooled(h) => h.as_ref(),
            Repr::Inline(i) => &i.bytes[..usize::from(i.len)],
        }
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes lie in a peer's shared-memory pool (read in place;
    /// the sender gets the buffer back when the last clone drops).
    pub fn is_pooled(&self) -> bool {
        matches!(self.0, Repr::Pooled(_))
    }

    /// The bytes in `range`, sharing the memory (no allocation).
    ///
    /// # Panics
    ///
    /// When the range is out of bounds or decreasing, as [`Bytes::slice`].
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Self {
        let (start, end) = bounds(&range, self.len());
        match &self.0 {
            Repr::Bytes(b) => Self(Repr::Bytes(b.slice(start..end))),
            Repr::Pooled(h) => Self(Repr::Pooled(h.sub(start, end - start))),
            Repr::Inline(i) => {
                let mut part = Inline {
                    bytes: [0; INLINE_MAX],
                    len: (end - start) as u8,
                };
                part.bytes[..end - start].copy_from_slice(&i.bytes[start..end]);
                Self(Repr::Inline(part))
            }
        }
    }

    /// The bytes as [`Bytes`]. Free for a payload that already is `Bytes`;
    /// a pooled one allocates the shared header `Bytes` needs for an owner
    /// (the buffer still goes back to the sender when the last clone of
    /// either drops); one held inline is copied.
    pub fn to_bytes(&self) -> Bytes {
        self.clone().into()
    }
}

/// `range` resolved against `len`; panics as `Bytes::slice` does.
fn bounds(range: &impl RangeBounds<usize>, len: usize) -> (usize, usize) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1).expect("range start overflows"),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1).expect("range end overflows"),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    assert!(start <= end, "range start {start} > end {end}");
    assert!(end <= len, "range end {end} out of bounds: {len}");
    (start, end)
}

impl Deref for PayloadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for PayloadBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::borrow::Borrow<[u8]> for PayloadBuf {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for PayloadBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes themselves can be many MiB: show a short prefix.
        let head = &self.as_bytes()[..self.len().min(32)];
        f.debug_struct("PayloadBuf")
            .field("len", &self.len())
            .field("pooled", &self.is_pooled())
            .field("head", &Bytes::copy_from_slice(head))
            .finish()
    }
}

impl From<Bytes> for PayloadBuf {
    fn from(bytes: Bytes) -> Self {
        Self(Repr::Bytes(bytes))
    }
}

impl From<Vec<u8>> for PayloadBuf {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Repr::Bytes(bytes.into()))
    }
}

impl From<&'static [u8]> for PayloadBuf {
    fn from(bytes: &'static [u8]) -> Self {
        Self::from_static(bytes)
    }
}

impl From<&'static str> for PayloadBuf {
    fn from(text: &'static str) -> Self {
        Self::from_static(text.as_bytes())
    }
}

impl From<PayloadBuf> for Bytes {
    /// Free for a payload that already is `Bytes`; see [`PayloadBuf::to_bytes`].
    fn from(payload: PayloadBuf) -> Self {
        match payload.0 {
            Repr::Bytes(b) => b,
            Repr::Pooled(h) => Bytes::from_owner(h),
            Repr::Inline(i) => Bytes::copy_from_slice(&i.bytes[..usize::from(i.len)]),
        }
    }
}

impl From<PayloadBuf> for Vec<u8> {
    fn from(payload: PayloadBuf) -> Self {
        match payload.0 {
            Repr::Bytes(b) => b.into(),
            Repr::Pooled(h) => h.as_ref().to_vec(),
            Repr::Inline(i) => i.bytes[..usize::from(i.len)].to_vec(),
        }
    }
}

impl PartialEq for PayloadBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for PayloadBuf {}

impl std::hash::Hash for PayloadBuf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq<[u8]> for PayloadBuf {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for PayloadBuf {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for PayloadBuf {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_bytes() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for PayloadBuf {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_bytes() == *other
    }
}

impl PartialEq<Vec<u8>> for PayloadBuf {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_bytes() == other.as_slice()
    }
}

impl PartialEq<Bytes> for PayloadBuf {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_bytes() == other.as_ref()
    }
}

impl PartialEq<str> for PayloadBuf {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for PayloadBuf {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<PayloadBuf> for [u8] {
    fn eq(&self, other: &PayloadBuf) -> bool {
        self == other.as_bytes()
    }
}

impl PartialEq<PayloadBuf> for &[u8] {
    fn eq(&self, other: &PayloadBuf) -> bool {
        *self == other.as_bytes()
    }
}

impl PartialEq<PayloadBuf> for Vec<u8> {
    fn eq(&self, other: &PayloadBuf) -> bool {
        self.as_slice() == other.as_bytes()
    }
}

impl PartialEq<PayloadBuf> for Bytes {
    fn eq(&self, other: &PayloadBuf) -> bool {
        self.as_ref() == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_bytes() {
        let p = PayloadBuf::from(Bytes::from_static(b"hello world"));
        assert_eq!(p.len(), 11);
        assert!(!p.is_empty() && !p.is_pooled());
        assert_eq!(p.slice(6..), b"world");
        assert_eq!(p.slice(..=4), "hello");
        assert_eq!(p.slice(3..3).len(), 0);
        assert_eq!(p.to_bytes(), Bytes::from_static(b"hello world"));
        assert_eq!(Vec::from(p.clone()), b"hello world".to_vec());
        assert_eq!(p, PayloadBuf::copy_from_slice(b"hello world"));
        assert!(PayloadBuf::new().is_empty());
        assert!(format!("{p:?}").contains("len: 11"));
    }

    #[test]
    fn is_what_a_payload_type_should_be() {
        fn shared<T: Clone + Send + Sync + fmt::Debug + Default + AsRef<[u8]> + 'static>() {}
        shared::<PayloadBuf>();
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn slice_out_of_bounds_panics_as_bytes_does() {
        let _ = PayloadBuf::from_static(b"abc").slice(1..4);
    }

    #[test]
    fn an_inline_payload_behaves_like_its_bytes() {
        let data: Vec<u8> = (0..64u8).collect();
        let p = PayloadBuf::inline(&data).expect("64 bytes fit");
        assert_eq!(p.as_bytes(), &data[..]);
        assert_eq!(p.as_ptr() as usize % 16, 0, "aligned as wire payloads are");
        assert!(!p.is_pooled());
        assert_eq!(p.clone(), p);
        assert_eq!(p.slice(3..9).as_bytes(), &data[3..9]);
        assert_eq!(p.slice(..0).len(), 0);
        assert_eq!(p.to_bytes(), Bytes::copy_from_slice(&data));
        assert_eq!(Vec::from(p.clone()), data);
        assert_eq!(PayloadBuf::inline(b"").map(|p| p.len()), Some(0));
        assert!(PayloadBuf::inline(&[0u8; 65]).is_none(), "65 bytes do not");
    }
}
