//! Payload encoding: rkyv archives, serialized on the caller's side and
//! validated (bytecheck) before anything touches them on the receiving side.

use std::sync::Arc;

use bytes::Bytes;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::Arena;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::writer::Buffer;
pub(crate) use rkyv::util::AlignedVec;

use crate::error::{Error, Result};
use crate::wire::PAYLOAD_ALIGN;

/// rkyv serializer writing into a growable aligned vector.
pub(crate) type PayloadSerializer<'a> = HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>;
/// rkyv serializer writing into a fixed slice (a ring slot, a pooled
/// buffer). Its error is `rancor::Failure`, which carries nothing: a failed
/// attempt only ever means [`DoesNotFit`] (the caller retries larger), and
/// `rancor::Error` would box a message for each one (an allocation per
/// attempt: five per large archive, sized up record by record).
pub(crate) type SlotSerializer<'a, 'b> =
    HighSerializer<Buffer<'b>, ArenaHandle<'a>, rancor::Failure>;

/// The destination slice was too small for the archive (or archiving failed:
/// [`Payload::encode`] tells which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoesNotFit;

/// A value that can travel as a message payload.
///
/// Implemented for every type that derives rkyv's `Archive` + `Serialize`
/// (`str` is archived as a `String`), and as JSON for serde types through
/// [`crate::json_payload!`] and [`crate::json::Json`]. Object-safe: the send path holds a
/// `&dyn Payload` and archives it straight into the transport's buffer.
pub trait Payload: Send + Sync {
    /// Serializes `self` into a fresh, 16-byte aligned archive.
    fn encode(&self) -> Result<AlignedVec>;
    /// Serializes `self` into `dst` (which must start 16-byte aligned) and
    /// returns the archive's length.
    fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit>;

    /// [`encode_into`](Self::encode_into) with the serializer's scratch
    /// space in `arena`, kept by the caller from one payload to the next (a
    /// link's sender): the same bytes, without the thread-local arena's
    /// take, shrink and put back per payload.
    #[doc(hidden)]
    fn encode_into_with(&self, dst: &mut [u8], arena: &mut Arena) -> Result<usize, DoesNotFit> {
        let _ = arena;
        self.encode_into(dst)
    }
}

impl<T> Payload for T
where
    T: Send + Sync,
    T: for<'a> rkyv::Serialize<PayloadSerializer<'a>>,
    T: for<'a, 'b> rkyv::Serialize<SlotSerializer<'a, 'b>>,
{
    fn encode(&self) -> Result<AlignedVec> {
        rkyv::to_bytes::<rancor::Error>(self).map_err(Error::codec)
    }

    fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
        debug_assert!((dst.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN));
        rkyv::api::high::to_bytes_in::<_, rancor::Failure>(self, Buffer::from(dst))
            .map(|written| written.len())
            .map_err(|_| DoesNotFit)
    }

    fn encode_into_with(&self, dst: &mut [u8], arena: &mut Arena) -> Result<usize, DoesNotFit> {
        debug_assert!((dst.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN));
        let dst = Buffer::from(dst);
        rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Failure>(self, dst, arena.acquire())
            .map(|written| written.len())
            .map_err(|_| DoesNotFit)
    }
}

/// A `str` archived exactly like a `String` (no allocation), so a handler
/// taking `String` accepts `.payload("text")`.
#[derive(Clone, Copy, Debug)]
pub struct StrPayload<'a>(pub &'a str);

impl rkyv::Archive for StrPayload<'_> {
    type Archived = rkyv::string::ArchivedString;
    type Resolver = rkyv::string::StringResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::string::ArchivedString::resolve_from_str(self.0, resolver, out);
    }
}

impl<S> rkyv::Serialize<S> for StrPayload<'_>
where
    S: rancor::Fallible + ?Sized,
    S::Error: rancor::Source,
    str: rkyv::SerializeUnsized<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::string::ArchivedString::serialize_from_str(self.0, serializer)
    }
}

/// What `.payload(&x)` accepts by reference: every [`Payload`] type, and `str`.
pub trait PayloadSource {
    /// The payload to archive when the message is sent.
    fn payload_ref(&self) -> PayloadValue<'_>;
}

/// A payload value as the builder holds it, ready to be archived.
#[derive(Clone)]
pub enum PayloadValue<'a> {
    /// A borrowed value of a [`Payload`] type (zero-copy: archived straight
    /// into the transport's buffer).
    Value(&'a dyn Payload),
    /// A string.
    Str(StrPayload<'a>),
    /// A value given by value: moved into one shared allocation (never
    /// encoded twice), archived into the transport's buffer like a borrowed one.
    Owned(Arc<dyn Payload + 'a>),
}

impl PayloadValue<'_> {
    /// The value as a [`Payload`].
    pub fn as_dyn(&self) -> &dyn Payload {
        match self {
            Self::Value(v) => *v,
            Self::Str(s) => s,
            Self::Owned(v) => v.as_ref(),
        }
    }
}

impl<T: Payload> PayloadSource for T {
    fn payload_ref(&self) -> PayloadValue<'_> {
        PayloadValue::Value(self)
    }
}

