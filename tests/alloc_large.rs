//! Heap allocations per large message over shared memory, counted by a
//! global allocator: the pooled large-buffer path adds at most one allocation
//! to what the same call costs with a small payload (the `Bytes` owner of the
//! held buffer handed to the handler in place), and a loan adds none to a
//! copied send.
//!
//! Its own test binary: the allocator counts every thread of the process, so
//! no other test may run beside it.

mod common;

use active_message::handler_impls::{AmContext, am_handler};
use bytes::Bytes;
use common::{Flavor, Pair, pair};

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const WARM_UP: u64 = 10;
const CALLS: u64 = 50;

/// Allocations per call of `call` over `CALLS` calls after a warm-up (the
/// warm-up maps the pooled segments the steady state reuses).
async fn per_call<F, Fut>(mut call: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARM_UP {
        call().await;
    }
    let before = common::counting::allocations();
    for _ in 0..CALLS {
        call().await;
    }
    let after = common::counting::allocations();
    (after - before) as f64 / CALLS as f64
}

/// A confirmed send of `body` to the async `sink` (it sees the payload where
/// it arrived: the pooled area for large ones).
async fn confirmed(p: &Pair, body: &Bytes) {
    p.client
        .client()
        .active_message("sink")
        .unwrap()
        .raw_payload(body.clone())
        .send(p.target())
        .await
        .unwrap();
}

/// The same with a loan of `len` bytes, filled by one copy.
async fn confirmed_loan(p: &Pair, src: &[u8]) {
    let client = p.client.client();
    let mut loan = client.loan(p.target(), src.len()).await.unwrap();
    loan.copy_from_slice(src);
    client
        .active_message("sink")
        .unwrap()
        .loaned(loan)
        .send(p.target())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_add_at_most_one_allocation_and_loans_none() {
    let p = pair(Flavor::Shm).await;
    p.server
        .register_handler(
            "sink",
            am_handler("sink", |c: AmContext| async move {
                std::hint::black_box(c.payload.len());
                Ok(())
            }),
        )
        .await
        .unwrap();
    let small = Bytes::from(vec![1u8; 64]);
    // Promote the vector to a shared `Bytes` once, outside the counts.
    drop(small.clone());
    let small = per_call(|| confirmed(&p, &small)).await;
    let mut large = Vec::new();
    for len in [1usize << 20, 16 << 20] {
        let body = Bytes::from(vec![2u8; len]);
        drop(body.clone());
        let copied = per_call(|| confirmed(&p, &body)).await;
        let loaned = per_call(|| confirmed_loan(&p, &body)).await;
        large.push((len, copied, loaned));
    }
    eprintln!("allocations per confirmed send: 64 B {small:.2}; (size, copied, loaned): {large:?}");
    // Measured (2026-11-29): 64 B 2.04 a call, 1 and 16 MiB 3.0 copied and
    // 3.0 loaned. A small frame reaches its handler through the reader's
    // reused receive arena; a frame in the pooled area is handed to it in
    // place as `Bytes::from_owner(held buffer)`, whose shared header is the
    // one allocation the large path adds. Whole allocations are compared:
    // the runtime's timers may add a few over a run.
    for (len, copied, loaned) in large {
        assert!(
            copied.round() <= small.round() + 1.0,
            "{len} bytes: {copied:.2} allocations a call, {small:.2} for 64 B"
        );
        assert!(
            loaned.round() <= copied.round(),
            "{len}-byte loan: {loaned:.2} allocations a call, {copied:.2} copied"
        );
    }
    p.shutdown().await;
}
