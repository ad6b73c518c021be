//! The transport's own frames: heartbeat probes and pongs, goodbyes, and
//! error answers to malformed invocations.
//!
//! A probe and a pong carry the sender's largest accepted frame as an 8-byte
//! little-endian payload, so each end of a link sends nothing the other would
//! refuse. Their message ids have the top bit set, keeping them apart from
//! the runtime's ids.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{InstanceId, MessageId};
use crate::wire::{ErrorCode, Header, Kind, flags};

/// Top bit of the message ids the transport itself hands out.
const CONTROL_ID_BIT: u64 = 1 << 63;

/// Builds control frames from one instance.
#[derive(Debug)]
pub(crate) struct Control {
    local: InstanceId,
    max_frame: usize,
    /// Shared by the I/O thread and the ROUTER's reader task.
    next: AtomicU64,
}

impl Control {
    /// Control frames sent as `local`, announcing `max_frame`.
    pub(crate) fn new(local: InstanceId, max_frame: usize) -> Self {
        Self {
            local,
            max_frame,
            next: AtomicU64::new(0),
        }
    }

    fn next_id(&self) -> MessageId {
        // Relaxed: only uniqueness matters; nothing is read through it.
        let next = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        MessageId(CONTROL_ID_BIT | (next & !CONTROL_ID_BIT))
    }

    fn header(&self, kind: Kind) -> Header {
        Header::new(kind, self.next_id(), self.local)
    }

    /// A heartbeat probe; returns its id (echoed as the pong's correlation id).
    pub(crate) fn probe(&self) -> (MessageId, zmq::Message) {
        let header = self.header(Kind::Heartbeat);
        let limit = (self.max_frame as u64).to_le_bytes();
        (header.message_id, encode(header, "", &limit))
    }

    /// The answer to probe `probe` (also sent unasked as a keep-alive).
    pub(crate) fn pong(&self, probe: MessageId) -> zmq::Message {
        let mut header = self.header(Kind::Heartbeat);
        header.flags = flags::PONG;
        header.correlation_id = probe;
        let limit = (self.max_frame as u64).to_le_bytes();
        encode(header, "", &limit)
    }

    /// The instance these frames come from.
    pub(crate) fn local(&self) -> InstanceId {
        self.local
    }

    /// The largest frame this end accepts (announced in handshakes).
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// A step of the authentication handshake (`docs/wire.md`, section 14):
    /// a heartbeat with flag `AUTH` (and `PONG` from the server) answering
    /// `to` (zero for the opening hello). Returns its id.
    pub(crate) fn auth(
        &self,
        pong: bool,
        to: MessageId,
        payload: &[u8],
    ) -> (MessageId, zmq::Message) {
        let mut header = self.header(Kind::Heartbeat);
        header.flags = if pong {
            flags::PONG | flags::AUTH
        } else {
            flags::AUTH
        };
        header.correlation_id = to;
        (header.message_id, encode(header, "", payload))
    }

    /// A goodbye: we close this link.
    pub(crate) fn goodbye(&self) -> zmq::Message {
        let header = self.header(Kind::Goodbye);
        encode(header, "", &[])
    }

    /// The header of an `Error` answer to the invocation `to`.
    pub(crate) fn error_header(&self, to: &Header, code: ErrorCode) -> Header {
        let mut header = self.header(Kind::Error);
        header.correlation_id = to.message_id;
        header.error_code = code as u8;
        header
    }

    /// An `Error` answer to the invocation `to`.
    pub(crate) fn error(&self, to: &Header, code: ErrorCode, text: &str) -> zmq::Message {
        let header = self.error_header(to, code);
        encode(header, "", text.as_bytes())
    }
}

/// An `Error` (`Refused`) answer to an invocation that came on an outbound
/// link, built by a reader that has no `Control` (its id is a fixed
/// control id: nothing correlates on an error's own id).
pub(crate) fn refusal(local: InstanceId, to: &Header) -> zmq::Message {
    let mut header = Header::new(Kind::Error, MessageId(CONTROL_ID_BIT), local);
    header.correlation_id = to.message_id;
    header.error_code = ErrorCode::Refused as u8;
    encode(header, "", b"invocations are not accepted on this link")
}

/// Encodes a frame into a zmq message of the exact size.
pub(crate) fn encode(header: Header, name: &str, payload: &[u8]) -> zmq::Message {
    let mut msg = zmq::Message::with_size(crate::wire::frame_len(name.len(), payload.len()));
    crate::wire::encode_head(&header, name, payload.len(), &mut msg);
    msg[crate::wire::payload_offset(name.len())..].copy_from_slice(payload);
    msg
}

/// The frame limit announced in a probe or pong payload, if it carries one.
pub(crate) fn announced_limit(payload: &[u8]) -> Option<usize> {
    let bytes: [u8; 8] = payload.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(bytes)).ok()
}

/// Whether an invocation of this kind waits for an answer.
pub(crate) fn expects_reply(kind: Kind) -> bool {
    matches!(kind, Kind::Confirm | Kind::Request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn control_frames_decode_and_carry_the_limit() {
        let me = InstanceId::new_random();
        let control = Control::new(me, 4096);
        let (id, probe) = control.probe();
        let frame = wire::decode(&probe, 4096).unwrap();
        assert_eq!(frame.header.kind, Kind::Heartbeat);
        assert_eq!(frame.header.sender, me);
        assert_eq!(announced_limit(frame.payload), Some(4096));
        let pong = control.pong(id);
        let frame = wire::decode(&pong, 4096).unwrap();
        assert!(frame.header.has(flags::PONG));
        assert_eq!(frame.header.correlation_id, id);
        let asked = Header::new(Kind::Request, MessageId(9), me);
        let err = control.error(&asked, ErrorCode::Codec, "bad");
        let frame = wire::decode(&err, 4096).unwrap();
        assert_eq!(frame.header.correlation_id, MessageId(9));
        assert_eq!(frame.payload, b"bad");
        assert_ne!(control.goodbye().len(), 0);
    }
}
