//! Fuzzing on stable Rust: the wire decoder, the rkyv payload path and the
//! ring's record validation get random and mutated input for a time budget
//! (`AM_FUZZ_SECS` per target, default 2 s; `AM_FUZZ_SEED` replays a run).
//!
//! Each case asserts no panic, that whatever decodes is consistent with the
//! bytes it came from, and, through a counting global allocator, that no
//! input makes the decoder allocate beyond its cap.

#[path = "fuzz/alloc.rs"]
mod alloc;
#[path = "fuzz/mutate.rs"]
mod mutate;

use active_message::Decode;
use active_message::wire::{self, Header, Kind, flags};
use active_message::{InstanceId, MessageId};
use alloc::{CountingAlloc, Usage, measure};
use mutate::{Fuzz, mutate, random_bytes};
use rkyv::rancor;
use shm_ring::layout::{HEADER_SIZE, RECORD_HEADER_SIZE};
use shm_ring::{Bells, Consumer, Producer, Region, RegionLayout, RingConfig, init_ring};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Frame cap used by the wire target (the runtime's own default is 64 MiB;
/// a small one makes "too large" reachable by mutation).
const MAX_FRAME: usize = 4096;
/// Byte offsets of the wire header's length fields (name length is a u16 at
/// 48, but an 8-byte lie there also hits the error code and reserved bytes).
const WIRE_LEN_FIELDS: [usize; 2] = [48, 56];

const KINDS: [Kind; 10] = [
    Kind::OneWay,
    Kind::Confirm,
    Kind::Request,
    Kind::Ack,
    Kind::Response,
    Kind::Error,
    Kind::Receipt,
    Kind::Cancel,
    Kind::Heartbeat,
    Kind::Goodbye,
];

/// A valid frame of a random kind, with random flags, ids, name and payload.
fn valid_frame(rng: &mut fastrand::Rng) -> Vec<u8> {
    let kind = KINDS[rng.usize(..KINDS.len())];
    let mut header = Header::new(kind, MessageId(rng.u64(1..)), InstanceId::new_random());
    header.flags = rng.u16(..) & flags::KNOWN;
    header.correlation_id = MessageId(rng.u64(1..));
    header.timeout_us = rng.u64(..);
    header.error_code = if kind == Kind::Error { rng.u8(..) } else { 0 };
    let name: String = (0..rng.usize(..40)).map(|_| rng.alphanumeric()).collect();
    let payload = random_bytes(rng, 512);
    wire::encode_to_vec(&header, &name, &payload)
}

/// Checks a decoded frame against the bytes it came from.
fn check_decoded(bytes: &[u8], frame: &wire::FrameRef<'_>) {
    assert!(bytes.len() <= MAX_FRAME);
    assert_eq!(frame.payload_offset % wire::PAYLOAD_ALIGN, 0);
    assert_eq!(frame.payload_offset + frame.payload.len(), bytes.len());
    assert_eq!(frame.payload, &bytes[frame.payload_offset..]);
    // Re-encoding the decoded fields reproduces the header and the name.
    let mut again = vec![0u8; frame.payload_offset];
    wire::encode_head(&frame.header, frame.name, frame.payload.len(), &mut again);
    let name_end = wire::HEADER_LEN + frame.name.len();
    assert_eq!(again[..name_end], bytes[..name_end]);
}

#[test]
fn wire_decode_survives_random_and_mutated_frames() {
    let mut fuzz = Fuzz::new("wire");
    let mut decoded = 0u64;
    while fuzz.next_case(2_000) {
        let rng = &mut fuzz.rng;
        let mut bytes = valid_frame(rng);
        let good = wire::decode(&bytes, MAX_FRAME).expect("a valid frame decodes");
        check_decoded(&bytes, &good);
        match rng.u8(..8) {
            0 => bytes = random_bytes(rng, 256),
            1 => {
                // Random bytes behind a valid magic and version: reaches the field checks.
                let mut rest = random_bytes(rng, 256);
                rest.splice(0..rest.len().min(5), *b"AMSG\x01");
                bytes = rest;
            }
            _ => {
                let other = valid_frame(rng);
                mutate(rng, &mut bytes, &other, &WIRE_LEN_FIELDS);
            }
        }
        let (result, usage) = measure(|| wire::decode(&bytes, MAX_FRAME));
        // Decoding borrows from the input: not a single allocation, error or not.
        assert_eq!(usage, Usage::default(), "wire::decode allocated");
        if let Ok(frame) = result {
            check_decoded(&bytes, &frame);
            decoded += 1;
        }
    }
    // Both outcomes were reached (a mutation can leave a frame valid).
    assert!(decoded > 0 && decoded < fuzz.cases());
}

/// A typed payload with every shape a length field can lie about.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Sample {
    id: u64,
    name: String,
    values: Vec<u32>,
    tags: Vec<String>,
    blobs: Vec<Vec<u8>>,
    maybe: Option<String>,
}

