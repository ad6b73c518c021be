//! Each handle counts its own waits, parks and doorbell writes, exactly.
#![cfg(not(loom))]

use std::time::Duration;

use shm_ring::{HandleCounters, HandleStats, RingConfig, RingError, WaitPolicy, heap_pair};

/// Waits (yielding) until `cond` holds for the counters; the other thread's
/// progress is the only clock.
fn wait_until(counters: &HandleCounters, cond: impl Fn(HandleStats) -> bool) {
    while !cond(counters.values()) {
        std::thread::yield_now();
    }
}

#[test]
fn a_parked_reader_counts_one_wait_one_park_and_its_writer_one_ring() {
    let (mut p, mut c) = heap_pair(RingConfig::new(1024).unwrap()).unwrap();
    p.set_policy(WaitPolicy::Park);
    c.set_policy(WaitPolicy::Park);
    let reader_counts = c.counters();
    let reader = std::thread::spawn(move || {
        let grant = c.read_blocking(Some(Duration::from_secs(30))).unwrap();
        let byte = grant.payload()[0];
        grant.release();
        (byte, c.counters().values())
    });
    // The park is counted after the waiter flag is raised, so the push below
    // sees the flag and rings.
    wait_until(&reader_counts, |s| s.parks == 1);
    p.try_push(&[7]).unwrap();
    let (byte, reader) = reader.join().unwrap();
    assert_eq!(byte, 7);
    assert_eq!(
        reader,
        HandleStats {
            waits: 1,
            parks: 1,
            doorbell_rings: 0
        }
    );
    assert_eq!(p.counters().values().doorbell_rings, 1);
    assert_eq!(p.counters().values().waits, 0);
}

#[test]
fn a_writer_facing_a_full_ring_counts_its_wait_and_the_reader_rings_it_awake() {
    let (mut p, mut c) = heap_pair(RingConfig::new(1024).unwrap()).unwrap();
    p.set_policy(WaitPolicy::Park);
    c.set_policy(WaitPolicy::Park);
    c.set_release_batch(0);
    let mut filled = 0;
    loop {
        match p.try_push(&[1; 100]) {
            Ok(()) => filled += 1,
            Err(RingError::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(p.counters().values().waits, 0, "try_push never waits");
    let writer_counts = p.counters();
    let writer = std::thread::spawn(move || {
        p.push_blocking(&[2; 100], Some(Duration::from_secs(30)))
            .unwrap();
        p.counters().values()
    });
    wait_until(&writer_counts, |s| s.parks == 1);
    for _ in 0..filled {
        c.read_blocking(None).unwrap().release();
    }
    let writer = writer.join().unwrap();
    assert_eq!(writer.waits, 1);
    // A wake-up that frees too little space for the record parks it again.
    assert!(writer.parks >= 1);
    assert!(
        c.counters().values().doorbell_rings >= 1,
        "the reader woke the parked writer"
    );
    assert_eq!(c.counters().values().waits, 0, "records were ready");
}
