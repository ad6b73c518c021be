//! A frame's header and handler name encoded once, for a stream of frames
//! that differ only in their message id, payload length, payload form (raw
//! or archived) and deadline: a prepared sender's messages. Each frame then
//! costs one copy of the encoded bytes and four small patches, instead of
//! encoding the header field by field and copying and padding the name.

use crate::ids::MessageId;
use crate::wire::{Header, encode_head, flags, payload_offset};

/// Offset of the flags (u16 LE) in the fixed header (see [`encode_head`]).
const FLAGS_AT: usize = 6;
/// Offset of the message id (u64 LE).
const ID_AT: usize = 8;
/// Offset of the budget or deadline in microseconds (u64 LE).
const TIMEOUT_AT: usize = 40;
/// Offset of the payload length (u64 LE).
const PAYLOAD_LEN_AT: usize = 56;

/// The header and handler name of a frame, encoded ahead of its messages.
///
/// [`crate::transport::PeerLink::try_send_encoded`] sends a frame made of
/// it: the message id and the payload's length are filled in per frame, the
/// flag [`flags::RAW`] is set for a byte payload, and a transport may turn
/// the budget into a deadline.
#[derive(Clone)]
pub struct EncodedHead {
    header: Header,
    name: Box<str>,
    /// `payload_offset(name.len())` bytes as [`encode_head`] writes them,
    /// with a zero message id and payload length.
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for EncodedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedHead")
            .field("header", &self.header)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl EncodedHead {
    /// Encodes `header` (its message id is ignored) and `name` once.
    ///
    /// # Panics
    /// If `name` is longer than `u16::MAX` bytes (as [`encode_head`] does);
    /// handler names are validated far below that before they get here.
    pub fn new(header: Header, name: &str) -> Self {
        let header = Header {
            message_id: MessageId(0),
            ..header
        };
        let mut bytes = vec![0u8; payload_offset(name.len())].into_boxed_slice();
        encode_head(&header, name, 0, &mut bytes);
        Self {
            header,
            name: name.into(),
            bytes,
        }
    }

    /// The header (message id zero).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The handler name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length of the encoded head: the payload starts at this offset.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a head holds at least the fixed header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The flags of a frame whose payload is raw bytes (`raw`) or an archive.
    pub fn flags(&self, raw: bool) -> u16 {
        self.header.flags | if raw { flags::RAW } else { 0 }
    }

    /// The header of message `id` (for transports that encode frames
    /// themselves; `raw` as in [`Self::flags`]).
    pub fn header_for(&self, id: MessageId, raw: bool) -> Header {
        Header {
            message_id: id,
            flags: self.flags(raw),
            ..self.header
        }
    }

    /// Writes the head of message `id` at the start of `dst`, with `flags`,
    /// `timeout_us` and a `payload_len`-byte payload: exactly what
    /// [`encode_head`] writes for that header.
    ///
    /// # Panics
    /// If `dst` is shorter than [`Self::len`] (a caller bug).
    pub fn write(
        &self,
        dst: &mut [u8],
        id: MessageId,
        flags: u16,
        timeout_us: u64,
        payload_len: usize,
    ) {
        let head = &mut dst[..self.bytes.len()];
        head.copy_from_slice(&self.bytes);
        head[FLAGS_AT..FLAGS_AT + 2].copy_from_slice(&flags.to_le_bytes());
        head[ID_AT..ID_AT + 8].copy_from_slice(&id.0.to_le_bytes());
        head[TIMEOUT_AT..TIMEOUT_AT + 8].copy_from_slice(&timeout_us.to_le_bytes());
        let len = payload_len as u64;
        head[PAYLOAD_LEN_AT..PAYLOAD_LEN_AT + 8].copy_from_slice(&len.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InstanceId;
    use crate::wire::Kind;

    /// The patched head must be byte for byte what `encode_head` writes, so
    /// the offsets above can never drift from the wire format.
    #[test]
    fn a_patched_head_is_what_encode_head_writes() {
        let mut header = Header::new(Kind::OneWay, MessageId(0), InstanceId::new_random());
        header.flags = flags::SYSTEM;
        header.timeout_us = 1_234_567;
        for name in ["sink", "a_name_of_exactly_sixteen", ""] {
            let head = EncodedHead::new(header, name);
            let mut expected = header;
            expected.message_id = MessageId(0x0102_0304_0506_0708);
            expected.flags = head.flags(true) | flags::MONOTONIC_DEADLINE;
            expected.timeout_us = 987_654_321;
            let mut want = vec![0u8; head.len()];
            encode_head(&expected, name, 4242, &mut want);
            // Whatever the buffer held before, the padding comes out zero.
            let mut over_garbage = vec![0xa5u8; head.len()];
            encode_head(&expected, name, 4242, &mut over_garbage);
            assert_eq!(over_garbage, want, "name {name:?}");
            let mut got = vec![0xffu8; head.len() + 3];
            head.write(
                &mut got,
                expected.message_id,
                expected.flags,
                expected.timeout_us,
                4242,
            );
            assert_eq!(&got[..head.len()], &want[..], "name {name:?}");
            assert_eq!(&got[head.len()..], &[0xff; 3], "wrote past the head");
            assert_eq!(
                head.header_for(expected.message_id, false).flags,
                flags::SYSTEM
            );
        }
    }
}
