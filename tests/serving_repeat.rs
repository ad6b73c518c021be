//! The serving side's shortcut for a one-way frame shaped like the run's
//! last one (same kind, flags and handler name, byte for byte): it is run
//! again without a full decode and without a second route. These tests write
//! whole runs straight into a raw peer's ring (published together, so the
//! server reads them back to back) and check that the shortcut never calls
//! the wrong handler, never calls a replaced one, and never lets through a
//! frame the full checks refuse.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use active_message::handler_impls::{ArchivedContext, am_handler, archived_unary_handler};
use active_message::wire::{self, Header, Kind};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, HandlerRef, InstanceId, MessageId, Payload,
    TransportPolicy,
};
use common::eventually;
use common::raw_shm::{RawPeer, raw_peer};
use tokio::io::AsyncReadExt;

const PATIENCE: Duration = Duration::from_secs(30);

async fn server() -> ActiveMessageManager {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap()
}

fn one_way(from: InstanceId, id: u64, name: &[u8], payload: &[u8]) -> Vec<u8> {
    // Encoded with a placeholder name of the same length, then the name's
    // bytes written in (they need not be UTF-8: a peer may send anything).
    let placeholder = "x".repeat(name.len());
    let mut frame = wire::encode_to_vec(
        &Header::new(Kind::OneWay, MessageId(id), from),
        &placeholder,
        payload,
    );
    frame[wire::HEADER_LEN..wire::HEADER_LEN + name.len()].copy_from_slice(name);
    frame
}

/// Writes `frames` as one run: held back, then published by one store of the
/// ring's tail, so the server reads them back to back.
fn write_run(raw: &mut RawPeer, frames: &[Vec<u8>]) {
    raw.tx.hold();
    for frame in frames {
        raw.tx.try_push(frame).unwrap();
    }
    raw.tx.flush();
}

/// An async one-way handler counting calls, and calls whose payload's first
/// byte is not `tag` (a frame meant for another handler).
fn tagged(name: &str, tag: u8, calls: &Arc<AtomicU64>, wrong: &Arc<AtomicU64>) -> HandlerRef {
    let (calls, wrong) = (Arc::clone(calls), Arc::clone(wrong));
    am_handler(name, move |ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        if ctx.payload.first() != Some(&tag) {
            wrong.fetch_add(1, Ordering::SeqCst);
        }
        async { Ok(()) }
    })
}

async fn reached(counter: &AtomicU64, n: u64) -> bool {
    eventually(PATIENCE, || async { counter.load(Ordering::SeqCst) >= n }).await
}

/// Waits until the server hangs up on the raw peer.
async fn hung_up(raw: &mut RawPeer) {
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(PATIENCE, raw.link.stream.read(&mut buf))
        .await
        .expect("the server kept the link")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_one_length_alternating_in_a_run_reach_their_own_handlers() {
    let server = server().await;
    let counts: Vec<_> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let (a, a_wrong, b, b_wrong) = (&counts[0], &counts[1], &counts[2], &counts[3]);
    let handlers = [("aaaa", b'a', a, a_wrong), ("bbbb", b'b', b, b_wrong)];
    for (name, tag, calls, wrong) in handlers {
        let h = tagged(name, tag, calls, wrong);
        server.register_handler(name, h).await.unwrap();
    }
    let mut raw = raw_peer(&server).await;
    // Repeats and switches in one run: a a b a b b b a ...
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut to_a, mut to_b) = (0, 0);
    let frames: Vec<_> = (1..=300u64)
        .map(|id| match rng.bool() {
            true => (to_a += 1, one_way(raw.id, id, b"aaaa", b"a-payload")).1,
            false => (to_b += 1, one_way(raw.id, id, b"bbbb", b"b-payload")).1,
        })
        .collect();
    write_run(&mut raw, &frames);
    assert!(reached(a, to_a).await && reached(b, to_b).await);
    let seen = |c: &AtomicU64| c.load(Ordering::SeqCst);
    assert_eq!((seen(a), seen(b)), (to_a, to_b));
    assert_eq!(
        (seen(a_wrong), seen(b_wrong)),
        (0, 0),
        "a frame reached the other handler"
    );
    server.shutdown().await.unwrap();
}

