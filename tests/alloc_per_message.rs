//! Heap allocations per message, counted by a global allocator, with no
//! tracing subscriber installed: the per-message spans (`src/runtime/trace.rs`)
//! are disabled then and must add nothing. Both managers live in this one
//! process, so each count is the caller's and the server's together.
//! Allocation counts do not depend on the machine's speed, so a rise means a
//! new allocation on the message path.
//!
//! Its own test binary: the allocator counts every thread of the process, so
//! no other test may run beside it.

mod common;

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use common::{Flavor, Pair, pair};

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

const WARM_UP: u64 = 200;
const CALLS: u64 = 1000;

/// A raw 64-byte request to the demo `echo_bytes` handler and its raw
/// response: the caller's own `Vec`, the `Bytes` that `await_response_raw`
/// returns, and the `Bytes` the raw handler is given; the runtime adds none.
const RAW_ROUND_TRIP: u64 = 3;

/// The typed `echo` handler (`String` in, `String` out): the handler's
/// decoded input and the caller's decoded response; the runtime adds none.
const TYPED_STRING_ROUND_TRIP: u64 = 2;

async fn raw_round_trip(p: &Pair, body: &[u8]) {
    let out = p
        .client
        .client()
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(body.to_vec())
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(out.len(), body.len());
}

async fn typed_round_trip(p: &Pair, text: &str) {
    assert_eq!(p.echo(text).await.unwrap().len(), text.len());
}

/// Request/response of a value that decodes without the heap.
async fn array_round_trip(p: &Pair, req: &[u8; 64]) {
    let back = p
        .client
        .client()
        .active_message("echo64")
        .unwrap()
        .payload(req)
        .unwrap()
        .expect_response::<[u8; 64]>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(&back, req);
}

/// Confirmed delivery: returns once the handler ran.
async fn confirmed(p: &Pair, req: &[u8; 64]) {
    let client = p.client.client();
    let message = client.active_message("echo64").unwrap();
    message
        .payload(req)
        .unwrap()
        .send(p.target())
        .await
        .unwrap();
}

/// Allocations per call of `call` over `CALLS` calls after a warm-up, as
/// (whole allocations per call, the exact mean). The runtime's own timers
/// (heartbeats, liveness) may allocate a few times over the whole run, so
/// the bound is on whole allocations per call: one more per message shows.
async fn per_call<F, Fut>(mut call: F) -> (u64, f64)
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
    let total = after - before;
    (total / CALLS, total as f64 / CALLS as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_round_trips_allocate_only_what_the_types_need() {
    assert!(
        !tracing::dispatcher::has_been_set(),
        "measured with no tracing subscriber"
    );
    let p = pair(Flavor::Shm).await;
    p.server
        .register_handler(
            "echo64",
            typed_unary_handler("echo64", |c: TypedContext<[u8; 64]>| Ok(c.input)),
        )
        .await
        .unwrap();
    let req = [7u8; 64];
    let array = per_call(|| array_round_trip(&p, &req)).await;
    let confirm = per_call(|| confirmed(&p, &req)).await;
    let body = [5u8; 64];
    let raw = per_call(|| raw_round_trip(&p, &body)).await;
    let text = "x".repeat(64);
    let typed = per_call(|| typed_round_trip(&p, &text)).await;
    eprintln!(
        "allocations per shm round trip, both sides: [u8; 64] request/response {:.3}, \
         confirmed {:.3}, raw {:.3}, String {:.3}",
        array.1, confirm.1, raw.1, typed.1
    );
    assert_eq!(array.0, 0, "[u8; 64] request/response: {:.3}", array.1);
    assert_eq!(confirm.0, 0, "confirmed send: {:.3}", confirm.1);
    assert!(
        raw.0 <= RAW_ROUND_TRIP,
        "raw round trip: {:.3} allocations, was {RAW_ROUND_TRIP}",
        raw.1
    );
    assert!(
        typed.0 <= TYPED_STRING_ROUND_TRIP,
        "typed round trip: {:.3} allocations, was {TYPED_STRING_ROUND_TRIP}",
        typed.1
    );
    p.shutdown().await;
}
