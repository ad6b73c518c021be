//! Streamed responses, one set of tests over every transport: order and
//! contents, credit-bounded memory, cancellation, errors, timeouts and many
//! streams on one link.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use active_message::handler_impls::{TypedContext, typed_stream_handler};
use active_message::{Error, ItemSink, NetworkClient, ResponseStream};
use common::{Flavor, Pair, eventually, pair};
use futures::StreamExt;

/// How long a condition that must come true may take on a busy machine.
const PATIENCE: Duration = Duration::from_secs(20);

async fn open<T>(
    c: &Arc<NetworkClient>,
    p: &Pair,
    name: &str,
    input: u64,
    window: u32,
) -> ResponseStream<T> {
    c.active_message(name)
        .unwrap()
        .payload(&input)
        .unwrap()
        .expect_stream::<T>()
        .window(window)
        .send(p.target())
        .await
        .unwrap()
}

async fn ticks(c: &Arc<NetworkClient>, p: &Pair, window: u32) -> ResponseStream<u64> {
    c.active_message("ticks")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_stream::<u64>()
        .window(window)
        .send(p.target())
        .await
        .unwrap()
}

async fn stream_cancels(c: &Arc<NetworkClient>, p: &Pair) -> u64 {
    c.active_message("stream_cancels")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap()
}

async fn hundred_thousand_items_arrive_in_order(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let mut items = open::<u64>(&c, &p, "count", 100_000, 64).await;
    let mut expected = 0u64;
    while let Some(item) = items.next().await {
        assert_eq!(item.unwrap(), expected);
        expected += 1;
    }
    assert_eq!(expected, 100_000);
    assert_eq!(
        c.stream_stats().reading,
        0,
        "the ended stream left the table"
    );
    let server = p.server.client();
    assert!(eventually(PATIENCE, || async { server.stream_stats().producing == 0 }).await);
    p.shutdown().await;
}

async fn raw_and_archived_items_read_the_same(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let mut raw = c
        .active_message("count_bytes")
        .unwrap()
        .raw_payload(1000u64.to_le_bytes().to_vec())
        .expect_stream::<()>()
        .send(p.target())
        .await
        .unwrap()
        .into_bytes();
    let mut n = 0u64;
    while let Some(item) = raw.next().await {
        assert_eq!(item.unwrap()[..], n.to_le_bytes());
        n += 1;
    }
    assert_eq!(n, 1000);
    let mut archived = open::<u64>(&c, &p, "count", 1000, 8).await;
    let mut n = 0u64;
    while let Some(item) = archived.next_archived().await {
        assert_eq!(item.unwrap().to_native(), n);
        n += 1;
    }
    assert_eq!(n, 1000);
    p.shutdown().await;
}

/// The sink of the one running `flood` stream, for the test to watch.
type Watched = Arc<Mutex<Option<ItemSink>>>;