/// A run of `n` good frames to `count`, then `bad` (same shape but for what
/// makes it bad): the bad frame drops the link and never reaches the handler.
async fn bad_frame_after_a_run(bad: impl FnOnce(&RawPeer) -> Vec<u8>) {
    let server = server().await;
    let (calls, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let h = tagged("count", b'c', &calls, &wrong);
    server.register_handler("count", h).await.unwrap();
    let mut raw = raw_peer(&server).await;
    const N: u64 = 100;
    let mut frames: Vec<_> = (1..=N)
        .map(|id| one_way(raw.id, id, b"count", b"c"))
        .collect();
    frames.push(bad(&raw));
    write_run(&mut raw, &frames);
    hung_up(&mut raw).await;
    assert_eq!(server.stats().counters.protocol_errors, 1);
    assert!(reached(&calls, N).await);
    assert_eq!(calls.load(Ordering::SeqCst), N, "the bad frame ran");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_utf8_after_a_run_of_its_length_drops_the_link() {
    bad_frame_after_a_run(|raw| one_way(raw.id, 1_000, &[0xff, 0xfe, b'u', b'n', b't'], b"c"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_sender_after_a_run_drops_the_link() {
    bad_frame_after_a_run(|_| one_way(InstanceId::new_random(), 1_000, b"count", b"c")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_message_id_after_a_run_drops_the_link() {
    bad_frame_after_a_run(|raw| one_way(raw.id, 0, b"count", b"c")).await;
}

/// The handler kinds a run can hold.
#[derive(Clone, Copy)]
enum HandlerKind {
    Async,
    ZeroCopy,
}

/// A handler for `swap` counting its calls; at the call for `stop` it tells
/// `hit` and waits for `go` (the test swaps the registration meanwhile).
fn swap_handler(
    kind: HandlerKind,
    calls: &Arc<AtomicU64>,
    stop: Option<(u64, mpsc::Sender<()>, mpsc::Receiver<()>)>,
) -> HandlerRef {
    let calls = Arc::clone(calls);
    let stop = Mutex::new(stop);
    let on_call = move |value: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut stop = stop.lock().unwrap();
        if let Some((at, hit, go)) = stop.as_ref()
            && *at == value
        {
            hit.send(()).unwrap();
            go.recv_timeout(PATIENCE).expect("the test never said go");
            *stop = None;
        }
    };
    match kind {
        HandlerKind::Async => am_handler("swap", move |ctx| {
            let value = u64::from_le_bytes(ctx.payload[..8].try_into().unwrap());
            on_call(value);
            async { Ok(()) }
        }),
        HandlerKind::ZeroCopy => {
            archived_unary_handler("swap", move |c: ArchivedContext<'_, u64>| {
                on_call(c.input.to_native());
                Ok(())
            })
        }
    }
}

async fn a_handler_replaced_mid_run_gets_the_rest_of_the_run(kind: HandlerKind) {
    let server = server().await;
    let (old_calls, new_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (hit_tx, hit_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    const N: u64 = 100;
    const STOP: u64 = 40;
    let old = swap_handler(kind, &old_calls, Some((STOP, hit_tx, go_rx)));
    server
        .register_handler("swap", Arc::clone(&old))
        .await
        .unwrap();
    let mut raw = raw_peer(&server).await;
    let payload = |v: u64| match kind {
        HandlerKind::Async => v.to_le_bytes().to_vec(),
        HandlerKind::ZeroCopy => v.encode().unwrap().to_vec(),
    };
    let frames: Vec<_> = (0..N)
        .map(|v| one_way(raw.id, v + 1, b"swap", &payload(v)))
        .collect();
    write_run(&mut raw, &frames);
    // The old handler is inside its call for STOP, mid-run.
    tokio::task::spawn_blocking(move || hit_rx.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .expect("the old handler never reached the stop value");
    assert!(server.deregister_handler("swap").await.unwrap());
    let new = swap_handler(kind, &new_calls, None);
    server.register_handler("swap", new).await.unwrap();
    go_tx.send(()).unwrap();
    assert!(reached(&new_calls, N - STOP - 1).await);
    assert_eq!(
        old_calls.load(Ordering::SeqCst),
        STOP + 1,
        "the old handler ran on"
    );
    assert_eq!(new_calls.load(Ordering::SeqCst), N - STOP - 1);
    drop(old);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_handler_replaced_mid_run_gets_no_more_calls() {
    a_handler_replaced_mid_run_gets_the_rest_of_the_run(HandlerKind::Async).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_copy_handler_replaced_mid_run_gets_no_more_calls() {
    a_handler_replaced_mid_run_gets_the_rest_of_the_run(HandlerKind::ZeroCopy).await;
}
