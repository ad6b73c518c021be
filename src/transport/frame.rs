//! What goes out: a frame not yet encoded ([`OutFrame`]) and its payload
//! ([`PayloadRef`]), which the link encodes into its own buffer.

use std::fmt;

use crate::codec::{DoesNotFit, Payload};
use crate::error::Result;
use crate::wire::{self, Header};

/// A payload on its way out.
#[derive(Clone, Copy)]
pub enum PayloadRef<'a> {
    /// Bytes already encoded (raw payloads, replies).
    Bytes(&'a [u8]),
    /// A value archived straight into the transport's buffer when sent.
    Archive(&'a dyn Payload),
    /// Raw bytes in a [`Loan`](crate::Loan): sent in place by the link that
    /// lent it, copied like [`PayloadRef::Bytes`] by every other.
    Loan(&'a crate::Loan),
}

impl fmt::Debug for PayloadRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Archive(_) => f.write_str("Archive"),
            Self::Loan(l) => write!(f, "Loan({} bytes)", l.len()),
        }
    }
}

/// One frame to send, not yet encoded: the link encodes it into its own
/// buffer (a ring slot, a zmq message), archiving the payload in place.
#[derive(Clone, Copy, Debug)]
pub struct OutFrame<'a> {
    /// The header (its payload length is filled in when encoding).
    pub header: Header,
    /// Handler name (empty for replies and control frames).
    pub name: &'a str,
    /// The payload.
    pub payload: PayloadRef<'a>,
}

impl<'a> OutFrame<'a> {
    /// A frame with a byte payload.
    pub fn bytes(header: Header, name: &'a str, payload: &'a [u8]) -> Self {
        Self {
            header,
            name,
            payload: PayloadRef::Bytes(payload),
        }
    }

    /// The encoded size when it is known before encoding (byte payloads).
    pub fn exact_len(&self) -> Option<usize> {
        match self.payload {
            PayloadRef::Bytes(b) => Some(wire::frame_len(self.name.len(), b.len())),
            PayloadRef::Loan(l) => Some(wire::frame_len(self.name.len(), l.len())),
            PayloadRef::Archive(_) => None,
        }
    }

    /// Encodes the frame at the start of `dst` (which must be 16-byte aligned)
    /// and returns its length, or `DoesNotFit` if `dst` is too small.
    pub fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
        let offset = wire::payload_offset(self.name.len());
        if dst.len() < offset {
            return Err(DoesNotFit);
        }
        let payload_len = match self.payload {
            PayloadRef::Bytes(b) => copy_payload(b, &mut dst[offset..])?,
            PayloadRef::Loan(l) => copy_payload(l, &mut dst[offset..])?,
            PayloadRef::Archive(p) => p.encode_into(&mut dst[offset..])?,
        };
        wire::encode_head(&self.header, self.name, payload_len, dst);
        Ok(offset + payload_len)
    }

    /// Encodes the frame into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        Ok(match self.payload {
            PayloadRef::Bytes(b) => wire::encode_to_vec(&self.header, self.name, b),
            PayloadRef::Loan(l) => wire::encode_to_vec(&self.header, self.name, l),
            PayloadRef::Archive(p) => wire::encode_to_vec(&self.header, self.name, &p.encode()?),
        })
    }
}

/// Copies raw payload bytes to the start of `dst`.
fn copy_payload(bytes: &[u8], dst: &mut [u8]) -> Result<usize, DoesNotFit> {
    let room = dst.get_mut(..bytes.len()).ok_or(DoesNotFit)?;
    room.copy_from_slice(bytes);
    Ok(bytes.len())
}