fn sample(rng: &mut fastrand::Rng) -> Sample {
    let text = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(..24)).map(|_| rng.char(..)).collect()
    };
    Sample {
        id: rng.u64(..),
        name: text(rng),
        values: (0..rng.usize(..32)).map(|_| rng.u32(..)).collect(),
        tags: (0..rng.usize(..6)).map(|_| text(rng)).collect(),
        blobs: (0..rng.usize(..6)).map(|_| random_bytes(rng, 64)).collect(),
        maybe: rng.bool().then(|| text(rng)),
    }
}

/// Cap on what decoding `len` bytes may allocate: proportional to the input
/// (a `Vec<u8>` archived in 8 bytes becomes a 24-byte `Vec`), never to what a
/// length field claims.
fn codec_cap(len: usize) -> usize {
    4 * len + 4096
}

/// Decodes `bytes` both ways the runtime does: `Decode` (typed handlers) and
/// `rkyv::access` (the archived, zero-copy handler). Returns whether it decoded.
fn decode_both(bytes: &[u8]) -> bool {
    let owned = Sample::decode(bytes);
    // The runtime reads archives at a 16-byte aligned address (copying
    // first when they are not aligned); so does this.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let archived = rkyv::access::<ArchivedSample, rancor::Error>(&aligned).map(|a| a.name.len());
    // Both paths run the same validation: they agree on what is valid.
    assert_eq!(owned.is_ok(), archived.is_ok());
    if let (Ok(value), Ok(name_len)) = (&owned, archived) {
        assert_eq!(value.name.len(), name_len);
    }
    owned.is_ok()
}

#[test]
fn typed_payload_decoding_survives_random_and_mutated_archives() {
    let mut fuzz = Fuzz::new("codec");
    let mut decoded = 0u64;
    while fuzz.next_case(2_000) {
        let rng = &mut fuzz.rng;
        let value = sample(rng);
        let archive = rkyv::to_bytes::<rancor::Error>(&value).unwrap();
        assert_eq!(Sample::decode(&archive).unwrap(), value);
        let mut bytes = archive.to_vec();
        if rng.u8(..8) == 0 {
            bytes = random_bytes(rng, 512);
        } else {
            let other = rkyv::to_bytes::<rancor::Error>(&sample(rng)).unwrap();
            mutate(rng, &mut bytes, &other, &[]);
        }
        // Misaligned on purpose now and then: the copy-to-aligned path runs too.
        let shift = usize::from(rng.u8(..4) == 0);
        let mut buffer = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len() + 1);
        buffer.resize(shift, 0);
        buffer.extend_from_slice(&bytes);
        let input = &buffer[shift..];
        let (ok, usage) = measure(|| decode_both(input));
        let cap = codec_cap(input.len());
        assert!(
            usage.largest <= cap,
            "{usage:?} over {cap} for {} bytes",
            input.len()
        );
        assert!(usage.peak_live <= 2 * cap as isize, "{usage:?}");
        assert_eq!(usage.net, 0, "decoding leaked: {usage:?}");
        decoded += u64::from(ok);
    }
    assert!(decoded > 0 && decoded < fuzz.cases());
}