async fn a_reader_that_stops_reading_bounds_the_producer(flavor: Flavor) {
    const WINDOW: u32 = 16;
    let p = pair(flavor).await;
    let watched: Watched = Arc::default();
    let w = Arc::clone(&watched);
    let flood = typed_stream_handler("flood", move |_: TypedContext<()>, tx| {
        *w.lock().unwrap() = Some(tx.sink().clone());
        async move {
            for i in 0..1_000_000u64 {
                tx.send(&i).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    });
    p.server.register_handler("flood", flood).await.unwrap();
    let c = p.client.client();
    let mut items = c
        .active_message("flood")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_stream::<u64>()
        .window(WINDOW)
        .send(p.target())
        .await
        .unwrap();
    let sink = || watched.lock().unwrap().clone();
    assert!(eventually(PATIENCE, || async { sink().is_some() }).await);
    let sink = sink().unwrap();
    let stalled = |sent: u64| {
        let sink = sink.clone();
        async move { sink.is_waiting_for_credit() && sink.sent() == sent }
    };
    // Without reading, the producer stops at exactly one window...
    assert!(eventually(PATIENCE, || stalled(WINDOW.into())).await);
    assert!(eventually(PATIENCE, || async { items.queued() == WINDOW as usize }).await);
    assert_eq!(sink.credit(), 0);
    // ...and reading half a window lets exactly that much more through.
    for expected in 0..u64::from(WINDOW / 2) {
        assert_eq!(items.next().await.unwrap().unwrap(), expected);
    }
    assert!(eventually(PATIENCE, || stalled(u64::from(WINDOW + WINDOW / 2))).await);
    assert!(eventually(PATIENCE, || async { items.queued() == WINDOW as usize }).await);
    assert!(sink.sent() <= u64::from(WINDOW + WINDOW / 2));
    drop(items);
    let server = p.server.client();
    assert!(eventually(PATIENCE, || async { server.stream_stats().producing == 0 }).await);
    p.shutdown().await;
}

async fn dropping_mid_stream_cancels_the_handler(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let before = stream_cancels(&c, &p).await;
    let mut items = ticks(&c, &p, 8).await;
    for expected in 0..20u64 {
        assert_eq!(items.next().await.unwrap().unwrap(), expected);
    }
    drop(items);
    assert_eq!(
        c.stream_stats().reading,
        0,
        "no entry remains after the drop"
    );
    assert!(
        eventually(PATIENCE, || async {
            stream_cancels(&c, &p).await == before + 1
        })
        .await,
        "the handler observed its cancellation"
    );
    let server = p.server.client();
    assert!(eventually(PATIENCE, || async { server.stream_stats().producing == 0 }).await);
    assert_eq!(p.echo("still serving").await.unwrap(), "still serving");
    p.shutdown().await;
}

async fn a_caller_that_goes_away_stops_its_streams(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let server = p.server.client();
    // A stream nobody reads: its handler waits for credit.
    let mut items = ticks(&c, &p, 4).await;
    assert_eq!(items.next().await.unwrap().unwrap(), 0);
    assert!(eventually(PATIENCE, || async { items.queued() == 3 }).await);
    p.client.shutdown().await.unwrap();
    // The items already received, then the end.
    for expected in 1..4u64 {
        assert_eq!(items.next().await.unwrap().unwrap(), expected);
    }
    assert!(matches!(items.next().await, Some(Err(Error::ShuttingDown))));
    // The caller's links are gone: the handler waiting for credit is
    // cancelled (`ticks` only returns once a send fails).
    assert!(eventually(PATIENCE, || async { server.stream_stats().producing == 0 }).await);
    drop(items);
    p.server.shutdown().await.unwrap();
}

async fn a_handler_ignoring_cancellation_has_its_items_discarded(flavor: Flavor) {
    let p = pair(flavor).await;
    let watched: Watched = Arc::default();
    let w = Arc::clone(&watched);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<(u64, u64)>();
    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
    let stubborn = typed_stream_handler("stubborn", move |_: TypedContext<()>, tx| {
        *w.lock().unwrap() = Some(tx.sink().clone());
        let done_tx = Arc::clone(&done_tx);
        async move {
            // Ignores every error until it has tried 10,000 items past the cancel.
            let mut refused = 0u64;
            while refused < 10_000 {
                if tx.send(&0u64).await.is_err() {
                    refused += 1;
                }
            }
            let sink = tx.sink();
            if let Some(done) = done_tx.lock().unwrap().take() {
                let _ = done.send((sink.sent(), sink.discarded()));
            }
            Ok(())
        }
    });
    p.server
        .register_handler("stubborn", stubborn)
        .await
        .unwrap();
    let c = p.client.client();
    let mut items = c
        .active_message("stubborn")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_stream::<u64>()
        .window(4)
        .send(p.target())
        .await
        .unwrap();
    items.next().await.unwrap().unwrap();
    items.cancel();
    assert!(matches!(items.next().await, Some(Err(Error::Cancelled))));
    assert!(items.next().await.is_none());
    let (sent, discarded) = done_rx.await.unwrap();
    // Sent: at most the window plus the credit one item read granted.
    assert!(sent <= 4 + 2, "sent {sent}");
    assert_eq!(discarded, 10_000);
    drop(items);
    let server = p.server.client();
    assert!(eventually(PATIENCE, || async { server.stream_stats().producing == 0 }).await);
    p.shutdown().await;
}

async fn a_handler_error_after_k_items_arrives_after_them(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let mut items = open::<u64>(&c, &p, "count_then_fail", 5, 2).await;
    for expected in 0..5u64 {
        assert_eq!(items.next().await.unwrap().unwrap(), expected);
    }
    match items.next().await {
        Some(Err(Error::Handler(text))) => assert_eq!(text, "failed after 5 items"),
        other => panic!("expected the handler's error, got {other:?}"),
    }
    assert!(items.next().await.is_none());
    assert_eq!(c.stream_stats().reading, 0);
    p.shutdown().await;
}

async fn wrong_calls_end_with_typed_errors(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let mut missing = open::<u64>(&c, &p, "no_such_stream", 1, 4).await;
    assert!(matches!(
        missing.next().await,
        Some(Err(Error::NoSuchHandler(_)))
    ));
    let mut unary = c
        .active_message("echo")
        .unwrap()
        .payload("x")
        .unwrap()
        .expect_stream::<String>()
        .send(p.target())
        .await
        .unwrap();
    assert!(matches!(unary.next().await, Some(Err(Error::Refused(_)))));
    let plain = c
        .active_message("count")
        .unwrap()
        .payload(&3u64)
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await;
    assert!(matches!(plain, Err(Error::Refused(_))), "{plain:?}");
    p.shutdown().await;
}

async fn a_silent_producer_times_out_between_items(flavor: Flavor) {
    let p = pair(flavor).await;
    let silent = typed_stream_handler("silent", |_: TypedContext<()>, tx| async move {
        tx.send(&1u64).await.map_err(|e| e.to_string())?;
        tx.sink().cancelled().await;
        Ok(())
    });
    p.server.register_handler("silent", silent).await.unwrap();
    let c = p.client.client();
    let mut items = c
        .active_message("silent")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_stream::<u64>()
        .timeout(Duration::from_millis(300))
        .send(p.target())
        .await
        .unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), 1);
    assert!(matches!(items.next().await, Some(Err(Error::Timeout(_)))));
    assert!(items.next().await.is_none());
    // The timeout cancelled the handler too.
    let server = p.server.client();
    assert!(eventually(PATIENCE, || async { server.stream_stats().producing == 0 }).await);
    p.shutdown().await;
}

