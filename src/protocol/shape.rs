//! Decoding a frame shaped like the last one a reader accepted.
//!
//! A stream of one-way messages repeats the same header prefix (magic,
//! version, kind, flags), the same name length, error code and reserved
//! bytes, and the same handler name, frame after frame. [`Shape`] keeps those
//! bytes from the last frame that [`wire::decode`] accepted in full; a frame
//! whose bytes are equal there passes every check `decode` makes on them by
//! that equality alone: the magic, version, kind and flags were checked on
//! the same bytes, the reserved bytes are the same zeros, and the name is the
//! same valid UTF-8 (compared a word at a time instead of a UTF-8 check). What can differ
//! between such frames is still checked per frame, exactly as `decode` does:
//! the frame limit, the declared length against the frame's, a message id
//! that is not zero (and a correlation id for replies). Anything else falls
//! back to the full decode.
//!
//! So [`Shape::decode`] gives what `decode` gives, or nothing: it never
//! accepts a frame `decode` refuses (property test below).

use crate::ids::{InstanceId, MessageId};
use crate::wire::{self, FrameRef, HEADER_LEN, Header, Kind, ProtocolError};

/// Most words of name and padding compared as words (names of up to 32
/// bytes); a longer name is compared as a slice.
const NAME_WORDS: usize = 4;
// The unrolled comparison in `Shape::same` takes at most four words.
const _: () = assert!(NAME_WORDS == 4);

/// The repeated bytes of the last fully decoded frame (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// Bytes `0..8`: magic, version, kind, flags, as one little-endian
    /// word. Zero until learned, which no frame matches (its magic is not
    /// zero).
    lead: u64,
    /// Bytes `48..56`: name length, error code, reserved.
    mid: u64,
    /// The bytes from the name to the payload (the name and its padding) as
    /// words, when they fit: compared with a few loads, not a `memcmp` call
    /// (which was a sixth of a zero-copy server's time per message). Their
    /// count, or 0 when the name is compared as a slice.
    name_words: [u64; NAME_WORDS],
    words: usize,
    /// The handler name's bytes (valid UTF-8: `decode` checked them).
    name: Vec<u8>,
    /// The kind and flags `lead` holds, decoded.
    kind: Option<Kind>,
    flags: u16,
}

