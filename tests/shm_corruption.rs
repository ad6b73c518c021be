//! Misbehaving peers: the test plays raw peers through the public handshake
//! API, then writes garbage into the ring (a record, the ring header, a
//! record header, unknown flags, a forged sender). Each time the server
//! reports a protocol error and drops that link only, and keeps serving a
//! well-behaved peer.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use active_message::MessageId;
use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::wire::{self, Header, Kind};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Decode, Payload, TransportPolicy,
};
use common::raw_shm::{RawPeer, raw_peer};
use shm_ring::layout::{HEADER_SIZE, LINE};
use shm_ring::{Region, RingError};
use tokio::io::AsyncReadExt;

fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(10))
}

async fn server() -> ActiveMessageManager {
    let server = builder().build().await.unwrap();
    server
        .register_handler(
            "echo",
            typed_unary_handler("echo", |c: TypedContext<String>| Ok(c.input)),
        )
        .await
        .unwrap();
    server
}

/// A well-behaved manager connected to `server`, proving it still serves.
async fn check_still_serving(good: &ActiveMessageManager, server: &ActiveMessageManager) {
    let out: String = good
        .client()
        .active_message("echo")
        .unwrap()
        .payload("still here")
        .unwrap()
        .expect_response()
        .send(server.instance_id())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(out, "still here");
}

impl RawPeer {
    /// A well-formed request through the raw rings, answered by the server.
    async fn echo(&mut self, id: u64, text: &str) -> String {
        let header = Header::new(Kind::Request, MessageId(id), self.id);
        let payload = String::from(text).encode().unwrap();
        self.tx
            .push(&wire::encode_to_vec(&header, "echo", &payload))
            .await
            .unwrap();
        let grant = tokio::time::timeout(Duration::from_secs(5), self.rx.read())
            .await
            .unwrap()
            .unwrap();
        let bytes = grant.to_vec();
        grant.release();
        let view = wire::decode(&bytes, 1 << 20).unwrap();
        assert_eq!(view.header.kind, Kind::Response);
        assert_eq!(view.header.correlation_id, MessageId(id));
        String::decode(view.payload).unwrap()
    }

    /// Waits until the server hangs up on us; returns how long it took.
    async fn hung_up(&mut self) -> Duration {
        let t0 = Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), self.link.stream.read(&mut buf))
            .await
            .expect("the server kept the link")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // Our rings were closed too.
        assert!(self.tx.is_closed());
        assert!(matches!(self.rx.try_read(), Err(RingError::Closed)));
        t0.elapsed()
    }
}

/// Writes a word of the region the way a rogue peer would.
fn scribble(region: &Region, offset: usize, value: u64) {
    assert!(offset.is_multiple_of(8) && offset + 8 <= region.len());
    let word = region.as_ptr().wrapping_add(offset).cast::<AtomicU64>();
    // SAFETY: in bounds and 8-aligned (checked above; the region is page
    // aligned); every ring-header word is only ever accessed atomically, and
    // data words are plain bytes a peer may overwrite (the server never forms
    // references it relies on from them).
    unsafe { (*word).store(value, Ordering::Release) };
}

fn protocol_errors(m: &ActiveMessageManager) -> u64 {
    m.stats().counters.protocol_errors
}

async fn setup() -> (ActiveMessageManager, ActiveMessageManager) {
    let server = server().await;
    let good = builder().build().await.unwrap();
    good.client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    check_still_serving(&good, &server).await;
    (server, good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_record_drops_only_that_link() {
    let (server, good) = setup().await;
    let mut raw = raw_peer(&server).await;
    assert_eq!(raw.echo(1, "raw works").await, "raw works");
    raw.tx
        .push(b"this is not a frame, just garbage bytes in a record")
        .await
        .unwrap();
    raw.hung_up().await;
    assert_eq!(protocol_errors(&server), 1);
    check_still_serving(&good, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_ring_header_drops_only_that_link() {
    let (server, good) = setup().await;
    let mut raw = raw_peer(&server).await;
    assert_eq!(raw.echo(1, "before").await, "before");
    // The producer's tail, far beyond anything the ring could hold.
    scribble(
        &raw.link.region,
        raw.link.tx.offset + LINE,
        0xdead_beef_0000,
    );
    raw.link.tx_bells.data.ring();
    raw.hung_up().await;
    assert_eq!(protocol_errors(&server), 1);
    check_still_serving(&good, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_header_drops_only_that_link() {
    let (server, good) = setup().await;
    let mut raw = raw_peer(&server).await;
    // A record header claiming another position and kind, then a tail that
    // publishes it.
    let data = raw.link.tx.offset + HEADER_SIZE;
    scribble(&raw.link.region, data, 0x0063_0000_0040);
    scribble(&raw.link.region, data + 8, 0x1234_5678);
    scribble(&raw.link.region, raw.link.tx.offset + LINE, 96);
    raw.link.tx_bells.data.ring();
    raw.hung_up().await;
    assert_eq!(protocol_errors(&server), 1);
    check_still_serving(&good, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_record_flags_and_forged_senders_drop_the_link() {
    let (server, good) = setup().await;
    let mut raw = raw_peer(&server).await;
    let mut grant = raw.tx.reserve(64).await.unwrap();
    grant.set_flags(0x40);
    grant.commit();
    raw.hung_up().await;
    assert_eq!(protocol_errors(&server), 1);

    let mut raw = raw_peer(&server).await;
    let forged = Header::new(Kind::Request, MessageId(5), good.instance_id());
    let frame = wire::encode_to_vec(&forged, "echo", &String::from("x").encode().unwrap());
    raw.tx.push(&frame).await.unwrap();
    raw.hung_up().await;
    assert_eq!(protocol_errors(&server), 2);
    check_still_serving(&good, &server).await;
}
