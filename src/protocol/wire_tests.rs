//! Unit tests of the envelope: round trips, payload alignment, and every
//! malformed header refused without a panic.

use super::*;

fn sample() -> Header {
    let mut h = Header::new(Kind::Request, MessageId(7), InstanceId::new_random());
    h.flags = flags::RECEIPT;
    h.timeout_us = 1_500_000;
    h
}

#[test]
fn round_trips_and_aligns_the_payload() {
    let h = sample();
    let frame = encode_to_vec(&h, "echo", b"hello");
    assert_eq!(frame.len(), HEADER_LEN + 16 + 5);
    let f = decode(&frame, 1 << 20).unwrap();
    assert_eq!(f.header, h);
    assert_eq!(f.name, "echo");
    assert_eq!(f.payload, b"hello");
    assert_eq!(f.payload_offset % PAYLOAD_ALIGN, 0);
}

#[test]
fn rejects_every_malformed_header_without_panicking() {
    let good = encode_to_vec(&sample(), "echo", b"hello");
    assert!(matches!(
        decode(&good[..10], 1 << 20),
        Err(ProtocolError::Truncated(10))
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(ProtocolError::BadMagic(_))
    ));
    let mut bad = good.clone();
    bad[4] = 99;
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(ProtocolError::UnsupportedVersion(99))
    ));
    let mut bad = good.clone();
    bad[5] = 200;
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(ProtocolError::UnknownKind(200))
    ));
    let mut bad = good.clone();
    bad[7] = 0x80;
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(ProtocolError::UnknownFlags(_))
    ));
    let mut bad = good.clone();
    bad[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(ProtocolError::LengthMismatch { .. })
    ));
    let mut bad = good.clone();
    bad[48..50].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(
        decode(&bad, 1 << 20),
        Err(ProtocolError::LengthMismatch { .. })
    ));
    let mut bad = good.clone();
    bad[64] = 0xff;
    assert!(matches!(decode(&bad, 1 << 20), Err(ProtocolError::BadName)));
    assert!(matches!(
        decode(&good, 16),
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn replies_need_a_correlation_id() {
    let h = Header::new(Kind::Response, MessageId(3), InstanceId::nil());
    let frame = encode_to_vec(&h, "", b"");
    assert_eq!(decode(&frame, 1024).unwrap_err(), ProtocolError::MissingId);
}
