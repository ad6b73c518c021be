//! The serving side takes a stream of one-way messages as runs of frames:
//! the counters and handler statistics gathered over a run are published
//! when the run ends (the ring runs empty), every message is counted once,
//! failures included, and a handler replaced between runs is never called
//! again.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{ArchivedContext, am_handler, archived_unary_handler};
use active_message::{ActiveMessageManager, HandlerRef, StatsSnapshot};
use common::{Flavor, Pair, eventually, pair};

const PATIENCE: Duration = Duration::from_secs(30);

/// An async one-way handler that counts its calls and fails every odd one
/// (the payload's first byte says which).
fn counting_am(name: &'static str, calls: &Arc<AtomicU64>) -> HandlerRef {
    let calls = Arc::clone(calls);
    am_handler(name, move |ctx| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match ctx.payload.first() {
                Some(b) if b % 2 == 1 => Err("odd".to_string()),
                _ => Ok(()),
            }
        }
    })
}

/// A zero-copy one-way handler that counts its calls.
fn counting_zc(calls: &Arc<AtomicU64>) -> HandlerRef {
    let calls = Arc::clone(calls);
    archived_unary_handler("count_zc", move |c: ArchivedContext<'_, u64>| {
        std::hint::black_box(c.input.to_native());
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

/// Calls, errors and the calls in the latency histogram of `name`.
fn handler_counts(stats: &StatsSnapshot, name: &str) -> (u64, u64, u64) {
    let h = stats.handlers.iter().find(|h| h.name == name);
    h.map_or((0, 0, 0), |h| {
        (h.calls, h.errors, h.latency_buckets.iter().sum())
    })
}

/// Frames the server read from its client.
fn frames_in(p: &Pair) -> u64 {
    let stats = p.server.stats();
    stats
        .peers
        .iter()
        .map(|peer| peer.counters.messages_in)
        .sum()
}

async fn reached(counter: &AtomicU64, n: u64) -> bool {
    eventually(PATIENCE, || async { counter.load(Ordering::SeqCst) >= n }).await
}

async fn register(server: &ActiveMessageManager, name: &str, handler: HandlerRef) {
    server.register_handler(name, handler).await.unwrap();
}

async fn one_way_runs_publish_their_counts(flavor: Flavor) {
    let p = pair(flavor).await;
    let (am_calls, zc_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    register(&p.server, "count_am", counting_am("count_am", &am_calls)).await;
    register(&p.server, "count_zc", counting_zc(&zc_calls)).await;
    let before = p.server.stats().counters.messages_received;
    let frames_before = frames_in(&p);
    let client = p.client.client();
    let am = client.one_way_sender("count_am", p.target()).unwrap();
    let zc = client.one_way_sender("count_zc", p.target()).unwrap();
    const N: u64 = 3_000;
    // Two bursts, with the handler changing within a run in the second.
    for i in 0..N {
        am.send_raw(&[(i % 2) as u8; 48]).await.unwrap();
    }
    for i in 0..N {
        zc.send(&i).await.unwrap();
        am.send_raw(&[0u8; 48]).await.unwrap();
    }
    assert!(
        reached(&am_calls, 2 * N).await,
        "the async handler ran short"
    );
    assert!(
        reached(&zc_calls, N).await,
        "the zero-copy handler ran short"
    );
    // The handlers ran; their counts are published once their run ends.
    let published = eventually(PATIENCE, || async {
        let stats = p.server.stats();
        handler_counts(&stats, "count_am") == (2 * N, N / 2, 2 * N)
            && handler_counts(&stats, "count_zc") == (N, 0, N)
            && stats.counters.messages_received - before >= 3 * N
    })
    .await;
    let stats = p.server.stats();
    assert!(
        published,
        "counts never published: am {:?}, zc {:?}, received {}",
        handler_counts(&stats, "count_am"),
        handler_counts(&stats, "count_zc"),
        stats.counters.messages_received - before
    );
    if flavor == Flavor::Shm {
        let frames = || async { frames_in(&p) - frames_before >= 3 * N };
        assert!(
            eventually(PATIENCE, frames).await,
            "link frames unpublished"
        );
    }
    p.shutdown().await;
}

async fn a_handler_replaced_between_runs_gets_the_later_messages(flavor: Flavor) {
    let p = pair(flavor).await;
    let (old_calls, new_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let old = counting_am("swap", &old_calls);
    // The test keeps the old handler alive: only the registry says it is gone.
    register(&p.server, "swap", Arc::clone(&old)).await;
    let sender = p
        .client
        .client()
        .one_way_sender("swap", p.target())
        .unwrap();
    for _ in 0..500 {
        sender.send_raw(&[0u8; 16]).await.unwrap();
    }
    assert!(reached(&old_calls, 500).await);
    assert!(p.server.deregister_handler("swap").await.unwrap());
    register(&p.server, "swap", counting_am("swap", &new_calls)).await;
    for _ in 0..500 {
        sender.send_raw(&[0u8; 16]).await.unwrap();
    }
    assert!(reached(&new_calls, 500).await);
    assert_eq!(
        old_calls.load(Ordering::SeqCst),
        500,
        "the old handler ran again"
    );
    drop(old);
    p.shutdown().await;
}

per_transport!(
    one_way_runs_publish_their_counts,
    a_handler_replaced_between_runs_gets_the_later_messages,
);
