//! Encoding a frame whose size is unknown until its payload is archived (a
//! typed request or response) into a zmq message without a heap allocation
//! per frame: the archive goes into a per-thread aligned scratch buffer,
//! which grows once to the largest frame seen and is reused, and is copied
//! from there into the message (libzmq's own buffer).

use std::cell::RefCell;

use rkyv::util::AlignedVec;

use crate::transport::OutFrame;
use crate::wire::PAYLOAD_ALIGN;

/// First size of the scratch buffer.
const FIRST: usize = 4096;

thread_local! {
    static SCRATCH: RefCell<AlignedVec<PAYLOAD_ALIGN>> = RefCell::new(AlignedVec::new());
}

/// Encodes `frame` into a new zmq message, or returns `None` when it does
/// not fit in `max` bytes (the caller then learns its size the slow way).
pub(super) fn encode(frame: &OutFrame<'_>, max: usize) -> Option<zmq::Message> {
    SCRATCH.with_borrow_mut(|buf| {
        let mut room = buf.len().clamp(FIRST.min(max), max);
        loop {
            if buf.len() < room {
                buf.resize(room, 0);
            }
            match frame.encode_into(&mut buf[..room]) {
                Ok(len) => return Some(zmq::Message::from(&buf[..len])),
                Err(_) if room >= max => return None,
                Err(_) => room = room.saturating_mul(2).min(max),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, MessageId};
    use crate::transport::PayloadRef;
    use crate::wire::{self, Header, Kind};

    fn frame(value: &Vec<u8>) -> OutFrame<'_> {
        let mut header = Header::new(Kind::Response, MessageId(7), InstanceId::new_random());
        header.correlation_id = MessageId(3);
        OutFrame {
            header,
            name: "",
            payload: PayloadRef::Archive(value),
        }
    }

    #[test]
    fn archives_of_any_size_up_to_the_limit_encode_exactly() {
        for len in [0usize, 64, 5000, 70_000] {
            let value = vec![3u8; len];
            let f = frame(&value);
            let msg = encode(&f, 1 << 20).expect("fits");
            assert_eq!(&msg[..], &f.to_vec().unwrap()[..], "len {len}");
            let view = wire::decode(&msg, 1 << 20).unwrap();
            assert_eq!(view.header.message_id, MessageId(7));
        }
    }

    #[test]
    fn a_frame_over_the_limit_does_not_encode() {
        let value = vec![3u8; 10_000];
        assert!(encode(&frame(&value), 8192).is_none());
    }
}
