//! Two-thread stress: random-size records with checksums, crossing the wrap many times,
//! under each wait policy, with the blocking API (and shorter-than-reserved commits).
#![cfg(not(loom))] // loom primitives only work inside loom models (tests/loom.rs)

use std::thread;
use std::time::Duration;

use shm_ring::{RingConfig, RingError, WaitPolicy, heap_pair};

/// A hang guard only: every wait normally ends in microseconds.
const GUARD: Option<Duration> = Some(Duration::from_secs(20));

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^ (x << 17)
}

/// Length and content of record `i`: 8-byte sequence number, then pseudo-random bytes.
fn len_of(i: u64, max: usize) -> usize {
    8 + (xorshift(i + 1) % (max as u64 - 7)) as usize
}

fn fill(i: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in &mut buf[8..] {
        x = xorshift(x);
        *b = x as u8;
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn run(policy: WaitPolicy, records: u64) {
    // Unoptimised builds check fewer records (still thousands of wraps of the 8 KiB ring).
    let records = if cfg!(debug_assertions) {
        records / 4
    } else {
        records
    };
    let t0 = std::time::Instant::now();
    let cfg = RingConfig::new(8192)
        .unwrap()
        .with_max_record(1500)
        .unwrap();
    let (mut p, mut c) = heap_pair(cfg).unwrap();
    p.set_policy(policy);
    c.set_policy(policy);
    let max = cfg.max_record();
    let producer = thread::spawn(move || {
        let mut sum = 0u64;
        let mut scratch = vec![0u8; max];
        for i in 0..records {
            let len = len_of(i, max);
            fill(i, &mut scratch[..len]);
            sum = sum.wrapping_add(checksum(&scratch[..len]));
            if i % 3 == 0 {
                // Reserve the maximum, write in place, commit shorter.
                let mut g = p.reserve_blocking(max, GUARD).unwrap();
                g[..len].copy_from_slice(&scratch[..len]);
                g.commit_len(len);
            } else {
                p.push_blocking(&scratch[..len], GUARD).unwrap();
            }
        }
        sum
    });
    let mut sum = 0u64;
    let mut expect = vec![0u8; max];
    for i in 0..records {
        let g = c.read_blocking(GUARD).unwrap();
        let len = len_of(i, max);
        fill(i, &mut expect[..len]);
        assert_eq!(g.payload(), &expect[..len], "record {i} ({policy:?})");
        sum = sum.wrapping_add(checksum(g.payload()));
        g.release();
    }
    assert_eq!(producer.join().unwrap(), sum);
    // The producer was dropped at the end of its thread: drained, then closed.
    assert!(matches!(c.read_blocking(GUARD), Err(RingError::Closed)));
    eprintln!("{policy:?}: {records} records in {:?}", t0.elapsed());
}

#[test]
fn stress_all_policies() {
    // One test, policies in sequence: spinning threads must not fight other tests'
    // threads for the two cores.
    run(WaitPolicy::Spin, 100_000);
    run(WaitPolicy::default(), 100_000);
    run(
        WaitPolicy::Adaptive {
            spin: Duration::from_micros(2),
        },
        50_000,
    );
    run(WaitPolicy::Park, 20_000);
}
