//! serde payloads: types that implement serde's `Serialize`/`Deserialize`
//! but not rkyv travel as JSON.
//!
//! Two ways in, because Rust has no specialization: every type deriving rkyv
//! is already a [`Payload`] through a blanket impl, and a second blanket impl
//! over serde types would overlap with it (every std type implements both).
//! - [`crate::json_payload!`]`(Event, Reply)` makes serde-only types of your
//!   crate payloads: `.payload(event)?`, `typed_unary_handler` over
//!   `TypedContext<Event>` and `.await_response::<Reply>()` then work as for
//!   rkyv types, with JSON on the wire.
//! - [`Json`]`(value)` wraps any serde value (a foreign type, or one that also
//!   derives rkyv) to send or receive it as JSON.
//!
//! JSON is written straight into the transport's buffer, like an rkyv
//! archive: no intermediate buffer on the send path. Decoding copies (JSON is
//! parsed into an owned value), where rkyv reads archives in place; the README
//! gives the measured difference.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Decode, DoesNotFit, Payload};
use crate::error::{Error, Result};
#[doc(hidden)]
pub use rkyv::util::AlignedVec;

/// Sends or receives `T` as JSON (serde), whatever else it implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: Serialize + Send + Sync> Payload for Json<T> {
    fn encode(&self) -> Result<AlignedVec> {
        encode(&self.0)
    }

    fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
        encode_into(&self.0, dst)
    }
}

impl<T: DeserializeOwned> Decode for Json<T> {
    fn decode(bytes: &[u8]) -> Result<Self> {
        decode(bytes).map(Json)
    }
}

/// Serializes `value` as JSON into a fresh buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<AlignedVec> {
    let mut out = AlignedVec::new();
    serde_json::to_writer(&mut out, value).map_err(|e| Error::Codec(e.to_string()))?;
    Ok(out)
}

/// Serializes `value` as JSON at the start of `dst` and returns its length.
///
/// `DoesNotFit` when `dst` is too small; a value serde cannot write as JSON
/// (a map with non-string keys) also reports `DoesNotFit`, as rkyv's failures
/// do, and the send fails with `Error::PayloadTooLarge`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
    let room = dst.len();
    let mut rest: &mut [u8] = dst;
    // `&mut [u8]` as a writer fails once full instead of growing.
    serde_json::to_writer(&mut rest, value).map_err(|_| DoesNotFit)?;
    Ok(room - rest.len())
}

/// Parses a JSON payload as `T`; bad input is an [`Error::Codec`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Codec(format!("JSON payload: {e}")))
}

/// Makes serde-only types (`Serialize + DeserializeOwned`, no rkyv) message
/// payloads and handler inputs/outputs, encoded as JSON.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Event {
///     id: u64,
/// }
/// active_message::json_payload!(Event);
/// ```
#[macro_export]
macro_rules! json_payload {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::Payload for $ty {
            fn encode(&self) -> $crate::Result<$crate::json::AlignedVec> {
                $crate::json::encode(self)
            }
            fn encode_into(
                &self,
                dst: &mut [u8],
            ) -> ::core::result::Result<usize, $crate::DoesNotFit> {
                $crate::json::encode_into(self, dst)
            }
        }
        impl $crate::Decode for $ty {
            fn decode(bytes: &[u8]) -> $crate::Result<Self> {
                $crate::json::decode(bytes)
            }
        }
    )+};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Event {
        id: u64,
        tags: Vec<String>,
    }
    crate::json_payload!(Event);

    fn event() -> Event {
        Event {
            id: 7,
            tags: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn writes_json_in_place_and_reads_it_back() {
        let mut slot = vec![0u8; 64];
        let n = event().encode_into(&mut slot).unwrap();
        assert_eq!(&slot[..n], br#"{"id":7,"tags":["a","b"]}"#);
        assert_eq!(&slot[..n], event().encode().unwrap().as_slice());
        assert_eq!(Event::decode(&slot[..n]).unwrap(), event());
    }

    #[test]
    fn a_short_slot_does_not_fit() {
        let mut slot = [0u8; 10];
        assert_eq!(event().encode_into(&mut slot), Err(DoesNotFit));
    }

    #[test]
    fn bad_or_foreign_bytes_are_codec_errors() {
        assert!(matches!(Event::decode(b"{\"id\":"), Err(Error::Codec(_))));
        // An rkyv archive sent to a JSON decoder: a clear codec error.
        let archived = 5u64.encode().unwrap();
        assert!(matches!(Event::decode(&archived), Err(Error::Codec(_))));
        assert!(matches!(
            <Json<Event>>::decode(b"[1,2]"),
            Err(Error::Codec(_))
        ));
    }

    #[test]
    fn the_wrapper_sends_a_type_that_is_also_rkyv_as_json() {
        let bytes = Json(vec![1u32, 2]).encode().unwrap();
        assert_eq!(bytes.as_slice(), b"[1,2]");
        assert_eq!(<Json<Vec<u32>>>::decode(&bytes).unwrap().0, vec![1, 2]);
    }
}