impl Shape {
    /// Decodes `bytes` as [`wire::decode`] would, with the repeated fields
    /// compared to the last frame learned; learns `bytes`' shape when they
    /// differ and `decode` accepts them.
    #[inline]
    pub(crate) fn decode<'a>(
        &mut self,
        bytes: &'a [u8],
        max_len: usize,
    ) -> Result<FrameRef<'a>, ProtocolError> {
        if let Some(view) = self.same(bytes, max_len) {
            return Ok(view);
        }
        let view = wire::decode(bytes, max_len)?;
        self.learn(bytes, &view);
        Ok(view)
    }

    /// The frame, if it has this shape and passes the per-frame checks.
    ///
    /// Always inlined: returned through memory, the view was read back with
    /// loads wider than the stores that wrote it, a store-forwarding stall
    /// that was half of a zero-copy server's routing time per message.
    #[inline(always)]
    pub(crate) fn same<'a>(&self, bytes: &'a [u8], max_len: usize) -> Option<FrameRef<'a>> {
        let kind = self.kind?;
        if bytes.len() > max_len || bytes.len() < HEADER_LEN {
            return None;
        }
        let u64_at = |at: usize| word_at(bytes, at);
        if u64_at(0) != self.lead || u64_at(48) != self.mid {
            return None;
        }
        let name_len = self.name.len();
        let offset = wire::payload_offset(name_len);
        if (offset as u64).saturating_add(u64_at(56)) != bytes.len() as u64 {
            return None;
        }
        // `bytes` reaches the payload (the length above): every word of the
        // name and its padding is in it.
        let name = &bytes[HEADER_LEN..HEADER_LEN + name_len];
        // Unrolled per count (an iterator here was a call and a loop per frame).
        let word = |i: usize| u64_at(HEADER_LEN + 8 * i) == self.name_words[i];
        let same_name = match self.words {
            0 => name == self.name.as_slice(),
            1 => word(0),
            2 => word(0) && word(1),
            3 => word(0) && word(1) && word(2),
            _ => word(0) && word(1) && word(2) && word(3),
        };
        if !same_name {
            return None;
        }
        let header = Header {
            kind,
            flags: self.flags,
            error_code: self.mid.to_le_bytes()[2],
            message_id: MessageId(u64_at(8)),
            correlation_id: MessageId(u64_at(16)),
            sender: InstanceId::from_bytes(bytes[24..40].try_into().ok()?),
            timeout_us: u64_at(40),
        };
        if header.message_id.0 == 0 || (kind.is_reply() && header.correlation_id.0 == 0) {
            return None;
        }
        // SAFETY: `name` equals `self.name` byte for byte, and `self.name`
        // holds the name of a frame `wire::decode` accepted, which it
        // checked to be valid UTF-8; equal bytes are equally valid.
        let name = unsafe { std::str::from_utf8_unchecked(name) };
        Some(FrameRef {
            header,
            name,
            payload: &bytes[offset..],
            payload_offset: offset,
        })
    }

    /// Keeps the shape of `bytes`, which `decode` accepted as `view`.
    fn learn(&mut self, bytes: &[u8], view: &FrameRef<'_>) {
        self.lead = word_at(bytes, 0);
        self.mid = word_at(bytes, 48);
        let words = (view.payload_offset - HEADER_LEN) / 8;
        self.words = if words <= NAME_WORDS { words } else { 0 };
        for (i, word) in self.name_words.iter_mut().enumerate().take(self.words) {
            *word = word_at(bytes, HEADER_LEN + 8 * i);
        }
        // Reused: a run whose names alternate allocates only until the
        // buffer holds the longest name.
        self.name.clear();
        self.name.extend_from_slice(view.name.as_bytes());
        self.kind = Some(view.header.kind);
        self.flags = view.header.flags;
    }
}

