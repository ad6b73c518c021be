//! Loom models of the index protocol and the park/wake handshake, on a heap region.
//!
//! Run with (see README):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p shm-ring --no-default-features --release --test loom`
//!
//! Every data-area access is tracked per 16-byte granule by loom cells inside the region,
//! so a record read that is not ordered after its write (or a write over bytes still being
//! read) fails the model. The eventfd is modelled by a mutex + condvar counter: a lost
//! wake-up leaves a thread parked forever, which loom reports as a deadlock.
#![cfg(loom)]

use loom::thread;
use shm_ring::{Consumer, Producer, RingConfig, RingError, WaitPolicy, heap_pair};

/// A 128-byte ring whose records carry at most 48 bytes (footprint 64).
fn small(policy: WaitPolicy) -> (Producer, Consumer) {
    let cfg = RingConfig::new(128).unwrap().with_max_record(48).unwrap();
    let (mut p, mut c) = heap_pair(cfg).unwrap();
    p.set_policy(policy);
    c.set_policy(policy);
    (p, c)
}

fn record(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| i.wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

/// Spins (a loom yield per round) until a record arrives, checks and releases it.
fn expect(c: &mut Consumer, want: &[u8]) {
    loop {
        match c.try_read() {
            Ok(g) => {
                assert_eq!(g.payload(), want);
                g.release();
                return;
            }
            Err(RingError::Empty) => thread::yield_now(),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

fn push_spin(p: &mut Producer, bytes: &[u8]) {
    loop {
        match p.try_push(bytes) {
            Ok(()) => return,
            Err(RingError::Full) => thread::yield_now(),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn publish_consume() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Spin);
        let t = thread::spawn(move || {
            push_spin(&mut p, &record(1, 8));
            let mut g = p.try_reserve(40).unwrap();
            g.copy_from_slice(&record(2, 40));
            g.commit_len(24); // committed shorter than reserved
        });
        expect(&mut c, &record(1, 8));
        expect(&mut c, &record(2, 24));
        t.join().unwrap();
    });
}

#[test]
fn wrap_with_pad() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Spin);
        let t = thread::spawn(move || {
            // Footprint 48 each: 0, 48, then PAD 96..128 and the third record at 0.
            for i in 0..3 {
                push_spin(&mut p, &record(i, 32));
            }
        });
        for i in 0..3 {
            expect(&mut c, &record(i, 32));
        }
        t.join().unwrap();
    });
}

#[test]
fn full_boundary() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Spin);
        let t = thread::spawn(move || {
            // Two 64-byte records fill the ring exactly; the third needs a release.
            for i in 0..3 {
                push_spin(&mut p, &record(i, 48));
            }
        });
        for i in 0..3 {
            expect(&mut c, &record(i, 48));
        }
        t.join().unwrap();
    });
}

#[test]
fn park_wake_data() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Park);
        let t = thread::spawn(move || {
            p.push_blocking(&record(1, 16), None).unwrap();
            p.push_blocking(&record(2, 16), None).unwrap();
            // Keep the producer (and its close-on-drop wake-up) alive until both records
            // were read, so only the commit notifications can wake the consumer.
            p
        });
        for i in 1..=2 {
            let g = c.read_blocking(None).unwrap();
            assert_eq!(g.payload(), &record(i, 16)[..]);
            g.release();
        }
        drop(t.join().unwrap());
    });
}

#[test]
fn park_wake_space() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Park);
        let t = thread::spawn(move || {
            // The third record must wait for the consumer to free space.
            for i in 0..3 {
                p.push_blocking(&record(i, 48), None).unwrap();
            }
        });
        for i in 0..3 {
            let g = c.read_blocking(None).unwrap();
            assert_eq!(g.payload(), &record(i, 48)[..]);
            g.release();
        }
        t.join().unwrap();
    });
}

#[test]
fn close_after_drain() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Park);
        let t = thread::spawn(move || {
            p.push_blocking(&record(7, 24), None).unwrap();
            drop(p); // closes and rings
        });
        let g = c.read_blocking(None).unwrap();
        assert_eq!(g.payload(), &record(7, 24)[..]);
        g.release();
        assert!(matches!(c.read_blocking(None), Err(RingError::Closed)));
        t.join().unwrap();
    });
}

#[test]
fn lazy_release_wakes_parked_producer() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Park);
        // Publish the head only once 128 bytes were released or the ring runs empty.
        c.set_release_batch(128);
        let t = thread::spawn(move || {
            // Footprint 48: records at 0 and 48; the third needs PAD 96..128 plus 48
            // bytes, so it waits until both are released, i.e. until the consumer finds
            // the ring empty (96 < 128 bytes released) and publishes.
            for i in 0..3 {
                p.push_blocking(&record(i, 32), None).unwrap();
            }
        });
        for i in 0..3 {
            let g = c.read_blocking(None).unwrap();
            assert_eq!(g.payload(), &record(i, 32)[..]);
            g.release();
        }
        t.join().unwrap();
    });
}

/// A held run of records (one PAD at the wrap included) is published by one tail store at
/// the flush: the consumer, spinning all along, sees every byte of every record and never
/// a record of the run before the flush made it visible.
#[test]
fn held_run_published_at_flush() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Spin);
        // Move the indices so that the held run wraps: 48 + 48, then PAD at 96.
        push_spin(&mut p, &record(0, 32));
        expect(&mut c, &record(0, 32));
        let t = thread::spawn(move || {
            p.hold();
            push_spin(&mut p, &record(1, 32));
            push_spin(&mut p, &record(2, 16));
            p.flush();
        });
        expect(&mut c, &record(1, 32));
        expect(&mut c, &record(2, 16));
        t.join().unwrap();
    });
}

/// A producer that holds and then finds the ring full publishes what it held before it
/// parks for room; otherwise the parked consumer and the parked producer would wait on
/// each other for ever (loom reports that as a deadlock).
#[test]
fn held_run_published_before_waiting_for_room() {
    loom::model(|| {
        let (mut p, mut c) = small(WaitPolicy::Park);
        let t = thread::spawn(move || {
            p.hold();
            for i in 1..=3 {
                p.push_blocking(&record(i, 48), None).unwrap();
            }
            p.flush();
        });
        for i in 1..=3 {
            let g = c.read_blocking(None).unwrap();
            assert_eq!(g.payload(), &record(i, 48)[..]);
            g.release();
        }
        t.join().unwrap();
    });
}