impl PayloadSource for str {
    fn payload_ref(&self) -> PayloadValue<'_> {
        PayloadValue::Str(StrPayload(self))
    }
}

/// Marker for [`IntoPayload`]: the payload is borrowed (`&T`, `&str`).
#[derive(Debug)]
pub enum ByRef {}

/// Marker for [`IntoPayload`]: the payload is moved in (`T`, `String`, `Vec<u8>`).
#[derive(Debug)]
pub enum ByValue {}

/// What `.payload(x)` accepts: `&T` and `&str` (borrowed, zero-copy) or a
/// [`Payload`] value `T` (moved). `M` ([`ByRef`] or [`ByValue`]) is inferred;
/// it only keeps the two impls apart.
pub trait IntoPayload<'a, M> {
    /// The value as the builder holds it.
    fn into_payload_value(self) -> PayloadValue<'a>;
}

impl<'a, T: PayloadSource + ?Sized> IntoPayload<'a, ByRef> for &'a T {
    fn into_payload_value(self) -> PayloadValue<'a> {
        self.payload_ref()
    }
}

impl<'a, T: Payload + 'a> IntoPayload<'a, ByValue> for T {
    fn into_payload_value(self) -> PayloadValue<'a> {
        PayloadValue::Owned(Arc::new(self))
    }
}

/// `R: SameType<T>` holds only when `R` and `T` are one type: it ties
/// `.await_response::<T>()` to `.expect_response::<R>()` (a mismatch does not
/// compile) and lets `T` be inferred from `R` when no turbofish is written.
pub trait SameType<T>: sealed::Sealed<T> {}

impl<T> SameType<T> for T {}

mod sealed {
    pub trait Sealed<T> {}
    impl<T> Sealed<T> for T {}
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
pub(crate) fn with_aligned<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
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
        let bytes = StrPayload("hello world").encode().unwrap();
        assert_eq!(
            bytes.as_slice(),
            String::from("hello world").encode().unwrap().as_slice()
        );
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
    fn encodes_straight_into_a_slot_or_reports_it_does_not_fit() {
        let value = Sample {
            id: 3,
            name: "slot".into(),
            values: vec![4, 5],
        };
        let mut slot = AlignedVec::<16>::with_capacity(256);
        slot.resize(256, 0);
        let n = value.encode_into(&mut slot).unwrap();
        assert_eq!(&slot[..n], value.encode().unwrap().as_slice());
        assert_eq!(Sample::decode(&slot[..n]).unwrap(), value);
        assert_eq!(value.encode_into(&mut slot[..8]), Err(DoesNotFit));
    }

    #[test]
    fn a_kept_arena_archives_the_same_bytes_payload_after_payload() {
        let mut arena = Arena::new();
        let mut slot = AlignedVec::<16>::with_capacity(4096);
        slot.resize(4096, 0);
        for i in 0..50u32 {
            let value = Sample {
                id: u64::from(i),
                name: "x".repeat(i as usize),
                values: (0..i * 10).collect(),
            };
            let n = value.encode_into_with(&mut slot, &mut arena).unwrap();
            assert_eq!(&slot[..n], value.encode().unwrap().as_slice());
            assert_eq!(
                value.encode_into_with(&mut slot[..8], &mut arena),
                Err(DoesNotFit)
            );
        }
    }

    #[test]
    fn borrowed_payloads_stay_borrowed_and_owned_ones_are_moved_not_encoded() {
        let value = Sample {
            id: 4,
            name: "zero-copy".into(),
            values: vec![1],
        };
        let by_ref = IntoPayload::into_payload_value(&value);
        let PayloadValue::Value(borrowed) = &by_ref else {
            panic!("a borrowed payload must stay a borrow");
        };
        // The very value the caller holds, archived only when the frame is written.
        assert!(std::ptr::addr_eq(*borrowed as *const dyn Payload, &value));
        let expected = value.encode().unwrap();
        drop(by_ref);
        let by_value = IntoPayload::into_payload_value(value);
        assert!(matches!(by_value, PayloadValue::Owned(_)));
        assert_eq!(
            by_value.as_dyn().encode().unwrap().as_slice(),
            expected.as_slice()
        );
        assert!(matches!(
            IntoPayload::into_payload_value("text"),
            PayloadValue::Str(_)
        ));
        let owned = IntoPayload::into_payload_value(String::from("text"));
        assert_eq!(
            owned.as_dyn().encode().unwrap().as_slice(),
            StrPayload("text").encode().unwrap().as_slice()
        );
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