/// The little-endian word at `at` (zero past the end: a frame shorter than
/// the shape's never matches it, its length differs).
#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Kind, encode_to_vec, flags};

    fn frame(kind: Kind, id: u64, name: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = Header::new(kind, MessageId(id), InstanceId::from_bytes([7; 16]));
        h.correlation_id = MessageId(id + 1);
        encode_to_vec(&h, name, payload)
    }

    #[test]
    fn a_frame_of_the_same_shape_decodes_as_decode_does() {
        let mut shape = Shape::default();
        let first = frame(Kind::OneWay, 1, "sink", b"abc");
        let second = frame(Kind::OneWay, 2, "sink", b"defgh");
        shape.decode(&first, 1 << 20).unwrap();
        let fast = shape.same(&second, 1 << 20).expect("same shape");
        let full = wire::decode(&second, 1 << 20).unwrap();
        assert_eq!(fast.header, full.header);
        assert_eq!((fast.name, fast.payload), (full.name, full.payload));
        assert_eq!(fast.payload_offset, full.payload_offset);
    }

    #[test]
    fn names_compared_as_words_or_as_a_slice_differ_in_their_last_byte() {
        // 31 and 32 bytes fit the words; 33 is compared as a slice.
        for len in [1usize, 7, 8, 15, 16, 31, 32, 33, 70] {
            let name: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let mut other = name.clone().into_bytes();
            *other.last_mut().unwrap() = b'Z';
            let other = String::from_utf8(other).unwrap();
            let mut shape = Shape::default();
            shape
                .decode(&frame(Kind::OneWay, 1, &name, b"x"), 1 << 20)
                .unwrap();
            let again = frame(Kind::OneWay, 2, &name, b"yz");
            let fast = shape.same(&again, 1 << 20).expect("same shape");
            assert_eq!(fast.name, name);
            assert_eq!(fast.payload, b"yz");
            let differs = frame(Kind::OneWay, 3, &other, b"yz");
            assert!(shape.same(&differs, 1 << 20).is_none(), "len {len}");
        }
    }

    #[test]
    fn a_name_that_is_not_utf8_after_a_valid_one_of_its_length_is_refused() {
        let mut shape = Shape::default();
        shape
            .decode(&frame(Kind::OneWay, 1, "sink", b""), 1024)
            .unwrap();
        let mut bad = frame(Kind::OneWay, 2, "sink", b"");
        bad[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0xff, 0xfe, b'n', b'k']);
        assert!(shape.same(&bad, 1024).is_none());
        assert_eq!(
            shape.decode(&bad, 1024).unwrap_err(),
            ProtocolError::BadName
        );
    }

    #[test]
    fn alternating_names_are_each_decoded_with_their_own_name() {
        let mut shape = Shape::default();
        for i in 1..20u64 {
            let name = if i % 2 == 0 { "even" } else { "odd1" };
            let f = frame(Kind::OneWay, i, name, &i.to_le_bytes());
            let view = shape.decode(&f, 1024).unwrap();
            assert_eq!(view.name, name);
            assert_eq!(view.payload, i.to_le_bytes());
        }
    }

    #[test]
    fn per_frame_checks_still_apply_to_a_known_shape() {
        let mut shape = Shape::default();
        shape
            .decode(&frame(Kind::OneWay, 1, "sink", b"abc"), 1024)
            .unwrap();
        // A zero message id.
        let zero = frame(Kind::OneWay, 0, "sink", b"abc");
        assert_eq!(
            shape.decode(&zero, 1024).unwrap_err(),
            ProtocolError::MissingId
        );
        // A length that disagrees with the frame.
        let mut short = frame(Kind::OneWay, 3, "sink", b"abc");
        short.pop();
        assert!(matches!(
            shape.decode(&short, 1024),
            Err(ProtocolError::LengthMismatch { .. })
        ));
        // The frame limit.
        let f = frame(Kind::OneWay, 4, "sink", b"abc");
        assert!(matches!(
            shape.decode(&f, 16),
            Err(ProtocolError::TooLarge { .. })
        ));
        // A reply of a learned reply shape still needs its correlation id.
        let mut reply = Header::new(Kind::Response, MessageId(5), InstanceId::nil());
        reply.correlation_id = MessageId(9);
        shape
            .decode(&encode_to_vec(&reply, "", b"x"), 1024)
            .unwrap();
        reply.correlation_id = MessageId(0);
        let orphan = encode_to_vec(&reply, "", b"x");
        assert_eq!(
            shape.decode(&orphan, 1024).unwrap_err(),
            ProtocolError::MissingId
        );
    }

    /// Whatever bytes follow a learned frame (random edits of a frame of
    /// the same shape, cut short or not), the shortcut accepts only what
    /// `decode` accepts, and decodes it the same way. Seeded: repeatable.
    #[test]
    fn never_accepts_what_decode_refuses() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut accepted = 0;
        for case in 0..20_000u64 {
            let mut shape = Shape::default();
            let (name, fl) = match rng.bool() {
                true => ("_sys", flags::SYSTEM),
                false => ("sink", 0),
            };
            let payload: Vec<u8> = (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect();
            let mut h = Header::new(Kind::OneWay, MessageId(1), InstanceId::from_bytes([3; 16]));
            h.flags = fl;
            shape
                .decode(&encode_to_vec(&h, name, &payload), 1 << 16)
                .unwrap();
            h.message_id = MessageId(case + 2);
            let mut next = encode_to_vec(&h, name, &payload);
            for _ in 0..rng.usize(0..4) {
                let at = rng.usize(0..next.len() + 8);
                if let Some(b) = next.get_mut(at) {
                    *b = rng.u8(..);
                }
            }
            let cut = next.len().saturating_sub(rng.usize(0..3));
            next.truncate(cut);
            let full = wire::decode(&next, 1 << 16);
            if let Some(fast) = shape.same(&next, 1 << 16) {
                let full = full.expect("the shortcut accepted a frame decode refuses");
                assert_eq!(fast.header, full.header);
                assert_eq!((fast.name, fast.payload), (full.name, full.payload));
                assert_eq!(fast.payload_offset, full.payload_offset);
                accepted += 1;
            }
        }
        // Enough cases took the shortcut for the check to mean something.
        assert!(accepted > 1_000, "only {accepted} cases took the shortcut");
    }
}
