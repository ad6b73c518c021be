//! Small rules of docs/wire.md that the runtime once broke: a one-way
//! message never gets a reply (not even with the RECEIPT flag), a Cancel
//! reaches a saturated receiver, and a call that times out is counted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{TypedContext, am_handler, typed_unary_handler_async};
use active_message::wire::{self, Header, Kind, flags};
use active_message::{Error, InstanceId, MessageId};
use common::{Flavor, builder, eventually};

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_message_with_the_receipt_flag_gets_nothing_back() {
    let server = builder(Flavor::Tcp).build().await.unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    server
        .register_handler(
            "count",
            am_handler("count", move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();
    let endpoint = server.peer_info().await.tcp_endpoint.unwrap();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&endpoint).unwrap();
    let mut header = Header::new(Kind::OneWay, MessageId(7), InstanceId::new_random());
    header.flags = flags::RECEIPT | flags::RAW;
    raw.send(wire::encode_to_vec(&header, "count", b"x"), 0)
        .unwrap();
    assert!(eventually(PATIENCE, || async { seen.load(Ordering::SeqCst) == 1 }).await);
    // A receipt would have gone out before the handler ran.
    assert_eq!(server.stats().counters.replies_sent, 0);
    assert_eq!(
        raw.poll(zmq::POLLIN, 0).unwrap(),
        0,
        "the one-way message was answered"
    );
    server.shutdown().await.unwrap();
}

/// A server whose only permit is held by a handler that waits to be
/// cancelled: a Cancel queued behind the concurrency limit never arrives.
async fn cancel_reaches_a_saturated_receiver(flavor: Flavor) {
    let server = builder(flavor)
        .max_concurrent_handlers(1)
        .build()
        .await
        .unwrap();
    let cancelled = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&cancelled);
    server
        .register_handler(
            "wait_for_cancel",
            typed_unary_handler_async("wait_for_cancel", move |c: TypedContext<()>| {
                let seen = Arc::clone(&seen);
                async move {
                    c.cancel.cancelled().await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let client = builder(flavor).build().await.unwrap();
    let c = client.client();
    c.connect_to_peer(server.peer_info().await).await.unwrap();
    let outcome = c
        .active_message("wait_for_cancel")
        .unwrap()
        .payload(&())
        .unwrap()
        .timeout(Duration::from_millis(300))
        .expect_response::<()>()
        .send(server.instance_id())
        .await
        .unwrap()
        .await_response()
        .await;
    assert!(matches!(outcome, Err(Error::Timeout(_))), "{outcome:?}");
    assert_eq!(
        client.stats().counters.timeouts,
        1,
        "the timeout was not counted"
    );
    let reached = eventually(PATIENCE, || async { cancelled.load(Ordering::SeqCst) == 1 }).await;
    assert!(reached, "the Cancel never reached the saturated receiver");
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_saturated_receiver_over_tcp() {
    cancel_reaches_a_saturated_receiver(Flavor::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_saturated_receiver_over_shm() {
    cancel_reaches_a_saturated_receiver(Flavor::Shm).await;
}
