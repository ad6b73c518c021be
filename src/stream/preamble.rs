//! The 16-byte preamble opening a `STREAM` request's payload:
//! `u32` LE initial window (items, 1..=`MAX_WINDOW`), then 12 zero bytes.
//! Sixteen bytes keep the user's archive after it 16-byte aligned.

use crate::handler::PayloadBuf;

use crate::codec::{AlignedVec, DoesNotFit, Payload};
use crate::error::Result;
use crate::stream::MAX_WINDOW;
use crate::transport::PayloadRef;

/// Size of the preamble.
pub(crate) const LEN: usize = 16;

fn bytes(window: u32) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..4].copy_from_slice(&window.to_le_bytes());
    out
}

/// Splits a received `STREAM` payload into its window and the user's
/// payload; `None` when the preamble is short, its window out of range, or
/// its reserved bytes not zero.
pub(crate) fn split(payload: PayloadBuf) -> Option<(u32, PayloadBuf)> {
    let head = payload.get(..LEN)?;
    let window = u32::from_le_bytes(head[..4].try_into().ok()?);
    let valid = (1..=MAX_WINDOW).contains(&window) && head[4..].iter().all(|&b| b == 0);
    valid.then(|| (window, payload.slice(LEN..)))
}

/// The user's payload behind a preamble, archived straight into the
/// transport's buffer like any payload.
pub(crate) struct Preambled<'a> {
    pub(crate) window: u32,
    pub(crate) inner: PayloadRef<'a>,
}

impl Payload for Preambled<'_> {
    fn encode(&self) -> Result<AlignedVec> {
        let mut out = AlignedVec::new();
        out.extend_from_slice(&bytes(self.window));
        match self.inner {
            PayloadRef::Bytes(b) => out.extend_from_slice(b),
            // A loan behind a preamble is copied (its bytes move by 16).
            PayloadRef::Loan(l) => out.extend_from_slice(&l[..]),
            PayloadRef::Archive(p) => out.extend_from_slice(&p.encode()?),
        }
        Ok(out)
    }

    fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
        let (head, rest) = dst.split_at_mut_checked(LEN).ok_or(DoesNotFit)?;
        head.copy_from_slice(&bytes(self.window));
        let mut copy = |b: &[u8]| -> Result<usize, DoesNotFit> {
            rest.get_mut(..b.len())
                .ok_or(DoesNotFit)?
                .copy_from_slice(b);
            Ok(b.len())
        };
        let len = match self.inner {
            PayloadRef::Bytes(b) => copy(b)?,
            PayloadRef::Loan(l) => copy(&l[..])?,
            // `rest` starts 16 bytes after an aligned start: still aligned.
            PayloadRef::Archive(p) => p.encode_into(rest)?,
        };
        Ok(LEN + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_preambles() {
        let p = Preambled {
            window: 8,
            inner: PayloadRef::Bytes(b"abc"),
        };
        let encoded = PayloadBuf::from(p.encode().unwrap().to_vec());
        assert_eq!(&encoded[..4], &8u32.to_le_bytes());
        let (window, rest) = split(encoded.clone()).unwrap();
        assert_eq!((window, &rest[..]), (8, &b"abc"[..]));
        let mut slot = vec![0u8; 19];
        assert_eq!(p.encode_into(&mut slot), Ok(19));
        assert_eq!(slot, encoded);
        assert_eq!(p.encode_into(&mut [0u8; 18]), Err(DoesNotFit));
        assert!(split(encoded.slice(..15)).is_none());
        let mut zero = encoded.to_vec();
        zero[..4].fill(0);
        assert!(split(PayloadBuf::from(zero)).is_none());
        let mut reserved = encoded.to_vec();
        reserved[9] = 1;
        assert!(split(PayloadBuf::from(reserved)).is_none());
        let mut huge = encoded.to_vec();
        huge[..4].copy_from_slice(&(MAX_WINDOW + 1).to_le_bytes());
        assert!(split(PayloadBuf::from(huge)).is_none());
    }
}
