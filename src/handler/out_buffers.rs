//! Reused buffers for handlers' archived outputs.
//!
//! A typed handler's output is archived into a buffer the reply is then
//! copied from (into the ring slot or the zmq message). Allocating that
//! buffer for every call was the one allocation per request left on the
//! serving side once the handler itself had finished in place; here it comes
//! from a small per-thread free list, and the dispatcher gives it back once
//! the reply has been sent.

use std::cell::RefCell;

use crate::codec::{AlignedVec, Body, Payload};
use crate::handler::HandlerError;

/// Buffers kept per thread.
const KEPT: usize = 4;
/// Larger buffers are freed rather than kept (a rare huge answer must not
/// pin its memory).
const KEEP_UP_TO: usize = 64 * 1024;
/// First size of a fresh buffer.
const FIRST: usize = 1024;

thread_local! {
    static FREE: RefCell<Vec<AlignedVec>> = const { RefCell::new(Vec::new()) };
}

/// Archives `value` into a reused buffer.
pub(crate) fn encode<O: Payload>(value: &O) -> Result<Body, HandlerError> {
    let mut buf = FREE
        .try_with(|free| free.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut room = buf.capacity().max(FIRST);
    loop {
        buf.resize(room, 0);
        match value.encode_into(&mut buf) {
            Ok(len) => {
                buf.resize(len, 0);
                return Ok(Body::Archive(buf));
            }
            // Past the keeping limit, let the archiver size the buffer itself.
            Err(_) if room >= KEEP_UP_TO => {
                return value.encode().map(Body::Archive).map_err(|e| {
                    HandlerError::codec(format!("encoding the handler's output: {e}"))
                });
            }
            Err(_) => room *= 2,
        }
    }
}

/// Takes back the buffer of a body whose bytes have been sent.
pub(crate) fn recycle(body: Body) {
    let Body::Archive(mut buf) = body else {
        return;
    };
    if buf.capacity() > KEEP_UP_TO {
        return;
    }
    buf.clear();
    // A thread being torn down just frees it.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEPT {
            free.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_of_any_size_archive_exactly_and_buffers_come_back() {
        for len in [100_000usize, 0, 64, 3000] {
            let value = vec![7u8; len];
            let body = encode(&value).expect("encodes");
            let reference = value.encode().expect("encodes");
            assert_eq!(body.as_slice(), reference.as_slice(), "len {len}");
            recycle(body);
        }
        let kept = FREE.with(|free| free.borrow().len());
        assert!((1..=KEPT).contains(&kept), "{kept} buffers kept");
        let before = FREE.with(|free| free.borrow().len());
        let body = encode(&[1u8; 8]).unwrap();
        assert_eq!(FREE.with(|free| free.borrow().len()), before - 1);
        recycle(body);
        assert_eq!(FREE.with(|free| free.borrow().len()), before);
    }
}