async fn many_streams_on_one_link_interleave(flavor: Flavor) {
    const STREAMS: usize = 16;
    const ITEMS: u64 = 2_000;
    let p = pair(flavor).await;
    let c = p.client.client();
    // One stream nobody reads: it must hold up neither the others nor calls.
    let stalled = ticks(&c, &p, 4).await;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        streams.push(open::<u64>(&c, &p, "count", ITEMS, 4).await);
    }
    // Reading one item of each in turn can only finish if the link
    // interleaves them: no stream may run more than its window ahead.
    for expected in 0..ITEMS {
        for s in &mut streams {
            assert_eq!(s.next().await.unwrap().unwrap(), expected);
        }
        if expected % 500 == 0 {
            assert_eq!(p.echo("between").await.unwrap(), "between");
        }
    }
    for s in &mut streams {
        assert!(s.next().await.is_none());
    }
    assert!(stalled.queued() <= 4);
    drop(stalled);
    p.shutdown().await;
}

macro_rules! conformance {
    ($($flavor:ident: $value:expr;)*) => {$(
        mod $flavor {
            use super::*;
            conformance!(@tests $value; hundred_thousand_items_arrive_in_order,
                raw_and_archived_items_read_the_same, a_reader_that_stops_reading_bounds_the_producer,
                dropping_mid_stream_cancels_the_handler, a_caller_that_goes_away_stops_its_streams,
                a_handler_ignoring_cancellation_has_its_items_discarded,
                a_handler_error_after_k_items_arrives_after_them, wrong_calls_end_with_typed_errors,
                a_silent_producer_times_out_between_items, many_streams_on_one_link_interleave);
        }
    )*};
    (@tests $value:expr; $($test:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            super::$test($value).await;
        }
    )*};
}

conformance! {
    local: Flavor::Local;
    tcp: Flavor::Tcp;
    shm: Flavor::Shm;
    uds: Flavor::Uds;
}