const RING_CAP: usize = 1024;
const RING_MAX_RECORD: usize = 256;
/// Offsets of the ring header's tail and head words (`shm_ring::layout`).
const TAIL: usize = 128;
const HEAD: usize = 256;

fn attach(region: &std::sync::Arc<Region>) -> Option<(Producer, Consumer)> {
    let bells = Bells::new().unwrap();
    let producer = Producer::attach(region, 0, bells.clone()).ok()?;
    let consumer = Consumer::attach(region, 0, bells).ok()?;
    Some((producer, consumer))
}

/// Overwrites `bytes` at `at` in the region (single-threaded: no grant is live).
fn scribble(region: &Region, at: usize, bytes: &[u8]) {
    let len = bytes.len().min(region.len().saturating_sub(at));
    // SAFETY: `at + len <= region.len()`, the region is alive, and no other
    // thread or outstanding grant accesses it while the test writes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.as_ptr().add(at), len) }
}

/// Reads records until the ring is empty or reports corruption; every payload
/// handed out must lie inside the data area and respect the record cap.
fn drain(region: &Region, consumer: &mut Consumer) -> usize {
    let data = region.as_ptr() as usize + HEADER_SIZE;
    let mut read = 0;
    for _ in 0..2 * RING_CAP / RECORD_HEADER_SIZE {
        let Ok(grant) = consumer.try_read() else {
            break;
        };
        let payload = grant.payload();
        let start = payload.as_ptr() as usize;
        assert!(payload.len() <= RING_MAX_RECORD);
        // (An empty record at the buffer's last slot points at offset 0: harmless.)
        assert!(
            payload.is_empty()
                || (start >= data + RECORD_HEADER_SIZE && start + payload.len() <= data + RING_CAP),
            "payload of {} bytes at data offset {}",
            payload.len(),
            start as isize - data as isize
        );
        assert_eq!(grant.to_vec(), payload);
        grant.release();
        read += 1;
    }
    read
}

#[test]
fn ring_reads_survive_scribbled_headers_and_records() {
    let mut fuzz = Fuzz::new("ring");
    let cfg = RingConfig::new(RING_CAP)
        .unwrap()
        .with_max_record(RING_MAX_RECORD)
        .unwrap();
    let (mut served, mut refused) = (0u64, 0u64);
    while fuzz.next_case(1_000) {
        let rng = &mut fuzz.rng;
        let region = Region::heap(RegionLayout::new(&[cfg]).size()).unwrap();
        init_ring(&region, 0, cfg).unwrap();
        let (mut producer, mut consumer) = attach(&region).unwrap();
        // Some traffic first, so indices wrap and PAD records exist.
        for _ in 0..rng.usize(..40) {
            let record = random_bytes(rng, RING_MAX_RECORD);
            if producer.try_push(&record).is_err() {
                drain(&region, &mut consumer);
            }
        }
        consumer.publish();
        for _ in 0..rng.usize(1..=4) {
            let junk = random_bytes(rng, 24);
            let at = match rng.u8(..4) {
                0 => [TAIL, HEAD][rng.usize(..2)],
                1 => rng.usize(..HEADER_SIZE),
                _ => HEADER_SIZE + (rng.usize(..RING_CAP) & !15),
            };
            scribble(&region, at, &junk);
        }
        let ((), usage) = measure(|| {
            let read = drain(&region, &mut consumer);
            let _ = producer.try_push(&[7; 32]);
            // A fresh attach re-validates the scribbled header from scratch.
            if let Some((_, mut fresh)) = attach(&region) {
                drain(&region, &mut fresh);
            }
            if read > 0 { served += 1 } else { refused += 1 }
        });
        // Reading copies out at most one record at a time (`to_vec`); the
        // fresh attach allocates its doorbells, nothing sized by the ring.
        assert!(usage.largest <= RING_MAX_RECORD.max(1024), "{usage:?}");
        assert_eq!(usage.net, 0, "ring reads leaked: {usage:?}");
    }
    assert!(
        served > 0 && refused > 0,
        "{served} served, {refused} refused"
    );
}
