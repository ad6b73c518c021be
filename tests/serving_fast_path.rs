//! The serving side's per-message shortcuts keep the regular path's
//! promises: handlers run in place share the manager's drain token and still
//! see cancellation, a handler finishing in place takes no permit yet the
//! concurrency limit still holds back calls while waiting handlers saturate
//! it, and the per-thread handler lookup never calls a handler that was
//! deregistered or replaced.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{
    TypedContext, am_handler, typed_unary_handler, typed_unary_handler_async,
};
use active_message::{Error, HandlerRef};
use bytes::Bytes;
use common::{Flavor, Pair, eventually, pair, pair_with};
use tokio::sync::Semaphore;

const PATIENCE: Duration = Duration::from_secs(10);

async fn one_way(p: &Pair, name: &str) {
    p.client
        .client()
        .active_message(name)
        .unwrap()
        .raw_payload(Bytes::from_static(&[0u8; 16]))
        .target_instance(p.target())
        .execute()
        .await
        .unwrap();
}

async fn ask(p: &Pair, name: &str, input: u64) -> Result<u64, Error> {
    p.client
        .client()
        .active_message(name)?
        .payload(&input)?
        .expect_response::<u64>()
        .send(p.target())
        .await?
        .await_response()
        .await
}

/// Adds `by` to its input and counts its calls.
fn adder(by: u64, calls: &Arc<AtomicU64>) -> HandlerRef {
    let calls = Arc::clone(calls);
    typed_unary_handler("adder", move |c: TypedContext<u64>| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<u64, String>(c.input + by)
    })
}

async fn a_waiting_one_way_handler_sees_the_managers_cancellation(flavor: Flavor) {
    let p = pair(flavor).await;
    let woke = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&woke);
    let waits = am_handler("waits", move |ctx| {
        let w = Arc::clone(&w);
        async move {
            ctx.cancel.cancelled().await;
            w.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    p.server.register_handler("waits", waits).await.unwrap();
    one_way(&p, "waits").await;
    let server = &p.server;
    assert!(eventually(PATIENCE, || async { server.stats().handlers_running == 1 }).await);
    assert_eq!(woke.load(Ordering::SeqCst), 0, "woke before any cancel");
    p.server.cancel_token().cancel();
    assert!(
        eventually(PATIENCE, || async { woke.load(Ordering::SeqCst) == 1 }).await,
        "the waiting handler never saw the manager's cancellation"
    );
    let _ = p.client.shutdown().await;
    let _ = p.server.shutdown().await;
}

async fn the_limit_holds_calls_back_while_waiting_handlers_saturate_it(flavor: Flavor) {
    let p = pair_with(flavor, |b| b.max_concurrent_handlers(1)).await;
    let gate = Arc::new(Semaphore::new(0));
    let passed = Arc::new(AtomicU64::new(0));
    let (g, pa) = (Arc::clone(&gate), Arc::clone(&passed));
    let gated = am_handler("gated", move |_ctx| {
        let (g, pa) = (Arc::clone(&g), Arc::clone(&pa));
        async move {
            g.acquire().await.map_err(|e| e.to_string())?.forget();
            pa.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    // Records how many gated handlers had passed when it ran.
    let pa = Arc::clone(&passed);
    let seen = typed_unary_handler("seen", move |_c: TypedContext<u64>| {
        Ok::<u64, String>(pa.load(Ordering::SeqCst))
    });
    p.server.register_handler("gated", gated).await.unwrap();
    p.server.register_handler("seen", seen).await.unwrap();
    one_way(&p, "gated").await;
    let server = &p.server;
    assert!(eventually(PATIENCE, || async { server.stats().handlers_running == 1 }).await);
    // The request is on its way (written to the link) before the gate opens:
    // with the only permit held, it must wait for the gated handler.
    let call = p
        .client
        .client()
        .active_message("seen")
        .unwrap()
        .payload(&0u64)
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap();
    gate.add_permits(1);
    assert_eq!(
        call.await_response().await.unwrap(),
        1,
        "ran beside a handler holding the only permit"
    );
    p.shutdown().await;
}

async fn a_deregistered_or_replaced_handler_is_not_called(flavor: Flavor) {
    let p = pair(flavor).await;
    let old_calls = Arc::new(AtomicU64::new(0));
    let old = adder(1, &old_calls);
    // The test keeps the old handler alive: only the registry says it is gone.
    p.server
        .register_handler("adder", Arc::clone(&old))
        .await
        .unwrap();
    for i in 0..3 {
        assert_eq!(ask(&p, "adder", i).await.unwrap(), i + 1);
    }
    assert!(p.server.deregister_handler("adder").await.unwrap());
    let gone = ask(&p, "adder", 7).await;
    assert!(matches!(gone, Err(Error::NoSuchHandler(_))), "{gone:?}");
    let new_calls = Arc::new(AtomicU64::new(0));
    p.server
        .register_handler("adder", adder(100, &new_calls))
        .await
        .unwrap();
    assert_eq!(ask(&p, "adder", 7).await.unwrap(), 107);
    assert_eq!(old_calls.load(Ordering::SeqCst), 3);
    assert_eq!(new_calls.load(Ordering::SeqCst), 1);
    drop(old);
    p.shutdown().await;
}

async fn flag(p: &Pair, input: u64, timeout: Duration) -> Result<bool, Error> {
    p.client
        .client()
        .active_message("flag")?
        .payload(&input)?
        .timeout(timeout)
        .expect_response::<bool>()
        .send(p.target())
        .await?
        .await_response()
        .await
}

async fn a_cancelled_call_leaves_later_calls_uncancelled(flavor: Flavor) {
    let p = pair(flavor).await;
    let woke = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&woke);
    // Input 1 waits for its cancel; any other reports whether its token is
    // cancelled (it must not be: the cancel was for another call).
    let flagged = typed_unary_handler_async("flag", move |c: TypedContext<u64>| {
        let w = Arc::clone(&w);
        async move {
            if c.input == 1 {
                c.cancel.cancelled().await;
                w.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<bool, String>(c.cancel.is_cancelled())
        }
    });
    p.server.register_handler("flag", flagged).await.unwrap();
    for round in 1..=3u64 {
        let out = flag(&p, 1, Duration::from_millis(200)).await;
        assert!(matches!(out, Err(Error::Timeout(_))), "{out:?}");
        assert!(
            eventually(PATIENCE, || async { woke.load(Ordering::SeqCst) == round }).await,
            "the cancel never reached the waiting handler"
        );
        for _ in 0..3 {
            assert!(
                !flag(&p, 0, PATIENCE).await.unwrap(),
                "a later call saw an old cancel"
            );
        }
    }
    p.shutdown().await;
}

per_transport!(
    a_waiting_one_way_handler_sees_the_managers_cancellation,
    the_limit_holds_calls_back_while_waiting_handlers_saturate_it,
    a_deregistered_or_replaced_handler_is_not_called,
    a_cancelled_call_leaves_later_calls_uncancelled,
);
