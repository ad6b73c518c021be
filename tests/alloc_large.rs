//! Heap allocations per large message over shared memory, counted by a
//! global allocator, both sides together (both managers live in this
//! process), per pattern: one-way, confirmed and request/response; copied
//! and loaned; 1 MiB and 16 MiB. Each is compared with the same pattern
//! carrying 64 bytes, so only what the large path adds is asserted
//! (measured 2026-11-29):
//! - one-way and confirmed sends to an async `am_handler` add exactly one:
//!   the shared owner (`Bytes::from_owner`) of the pooled buffer the queued
//!   handler is handed in place; its drop returns the buffer to the sender
//!   (a small frame's bytes come from the reader's reused arena instead);
//! - a request to a synchronous `unary_handler`, run in place by the
//!   reader, adds none;
//! - a loan adds nothing to a copied send.
//!
//! Its own test binary: the allocator counts every thread of the process, so
//! no other test may run beside it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use active_message::MessageBuilder;
use active_message::handler_impls::{AmContext, am_handler, unary_handler};
use bytes::Bytes;
use common::{Flavor, Pair, pair};

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const WARM_UP: u64 = 10;
const CALLS: u64 = 50;
const LARGE: [usize; 2] = [1 << 20, 16 << 20];

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

/// How a call carries its payload.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// `raw_payload(Bytes)`: copied into the pooled area by the runtime.
    Copied,
    /// `client.loan()`, filled by one copy, sent with `loaned`.
    Loaned,
}

/// The start of a raw call to `handler` carrying `body` as `how` says.
async fn message(p: &Pair, handler: &str, body: &Bytes, how: Body) -> MessageBuilder<'static> {
    let client = p.client.client();
    let m = client.active_message(handler).unwrap();
    match how {
        Body::Copied => m.raw_payload(body.clone()),
        Body::Loaned => {
            let mut loan = client.loan(p.target(), body.len()).await.unwrap();
            loan.copy_from_slice(body);
            m.loaned(loan)
        }
    }
}

/// One-way: returns once the async `sink` counted it (so the count covers
/// both sides), waiting by yielding, which allocates nothing.
async fn one_way(p: &Pair, seen: &AtomicU64, body: &Bytes, how: Body) {
    // Relaxed: a counter polled until it moves; the handler's effects on
    // the buffer are not read here.
    let target = seen.load(Ordering::Relaxed) + 1;
    let m = message(p, "sink", body, how).await;
    m.target_instance(p.target()).execute().await.unwrap();
    while seen.load(Ordering::Relaxed) < target {
        tokio::task::yield_now().await;
    }
}

/// Confirmed delivery to the async `sink`.
async fn confirmed(p: &Pair, body: &Bytes, how: Body) {
    let m = message(p, "sink", body, how).await;
    m.send(p.target()).await.unwrap();
}

/// Request/response: the synchronous `len` handler answers with nothing.
async fn request(p: &Pair, body: &Bytes, how: Body) {
    let m = message(p, "len", body, how).await;
    let out = m
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert!(out.is_empty());
}

async fn register(p: &Pair) -> Arc<AtomicU64> {
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    let sink = am_handler("sink", move |c: AmContext| {
        let s = Arc::clone(&s);
        async move {
            std::hint::black_box(c.payload.len());
            // Relaxed: a counter (see `one_way`).
            s.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    });
    let len = unary_handler("len", |c| {
        std::hint::black_box(c.payload.len());
        Ok(None)
    });
    for (name, h) in [("sink", sink), ("len", len)] {
        p.server.register_handler(name, h).await.unwrap();
    }
    seen
}

/// A `Bytes` of `len` bytes, promoted to its shared form outside the counts.
fn body(len: usize) -> Bytes {
    let b = Bytes::from(vec![7u8; len]);
    drop(b.clone());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_add_one_owner_where_the_handler_is_queued_and_loans_none() {
    let p = pair(Flavor::Shm).await;
    let seen = register(&p).await;
    let small = body(64);
    let mut report = Vec::new();
    for how in [Body::Copied, Body::Loaned] {
        let base = [
            per_call(|| one_way(&p, &seen, &small, Body::Copied)).await,
            per_call(|| confirmed(&p, &small, Body::Copied)).await,
            per_call(|| request(&p, &small, Body::Copied)).await,
        ];
        for len in LARGE {
            let large = body(len);
            let got = [
                per_call(|| one_way(&p, &seen, &large, how)).await,
                per_call(|| confirmed(&p, &large, how)).await,
                per_call(|| request(&p, &large, how)).await,
            ];
            for (pattern, (small, large)) in ["one-way", "confirmed", "request"]
                .iter()
                .zip(base.iter().zip(got))
            {
                report.push(format!("{how:?} {len} {pattern}: {small:.2} -> {large:.2}"));
                // Whole allocations: the runtime's timers may add a few over a run.
                let added = large.round() - small.round();
                let owner = if *pattern == "request" { 0.0 } else { 1.0 };
                assert_eq!(
                    added, owner,
                    "{how:?} {pattern} of {len} bytes: {large:.2} allocations a call, \
                     {small:.2} at 64 B"
                );
            }
        }
    }
    eprintln!("allocations per call, both sides:\n{}", report.join("\n"));
    p.shutdown().await;
}
