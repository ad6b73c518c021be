//! A call's reply payload: a slice of a frame that is already shared, or a
//! copy into a recycled, aligned buffer (kept boundedly for the next reply);
//! and an `Error` frame turned into the caller's error.

use rkyv::util::AlignedVec;

use crate::error::Error;
use crate::handler::PayloadBuf;
use crate::wire::{ErrorCode, PAYLOAD_ALIGN};

/// A reply payload buffer, aligned so archives are read in place.
pub(crate) type ReplyBuf = AlignedVec<PAYLOAD_ALIGN>;

/// Reply buffers kept for reuse, at most.
pub(super) const SPARE_BUFFERS: usize = 64;
/// Reply buffers larger than this are freed rather than kept.
const SPARE_MAX_CAPACITY: usize = 64 * 1024;

/// The payload of a successful reply.
pub(crate) enum Reply {
    /// An `Ack`: nothing.
    Empty,
    /// A copy in a recycled buffer (hand it back with [`super::PendingTable::recycle`]).
    Pooled(ReplyBuf),
    /// A slice of a frame that is already shared (a mapped large frame).
    Shared(PayloadBuf),
}

impl Reply {
    /// The payload bytes (16-byte aligned for `Pooled`).
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::Pooled(buf) => buf.as_slice(),
            Self::Shared(bytes) => bytes,
        }
    }
}

pub(super) fn keep_spare(spare: &mut Vec<ReplyBuf>, mut buf: ReplyBuf) {
    if spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_MAX_CAPACITY {
        buf.clear();
        spare.push(buf);
    }
}

/// The reply payload: a slice of a shared frame, else a copy into a spare buffer.
pub(super) fn reply_of(
    payload: &[u8],
    shared: Option<&PayloadBuf>,
    spare: &mut Vec<ReplyBuf>,
) -> Reply {
    match shared {
        // The payload must lie inside the frame's memory to be sliced out.
        Some(frame) if within(frame, payload) => {
            let start = (payload.as_ptr() as usize).saturating_sub(frame.as_ptr() as usize);
            Reply::Shared(frame.slice(start..start + payload.len()))
        }
        _ => {
            let mut buf = spare.pop().unwrap_or_default();
            buf.extend_from_slice(payload);
            Reply::Pooled(buf)
        }
    }
}

/// Turns an `Error` frame into the caller's error.
pub(crate) fn remote_error(code: u8, payload: &[u8]) -> Error {
    let text = String::from_utf8_lossy(payload).into_owned();
    match ErrorCode::from_u8(code) {
        ErrorCode::NoSuchHandler => Error::NoSuchHandler(text),
        ErrorCode::Handler | ErrorCode::Internal => Error::Handler(text),
        ErrorCode::Refused | ErrorCode::TooLarge => Error::Refused(text),
        ErrorCode::ShuttingDown => Error::ShuttingDown,
        ErrorCode::Codec => Error::Codec(text),
    }
}

/// Whether `part` lies inside `whole`'s memory.
fn within(whole: &[u8], part: &[u8]) -> bool {
    let range = whole.as_ptr_range();
    let inner = part.as_ptr_range();
    part.is_empty() || (range.start <= inner.start && inner.end <= range.end)
}
