//! Handlers run in place (by the shared router on the shm reader, by the
//! dispatcher for what it takes from its inbox) keep every promise of the
//! regular path: a handler that waits still finishes, a panicking handler
//! answers or is counted and the link keeps serving, the concurrency limit
//! holds while in-place calls wait.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{
    TypedContext, am_handler, typed_unary_handler, typed_unary_handler_async,
};
use active_message::{ActiveMessageManager, Error};
use bytes::Bytes;
use common::{Flavor, Pair, eventually, pair};
use tokio::sync::Semaphore;

const PATIENCE: Duration = Duration::from_secs(10);

/// A gate the handlers wait at, and the count of handlers past it.
struct Gate {
    open: Semaphore,
    passed: AtomicU64,
}

async fn register(server: &ActiveMessageManager, gate: &Arc<Gate>) {
    let g = Arc::clone(gate);
    let gated = am_handler("gated", move |_ctx| {
        let g = Arc::clone(&g);
        async move {
            g.open.acquire().await.map_err(|e| e.to_string())?.forget();
            g.passed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let g = Arc::clone(gate);
    let panicky = am_handler("panicky", move |ctx| {
        let g = Arc::clone(&g);
        async move {
            assert!(ctx.payload.first() != Some(&1), "told to panic");
            g.passed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let g = Arc::clone(gate);
    let gated_echo = typed_unary_handler_async("gated_echo", move |c: TypedContext<u64>| {
        let g = Arc::clone(&g);
        async move {
            g.open.acquire().await.map_err(|e| e.to_string())?.forget();
            Ok(c.input)
        }
    });
    let sync_panic = typed_unary_handler(
        "sync_panic",
        |_: TypedContext<u64>| -> Result<u64, String> { panic!("sync handler panics") },
    );
    for (name, h) in [
        ("gated", gated),
        ("panicky", panicky),
        ("gated_echo", gated_echo),
        ("sync_panic", sync_panic),
    ] {
        server.register_handler(name, h).await.unwrap();
    }
}

async fn setup(flavor: Flavor) -> (Pair, Arc<Gate>) {
    let p = pair(flavor).await;
    let gate = Arc::new(Gate {
        open: Semaphore::new(0),
        passed: AtomicU64::new(0),
    });
    register(&p.server, &gate).await;
    (p, gate)
}

async fn one_way(p: &Pair, name: &str, byte: u8) {
    p.client
        .client()
        .active_message(name)
        .unwrap()
        .raw_payload(Bytes::from(vec![byte; 16]))
        .target_instance(p.target())
        .execute()
        .await
        .unwrap();
}

async fn one_way_handlers_that_wait_still_finish(flavor: Flavor) {
    let (p, gate) = setup(flavor).await;
    for _ in 0..3 {
        one_way(&p, "gated", 0).await;
    }
    // Every message reached its handler, which now waits at the gate.
    let server = &p.server;
    assert!(eventually(PATIENCE, || async { server.stats().handlers_running == 3 }).await);
    assert_eq!(gate.passed.load(Ordering::SeqCst), 0);
    gate.open.add_permits(3);
    assert!(
        eventually(PATIENCE, || async {
            gate.passed.load(Ordering::SeqCst) == 3
        })
        .await
    );
    p.shutdown().await;
}

async fn a_panicking_one_way_handler_is_counted_and_the_link_serves_on(flavor: Flavor) {
    let (p, gate) = setup(flavor).await;
    let before = p.server.stats().counters.handler_errors;
    one_way(&p, "panicky", 1).await;
    one_way(&p, "panicky", 0).await;
    assert!(
        eventually(PATIENCE, || async {
            gate.passed.load(Ordering::SeqCst) == 1
        })
        .await
    );
    let server = &p.server;
    assert!(
        eventually(PATIENCE, || async {
            server.stats().counters.handler_errors == before + 1
        })
        .await
    );
    p.shutdown().await;
}

async fn gated_echo(p: &Pair, input: u64) -> Result<u64, Error> {
    p.client
        .client()
        .active_message("gated_echo")?
        .payload(&input)?
        .expect_response::<u64>()
        .send(p.target())
        .await?
        .await_response()
        .await
}

async fn async_requests_that_wait_still_answer(flavor: Flavor) {
    let (p, gate) = setup(flavor).await;
    let p = Arc::new(p);
    let calls: Vec<_> = (0..4u64)
        .map(|i| {
            let p = Arc::clone(&p);
            tokio::spawn(async move { gated_echo(&p, i).await })
        })
        .collect();
    let server = &p.server;
    assert!(eventually(PATIENCE, || async { server.stats().handlers_running == 4 }).await);
    gate.open.add_permits(4);
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u64);
    }
    let Ok(p) = Arc::try_unwrap(p) else {
        panic!("every call finished")
    };
    p.shutdown().await;
}

async fn a_panicking_sync_handler_answers_an_error(flavor: Flavor) {
    let (p, _gate) = setup(flavor).await;
    let out = p
        .client
        .client()
        .active_message("sync_panic")
        .unwrap()
        .payload(&1u64)
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await;
    assert!(matches!(out, Err(Error::Handler(_))), "{out:?}");
    // The link still serves.
    assert_eq!(p.echo("after").await.unwrap(), "after");
    p.shutdown().await;
}

per_transport!(
    one_way_handlers_that_wait_still_finish,
    a_panicking_one_way_handler_is_counted_and_the_link_serves_on,
    async_requests_that_wait_still_answer,
    a_panicking_sync_handler_answers_an_error,
);
