//! Hostile values in every header and record-header field give an error, never a panic
//! and never an out-of-bounds access.
#![cfg(not(loom))] // loom primitives only work inside loom models (tests/loom.rs)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

use proptest::prelude::*;
use shm_ring::{
    Bells, Consumer, Producer, Region, RingConfig, RingError, init_ring, layout::HEADER_SIZE,
};

const CAP: usize = 1024;
const MAX: usize = 256;
// Byte offsets inside the ring header (asserted at compile time in the crate).
const MAGIC: usize = 0;
const VERSION: usize = 8;
const CAPACITY: usize = 16;
const MAX_RECORD: usize = 24;
const TAIL: usize = 128;
const HEAD: usize = 256;

fn region() -> Arc<Region> {
    let region = Region::heap(4096).unwrap();
    let cfg = RingConfig::new(CAP).unwrap().with_max_record(MAX).unwrap();
    init_ring(&region, 0, cfg).unwrap();
    region
}

fn word(region: &Region, off: usize) -> &AtomicU64 {
    assert!(off.is_multiple_of(8) && off + 8 <= region.len());
    // SAFETY: aligned, in bounds, and the region outlives the returned reference.
    unsafe { AtomicU64::from_ptr(region.as_ptr().add(off).cast()) }
}

fn put(region: &Region, off: usize, v: u64) {
    word(region, off).store(v, SeqCst);
}

fn put32(region: &Region, off: usize, v: u32) {
    // SAFETY: 4-aligned and in bounds (header offsets above).
    unsafe { AtomicU32::from_ptr(region.as_ptr().add(off).cast()) }.store(v, SeqCst);
}

fn attach(region: &Arc<Region>) -> (Result<Producer, RingError>, Result<Consumer, RingError>) {
    let bells = Bells::new().unwrap();
    (
        Producer::attach(region, 0, bells.clone()),
        Consumer::attach(region, 0, bells),
    )
}

fn is_corrupt<T>(r: Result<T, RingError>, field: &str) -> bool {
    matches!(r, Err(RingError::Corrupt { field: f, .. }) if f == field)
}

fn is_bad_layout<T>(r: Result<T, RingError>) -> bool {
    matches!(r, Err(RingError::BadLayout { .. }))
}

#[test]
fn attach_rejects_hostile_headers() {
    let cases: [(usize, u64); 9] = [
        (MAGIC, 0x1234),
        (CAPACITY, 1000),    // not a power of two
        (CAPACITY, 0),       // zero
        (CAPACITY, 64),      // below the minimum
        (CAPACITY, 1 << 40), // above the maximum
        (CAPACITY, 1 << 13), // larger than the mapping
        (MAX_RECORD, (CAP / 2) as u64),
        (MAX_RECORD, u64::MAX),
        (CAPACITY, u64::MAX),
    ];
    for (off, v) in cases {
        let r = region();
        put(&r, off, v);
        let (p, c) = attach(&r);
        assert!(
            is_bad_layout(p) && is_bad_layout(c),
            "field at {off} = {v:#x}"
        );
    }
    let r = region();
    put32(&r, VERSION, 0);
    assert!(is_bad_layout(attach(&r).0));
    put32(&r, VERSION, 2);
    assert!(matches!(
        attach(&r).1,
        Err(RingError::VersionMismatch { found: 2, .. })
    ));
}

#[test]
fn attach_rejects_bad_offsets_and_indices() {
    let r = region();
    let bells = Bells::new().unwrap();
    for off in [64, 4096, usize::MAX - 127, 3584] {
        assert!(is_bad_layout(Consumer::attach(&r, off, bells.clone())));
    }
    put(&r, HEAD, 64); // head ahead of tail
    assert!(is_corrupt(
        Producer::attach(&r, 0, bells.clone()),
        "tail at attach"
    ));
    put(&r, HEAD, 8); // misaligned head
    assert!(is_corrupt(
        Consumer::attach(&r, 0, bells.clone()),
        "head at attach"
    ));
    // A failed attach does not leave the side claimed.
    put(&r, HEAD, 0);
    let p = Producer::attach(&r, 0, bells.clone()).unwrap();
    assert!(matches!(
        Producer::attach(&r, 0, bells),
        Err(RingError::AlreadyAttached { .. })
    ));
    drop(p);
}

#[test]
fn consumer_rejects_hostile_tails() {
    for tail in [CAP as u64 + 16, u64::MAX - 15, 8, 1 << 40] {
        let r = region();
        let (_p, c) = attach(&r);
        let mut c = c.unwrap();
        put(&r, TAIL, tail);
        assert!(is_corrupt(c.try_read(), "tail"), "tail {tail:#x}");
        assert!(is_corrupt(c.read_blocking(None), "tail"));
    }
}

#[test]
fn producer_rejects_hostile_heads() {
    // Behind the last seen head, past the tail, far ahead, misaligned.
    for head in [u64::MAX - 15, 16 * 1000, 1 << 40, 8] {
        let r = region();
        let (p, _c) = attach(&r);
        let mut p = p.unwrap();
        // Fill the ring so the producer must reload the head.
        while p.try_push(&[1; MAX]).is_ok() {}
        put(&r, HEAD, head);
        assert!(is_corrupt(p.try_reserve(MAX), "head"), "head {head:#x}");
    }
}

