//! The wire envelope shared by every transport (see `docs/wire.md`).
//!
//! A frame is a fixed 64-byte little-endian header, the handler name, zero
//! padding up to the next multiple of 16, then the payload. The payload starts
//! 16-byte aligned relative to the frame start so an rkyv archive can be read
//! in place when the frame itself is 16-byte aligned.

use crate::ids::{InstanceId, MessageId};

pub use super::head::EncodedHead;

/// Magic bytes opening every frame.
pub const MAGIC: [u8; 4] = *b"AMSG";
/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Alignment of the payload within a frame.
pub const PAYLOAD_ALIGN: usize = 16;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Fire-and-forget: run the handler, reply nothing.
    OneWay = 1,
    /// Confirmed delivery: reply `Ack` once the handler succeeded, `Error` otherwise.
    Confirm = 2,
    /// Request: reply `Response` with the handler's output, `Error` otherwise.
    Request = 3,
    /// Positive confirmation of a `Confirm` (correlation id = the request's id).
    Ack = 4,
    /// The handler's output for a `Request`.
    Response = 5,
    /// A failure for a `Confirm` or `Request`; `error_code` says which, payload is UTF-8 text.
    Error = 6,
    /// The receiver found the handler and admitted the message (flag `RECEIPT`).
    Receipt = 7,
    /// The caller gave up on the request with that correlation id.
    Cancel = 8,
    /// Link liveness probe or its answer (flag `PONG`).
    Heartbeat = 9,
    /// The sender is shutting down and closes the link.
    Goodbye = 10,
    /// One item of a streamed response (correlation id = the request's id).
    StreamItem = 11,
    /// The normal end of a streamed response (correlation id = the request's id).
    StreamEnd = 12,
    /// The stream's reader grants the producer more items; payload: `u32` LE
    /// count (correlation id = the request's id).
    Credit = 13,
}

impl Kind {
    /// The kind from its wire byte.
    pub fn from_u8(value: u8) -> Result<Self, ProtocolError> {
        Ok(match value {
            1 => Self::OneWay,
            2 => Self::Confirm,
            3 => Self::Request,
            4 => Self::Ack,
            5 => Self::Response,
            6 => Self::Error,
            7 => Self::Receipt,
            8 => Self::Cancel,
            9 => Self::Heartbeat,
            10 => Self::Goodbye,
            11 => Self::StreamItem,
            12 => Self::StreamEnd,
            13 => Self::Credit,
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }

    /// Whether this kind carries a handler invocation (goes to the dispatcher).
    pub fn is_invocation(self) -> bool {
        matches!(self, Self::OneWay | Self::Confirm | Self::Request)
    }

    /// Whether this kind answers an earlier invocation (goes to the response table).
    pub fn is_reply(self) -> bool {
        matches!(
            self,
            Self::Ack
                | Self::Response
                | Self::Error
                | Self::Receipt
                | Self::StreamItem
                | Self::StreamEnd
        )
    }
}

/// Header flag bits.
pub mod flags {
    /// The target is a system (`_`-prefixed) handler.
    pub const SYSTEM: u16 = 1 << 0;
    /// The caller wants a `Receipt` before the handler runs.
    pub const RECEIPT: u16 = 1 << 1;
    /// On `Heartbeat`: this is the answer to a probe.
    pub const PONG: u16 = 1 << 2;
    /// The payload is raw bytes rather than an rkyv archive (informative only).
    pub const RAW: u16 = 1 << 3;
    /// On `Heartbeat`: a step of the TCP authentication handshake
    /// (`docs/wire.md`, section 14).
    pub const AUTH: u16 = 1 << 4;
    /// On invocations: `timeout_us` holds the absolute deadline on the
    /// sender's `CLOCK_MONOTONIC`, in microseconds, rather than a budget.
    /// Only used between processes of one host (shared memory), which share
    /// that clock; lets the receiver skip calls whose caller already gave
    /// up, however long they waited in the ring.
    pub const MONOTONIC_DEADLINE: u16 = 1 << 5;
    /// On `Request`: the caller wants a stream of `StreamItem` frames ended
    /// by `StreamEnd` or `Error`; the payload opens with a 16-byte stream
    /// preamble (`docs/wire.md`, section on streams).
    pub const STREAM: u16 = 1 << 6;
    /// Every flag this version knows; others are refused.
    pub const KNOWN: u16 = SYSTEM | RECEIPT | PONG | RAW | AUTH | MONOTONIC_DEADLINE | STREAM;
}

/// Why a `Confirm` or `Request` failed; carried in `error_code` of an `Error` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// No handler of that name.
    NoSuchHandler = 1,
    /// The handler returned an error.
    Handler = 2,
    /// The message was refused (reserved name without the system flag, bad name).
    Refused = 3,
    /// The receiver is shutting down.
    ShuttingDown = 4,
    /// The frame or its payload could not be decoded.
    Codec = 5,
    /// The payload exceeded the receiver's limit.
    TooLarge = 6,
    /// Any other failure on the receiving side.
    Internal = 7,
}

impl ErrorCode {
    /// The code from its wire byte; unknown codes read as `Internal`.
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::NoSuchHandler,
            2 => Self::Handler,
            3 => Self::Refused,
            4 => Self::ShuttingDown,
            5 => Self::Codec,
            6 => Self::TooLarge,
            _ => Self::Internal,
        }
    }
}

