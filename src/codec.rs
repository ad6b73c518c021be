//! Payload encoding: rkyv archives, serialized on the caller's side and
//! validated (bytecheck) before anything touches them on the receiving side.

use bytes::Bytes;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use crate::error::{Error, Result};
use crate::wire::PAYLOAD_ALIGN;

/// rkyv serializer used for payloads.
pub type PayloadSerializer<'a> = HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>;

/// A value that can travel as a message payload.
///
/// Implemented for every type that derives rkyv's `Archive` + `Serialize`,
/// and for `str` (archived exactly like a `String`, so a handler taking
/// `String` accepts `.payload("text")`).
pub trait Payload {
    /// Serializes `self` into a fresh, 16-byte aligned archive.
    fn encode(&self) -> Result<AlignedVec>;
}

impl<T> Payload for T
where
    T: for<'a> rkyv::Serialize<PayloadSerializer<'a>>,
{
    fn encode(&self) -> Result<AlignedVec> {
        rkyv::to_bytes::<rancor::Error>(self).map_err(Error::codec)
    }
}

impl Payload for str {
    fn encode(&self) -> Result<AlignedVec> {
        self.to_owned().encode()
    }
}

/// A value that can be decoded from a validated payload archive.
pub trait Decode: Sized {
    /// Validates `bytes` as an archive of `Self` and deserializes it.
    fn decode(bytes: &[u8]) -> Result<Self>;
}

impl<T> Decode for T
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    fn decode(bytes: &[u8]) -> Result<Self> {
        with_aligned(bytes, |aligned| {
            rkyv::from_bytes::<T, rancor::Error>(aligned).map_err(Error::codec)
        })
    }
}

/// Runs `f` over `bytes` at a 16-byte aligned address, copying only when the
/// bytes are not aligned already (rkyv needs aligned archives).
pub fn with_aligned<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if (bytes.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) {
        f(bytes)
    } else {
        let mut copy = AlignedVec::<PAYLOAD_ALIGN>::with_capacity(bytes.len());
        copy.extend_from_slice(bytes);
        f(&copy)
    }
}

/// The body of an outgoing payload: nothing, shared bytes, or an aligned archive.
#[derive(Debug, Default, Clone)]
pub enum Body {
    /// No payload.
    #[default]
    Empty,
    /// Raw bytes.
    Bytes(Bytes),
    /// An rkyv archive.
    Archive(AlignedVec),
}

impl Body {
    /// The bytes to put on the wire.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::Bytes(b) => b,
            Self::Archive(a) => a.as_slice(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body is raw bytes rather than an archive.
    pub fn is_raw(&self) -> bool {
        matches!(self, Self::Bytes(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    struct Sample {
        id: u64,
        name: String,
        values: Vec<u32>,
    }

    #[test]
    fn str_payload_decodes_as_string() {
        let bytes = "hello world".encode().unwrap();
        assert_eq!(String::decode(&bytes).unwrap(), "hello world");
    }

    #[test]
    fn struct_round_trips_even_when_misaligned() {
        let value = Sample {
            id: 9,
            name: "x".into(),
            values: vec![1, 2, 3],
        };
        let bytes = value.encode().unwrap();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        assert_eq!(Sample::decode(&shifted[1..]).unwrap(), value);
    }

    #[test]
    fn garbage_is_a_codec_error_not_a_panic() {
        let bytes = Sample {
            id: 1,
            name: "abc".into(),
            values: vec![7],
        }
        .encode()
        .unwrap();
        let mut bad = bytes.to_vec();
        let n = bad.len();
        bad[n - 8..].fill(0xff);
        assert!(matches!(Sample::decode(&bad), Err(Error::Codec(_))));
        assert!(matches!(Sample::decode(&[1, 2, 3]), Err(Error::Codec(_))));
        assert!(<()>::decode(&[]).is_ok());
    }
}