/// Commits one record of `len` bytes at position 0 and returns the region and consumer.
fn one_record(len: usize) -> (Arc<Region>, Producer, Consumer) {
    let r = region();
    let (p, c) = attach(&r);
    let (mut p, c) = (p.unwrap(), c.unwrap());
    p.try_push(&vec![7; len]).unwrap();
    (r, p, c)
}

#[test]
fn consumer_rejects_hostile_record_headers() {
    let data = HEADER_SIZE;
    let w0 = |len: u64, kind: u64| len | kind << 32;
    let cases = [
        (w0(u32::MAX as u64, 1), 0, "record.len"), // huge length
        (w0(MAX as u64 + 1, 1), 0, "record.len"),  // above max_record
        (w0(100, 1), 0, "record.len beyond tail"), // past the published tail
        (w0(32, 0), 0, "record.kind"),             // kind 0 (never written)
        (w0(32, 3), 0, "record.kind"),             // unknown kind
        (w0(32, 0xffff), 0, "record.kind"),        // unknown kind
        (w0(CAP as u64 - 16, 2), 0, "pad at buffer start"),
        (w0(32, 1), 16, "record.pos"), // stale / misplaced record
        (w0(32, 1), u64::MAX, "record.pos"),
    ];
    for (word0, pos, field) in cases {
        let (r, _p, mut c) = one_record(32);
        put(&r, data, word0);
        if pos != 0 {
            put(&r, data + 8, pos);
        }
        let got = c.try_read();
        assert!(is_corrupt(got, field), "{field}");
    }
}

#[test]
fn consumer_rejects_bad_pad_and_crossing_records() {
    // Drive the ring to the wrap: three 256 + 16 byte records leave 208 bytes at the end.
    let build = || {
        let r = region();
        let (p, c) = attach(&r);
        let (mut p, mut c) = (p.unwrap(), c.unwrap());
        for _ in 0..3 {
            p.try_push(&[1; MAX]).unwrap();
            c.try_read().unwrap().release();
        }
        p.try_push(&[2; MAX]).unwrap(); // PAD at 816..1024, record at 0
        (r, p, c)
    };
    let pad_at = HEADER_SIZE + 3 * (MAX + 16);
    let rest = CAP - 3 * (MAX + 16);
    let (r, _p, mut c) = build();
    assert_eq!(word(&r, pad_at).load(SeqCst) >> 32, 2, "PAD written");
    for len in [rest as u64 - 32, rest as u64, 0, u32::MAX as u64] {
        put(&r, pad_at, len | 2 << 32);
        assert!(is_corrupt(c.try_read(), "pad.len"), "pad len {len}");
    }
    // A DATA record in the PAD's place that would cross the end of the buffer.
    let (r, _p, mut c) = build();
    put(&r, pad_at, rest as u64 | 1 << 32);
    assert!(is_corrupt(c.try_read(), "record.len crosses buffer end"));
    // The untouched ring still reads fine across the wrap.
    let (_r, _p, mut c) = build();
    assert_eq!(c.try_read().unwrap().payload(), &[2; MAX]);
}

#[cfg(not(miri))]
#[test]
fn memfd_attach_checks_seals_and_size() {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create("unsealed", MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, 4096).unwrap();
    assert!(is_bad_layout(Region::from_fd(fd)));
    let r = Region::memfd("sealed", 8192).unwrap();
    let fd = r.fd().unwrap().try_clone_to_owned().unwrap();
    assert!(
        nix::unistd::ftruncate(&fd, 4096).is_err(),
        "shrink is sealed"
    );
    assert!(
        nix::unistd::ftruncate(&fd, 1 << 20).is_err(),
        "grow is sealed"
    );
    assert_eq!(Region::from_fd(fd).unwrap().len(), 8192);
}

proptest! {
    /// Arbitrary words written anywhere in the header indices and the data area, between
    /// arbitrary operations: every call returns (any result), none panics.
    #[test]
    fn random_scribbles_never_panic(
        writes in proptest::collection::vec((0usize..(HEADER_SIZE + CAP) / 8, any::<u64>(), 0u8..4), 1..64)
    ) {
        let r = region();
        let (p, c) = attach(&r);
        let (mut p, mut c) = (p.unwrap(), c.unwrap());
        for (i, (slot, value, op)) in writes.into_iter().enumerate() {
            // Keep the meta line (attach-time only) and scribble on indices and data.
            if slot * 8 >= 128 {
                put(&r, slot * 8, value);
            }
            match op {
                0 => { let _ = p.try_push(&vec![i as u8; i * 7 % (MAX + 1)]); }
                1 => { if let Ok(g) = c.try_read() { let _ = g.to_vec(); g.release(); } }
                2 => { let _ = c.try_read().map(|g| g.payload().len()); }
                _ => { let _ = p.try_reserve(value as usize % (MAX + 32)).map(|g| g.commit()); }
            }
        }
    }
}

#[test]
fn positions_wrap_around_u64() {
    let r = region();
    let start = u64::MAX - 2047; // 16-aligned, 2 KiB before the u64 wrap
    put(&r, TAIL, start);
    put(&r, HEAD, start);
    let (p, c) = attach(&r);
    let (mut p, mut c) = (p.unwrap(), c.unwrap());
    for i in 0..100u8 {
        let len = (i as usize * 37) % MAX;
        p.try_push(&vec![i; len]).unwrap();
        let g = c.try_read().unwrap();
        assert_eq!(g.payload(), &vec![i; len][..]);
        g.release();
    }
    assert!(
        word(&r, TAIL).load(SeqCst) < start,
        "tail wrapped past u64::MAX"
    );
}