/// A frame that breaks the wire protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Fewer bytes than a header.
    #[error("frame of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    /// The first four bytes are not `AMSG`.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// A wire version this build does not speak.
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// A kind byte this version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Flag bits this version does not know.
    #[error("unknown flag bits {0:#06x}")]
    UnknownFlags(u16),
    /// Reserved bytes that are not zero.
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    /// The lengths in the header disagree with the frame size.
    #[error("header declares {declared} bytes but the frame has {actual}")]
    LengthMismatch {
        /// Total the header implies.
        declared: u64,
        /// Bytes actually present.
        actual: usize,
    },
    /// The handler name is not UTF-8 or has a bad shape.
    #[error("handler name is not valid UTF-8")]
    BadName,
    /// A frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Frame size.
        size: u64,
        /// Configured maximum.
        max: usize,
    },
    /// An invocation with no message id, or a reply with no correlation id.
    #[error("missing message or correlation id")]
    MissingId,
    /// The transport's own framing or link rules were broken (a corrupt
    /// shared-memory ring, a frame whose sender is not the link's peer).
    #[error("link protocol violation: {0}")]
    Link(String),
}

/// The fixed header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// Flag bits (see [`flags`]).
    pub flags: u16,
    /// Error code on `Error` frames, zero otherwise.
    pub error_code: u8,
    /// This message's id.
    pub message_id: MessageId,
    /// On replies, the id of the invocation answered; zero otherwise.
    pub correlation_id: MessageId,
    /// The sending manager.
    pub sender: InstanceId,
    /// The caller's remaining budget in microseconds at send time; zero means none.
    pub timeout_us: u64,
}

impl Header {
    /// A header with no flags, no error code and no correlation.
    pub fn new(kind: Kind, message_id: MessageId, sender: InstanceId) -> Self {
        Self {
            kind,
            flags: 0,
            error_code: 0,
            message_id,
            correlation_id: MessageId(0),
            sender,
            timeout_us: 0,
        }
    }

