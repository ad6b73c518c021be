//! Two-thread throughput and ping-pong round trip: our ring (Spin policy) against `rtrb`
//! and the bare cache-line ping-pong floor, measured in the same run.
//!
//! `cargo bench -p shm-ring --bench ring`
//!
//! * `throughput/{ring,rtrb}/{64,4096,65536}`: one thread writes records of that size
//!   (copying from a source buffer), the other reads them (copying out). rtrb is used as
//!   a byte ring (`push_entire_slice` / `pop_entire_slice`), i.e. without record framing.
//! * `pingpong/{ring,rtrb,floor}`: one 8-byte message each way per iteration.
//!
//! All three busy-wait the same way as the ring's `Spin` policy: a spin hint per poll and
//! a `yield_now` every 1024 polls (so a loaded machine still makes progress; on an idle
//! one the yield never triggers in a ping-pong).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shm_ring::{Consumer, Producer, RingConfig, RingError, WaitPolicy, heap_pair};

const RING_BYTES: usize = 1 << 20;

/// One busy-wait round, as in the ring's `Spin` policy.
#[inline]
fn spin(polls: &mut u32) {
    std::hint::spin_loop();
    *polls = polls.wrapping_add(1);
    if (*polls).is_multiple_of(1024) {
        thread::yield_now();
    }
}
const SIZES: [usize; 3] = [64, 4096, 65536];

fn spin_pair(capacity: usize) -> (Producer, Consumer) {
    let (mut p, mut c) = heap_pair(RingConfig::new(capacity).unwrap()).unwrap();
    p.set_policy(WaitPolicy::Spin);
    c.set_policy(WaitPolicy::Spin);
    (p, c)
}

fn ring_throughput(size: usize, iters: u64) -> Duration {
    let (mut p, mut c) = spin_pair(RING_BYTES);
    let reader = thread::spawn(move || {
        let mut dst = vec![0u8; size];
        for _ in 0..iters {
            let g = c.read_blocking(None).unwrap();
            dst.copy_from_slice(g.payload());
            g.release();
        }
        std::hint::black_box(dst);
    });
    let src = vec![0x5au8; size];
    let start = Instant::now();
    for _ in 0..iters {
        let mut g = p.reserve_blocking(size, None).unwrap();
        g.copy_from_slice(&src);
        g.commit();
    }
    reader.join().unwrap();
    start.elapsed()
}

fn rtrb_throughput(size: usize, iters: u64) -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<u8>::new(RING_BYTES);
    let reader = thread::spawn(move || {
        let mut dst = vec![0u8; size];
        for _ in 0..iters {
            let mut polls = 0;
            while c.pop_entire_slice(&mut dst).is_err() {
                spin(&mut polls);
            }
        }
        std::hint::black_box(dst);
    });
    let src = vec![0x5au8; size];
    let start = Instant::now();
    for _ in 0..iters {
        let mut polls = 0;
        while p.push_entire_slice(&src).is_err() {
            spin(&mut polls);
        }
    }
    reader.join().unwrap();
    start.elapsed()
}

fn ring_pingpong(iters: u64) -> Duration {
    let (mut ping_tx, mut ping_rx) = spin_pair(4096);
    let (mut pong_tx, mut pong_rx) = spin_pair(4096);
    let echo = thread::spawn(move || {
        loop {
            let g = match ping_rx.read_blocking(None) {
                Ok(g) => g,
                Err(RingError::Closed) => return,
                Err(e) => panic!("{e}"),
            };
            let mut out = pong_tx.reserve_blocking(8, None).unwrap();
            out.copy_from_slice(g.payload());
            out.commit();
            g.release();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.push_blocking(&i.to_le_bytes(), None).unwrap();
        let g = pong_rx.read_blocking(None).unwrap();
        debug_assert_eq!(g.payload(), i.to_le_bytes());
        g.release();
    }
    let elapsed = start.elapsed();
    drop(ping_tx);
    echo.join().unwrap();
    elapsed
}

fn rtrb_pingpong(iters: u64) -> Duration {
    let (mut ping_tx, mut ping_rx) = rtrb::RingBuffer::<u64>::new(512);
    let (mut pong_tx, mut pong_rx) = rtrb::RingBuffer::<u64>::new(512);
    let echo = thread::spawn(move || {
        let mut polls = 0;
        loop {
            match ping_rx.pop() {
                Ok(v) => pong_tx.push(v).unwrap(),
                Err(_) if ping_rx.is_abandoned() => return,
                Err(_) => spin(&mut polls),
            }
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.push(i).unwrap();
        let mut polls = 0;
        let v = loop {
            match pong_rx.pop() {
                Ok(v) => break v,
                Err(_) => spin(&mut polls),
            }
        };
        debug_assert_eq!(v, i);
    }
    let elapsed = start.elapsed();
    drop(ping_tx);
    echo.join().unwrap();
    elapsed
}

/// The floor: two threads bounce one atomic (odd = ping, even = pong).
fn floor_pingpong(iters: u64) -> Duration {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Arc::new(Line(AtomicU64::new(0)));
    let other = line.clone();
    let echo = thread::spawn(move || {
        let mut seen = 0;
        let mut polls = 0;
        loop {
            let v = other.0.load(Ordering::Acquire);
            if v == u64::MAX {
                return;
            }
            if v != seen && v % 2 == 1 {
                other.0.store(v + 1, Ordering::Release);
                seen = v + 1;
            } else {
                spin(&mut polls);
            }
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        line.0.store(2 * i + 1, Ordering::Release);
        let mut polls = 0;
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            spin(&mut polls);
        }
    }
    let elapsed = start.elapsed();
    line.0.store(u64::MAX, Ordering::Release);
    echo.join().unwrap();
    elapsed
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("ring", size), |b| {
            b.iter_custom(|iters| ring_throughput(size, iters))
        });
        g.bench_function(BenchmarkId::new("rtrb", size), |b| {
            b.iter_custom(|iters| rtrb_throughput(size, iters))
        });
    }
    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");
    g.bench_function("ring", |b| b.iter_custom(ring_pingpong));
    g.bench_function("rtrb", |b| b.iter_custom(rtrb_pingpong));
    g.bench_function("floor", |b| b.iter_custom(floor_pingpong));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = throughput, pingpong
}
criterion_main!(benches);