    /// Whether a flag bit is set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

/// Offset of the payload in a frame whose handler name has `name_len` bytes.
pub const fn payload_offset(name_len: usize) -> usize {
    HEADER_LEN + name_len.next_multiple_of(PAYLOAD_ALIGN)
}

/// Total frame size for a name and payload of these lengths.
pub const fn frame_len(name_len: usize, payload_len: usize) -> usize {
    payload_offset(name_len) + payload_len
}

/// Writes the header, name and padding of a frame into `dst[..payload_offset(name.len())]`.
///
/// The payload is written separately (before or after) at
/// `payload_offset(name.len())`, so a transport can serialize straight into
/// its own buffer (a ring slot, a zmq message) without an intermediate copy.
pub fn encode_head(header: &Header, name: &str, payload_len: usize, dst: &mut [u8]) {
    assert!(name.len() <= u16::MAX as usize, "handler name too long");
    let offset = payload_offset(name.len());
    let dst = &mut dst[..offset];
    // One length check for the fixed header: every field below then sits at
    // a constant offset of an array (no check, no call per field).
    let head: &mut [u8; HEADER_LEN] = (&mut dst[..HEADER_LEN])
        .try_into()
        .expect("a slice of HEADER_LEN bytes");
    head[0..4].copy_from_slice(&MAGIC);
    head[4] = WIRE_VERSION;
    head[5] = header.kind as u8;
    head[6..8].copy_from_slice(&header.flags.to_le_bytes());
    head[8..16].copy_from_slice(&header.message_id.0.to_le_bytes());
    head[16..24].copy_from_slice(&header.correlation_id.0.to_le_bytes());
    head[24..40].copy_from_slice(header.sender.as_bytes());
    head[40..48].copy_from_slice(&header.timeout_us.to_le_bytes());
    head[48..50].copy_from_slice(&(name.len() as u16).to_le_bytes());
    head[50] = header.error_code;
    head[51..56].fill(0);
    head[56..64].copy_from_slice(&(payload_len as u64).to_le_bytes());
    if offset > HEADER_LEN {
        // The padding lies within the last 16 bytes of the name's area:
        // zero them (one fixed-size store), then copy the name over them.
        dst[offset - PAYLOAD_ALIGN..].copy_from_slice(&[0; PAYLOAD_ALIGN]);
        dst[HEADER_LEN..HEADER_LEN + name.len()].copy_from_slice(name.as_bytes());
    }
}

/// Encodes a frame with a byte payload into a new vector.
pub fn encode_to_vec(header: &Header, name: &str, payload: &[u8]) -> Vec<u8> {
    let offset = payload_offset(name.len());
    let mut out = vec![0u8; offset + payload.len()];
    encode_head(header, name, payload.len(), &mut out);
    out[offset..].copy_from_slice(payload);
    out
}

/// A decoded view of a frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    /// The fixed header.
    pub header: Header,
    /// The handler name (empty on replies and control frames).
    pub name: &'a str,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// Offset of the payload within the frame.
    pub payload_offset: usize,
}

/// Decodes and checks a frame; `max_len` caps the whole frame.
///
/// Every field is range-checked: nothing in `bytes` can make this panic.
pub fn decode(bytes: &[u8], max_len: usize) -> Result<FrameRef<'_>, ProtocolError> {
    if bytes.len() > max_len {
        return Err(ProtocolError::TooLarge {
            size: bytes.len() as u64,
            max: max_len,
        });
    }
    let header = decode_header(bytes)?;
    let name_len = u16::from_le_bytes([bytes[48], bytes[49]]) as usize;
    let payload_len = u64::from_le_bytes(bytes[56..64].try_into().expect("8 bytes"));
    let offset = payload_offset(name_len);
    let declared = (offset as u64).saturating_add(payload_len);
    if declared != bytes.len() as u64 {
        return Err(ProtocolError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    let name = std::str::from_utf8(&bytes[HEADER_LEN..HEADER_LEN + name_len])
        .map_err(|_| ProtocolError::BadName)?;
    Ok(FrameRef {
        header,
        name,
        payload: &bytes[offset..],
        payload_offset: offset,
    })
}

/// Decodes only the fixed header (magic, version, kind, flags, ids).
pub fn decode_header(bytes: &[u8]) -> Result<Header, ProtocolError> {
    if bytes.len() < HEADER_LEN {
        return Err(ProtocolError::Truncated(bytes.len()));
    }
    let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic));
    }
    if bytes[4] != WIRE_VERSION {
        return Err(ProtocolError::UnsupportedVersion(bytes[4]));
    }
    let kind = Kind::from_u8(bytes[5])?;
    let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    if flags & !flags::KNOWN != 0 {
        return Err(ProtocolError::UnknownFlags(flags));
    }
    if bytes[51..56].iter().any(|&b| b != 0) {
        return Err(ProtocolError::ReservedNotZero);
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let header = Header {
        kind,
        flags,
        error_code: bytes[50],
        message_id: MessageId(u64_at(8)),
        correlation_id: MessageId(u64_at(16)),
        sender: InstanceId::from_bytes(bytes[24..40].try_into().expect("16 bytes")),
        timeout_us: u64_at(40),
    };
    if header.message_id.0 == 0 || (kind.is_reply() && header.correlation_id.0 == 0) {
        return Err(ProtocolError::MissingId);
    }
    Ok(header)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
