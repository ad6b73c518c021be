//! A large payload a handler keeps ([`PayloadBuf`], read in place from the
//! sender's pooled segment): a slice or a clone of it holds the whole
//! buffer, which the sender never overwrites while held; it stays valid
//! memory after the link closed; and the last drop reclaims it.
//!
//! Its own test binary: it asserts the process-wide pool levels.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use active_message::handler_impls::{AmContext, am_handler};
use active_message::transport::shm::pool_usage;
use active_message::{ActiveMessageManager, PayloadBuf};
use bytes::Bytes;
use common::{Flavor, eventually, pair};

const LEN: usize = 1 << 20;
/// The part of each kept payload the handler keeps a slice of.
const KEPT: std::ops::Range<usize> = 4096..8192;

/// A payload of `len` bytes whose content depends on `seq`.
fn payload(seq: u64, len: usize) -> Bytes {
    let mut out = vec![0u8; len];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let word = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(out)
}

type Kept = Arc<Mutex<Vec<PayloadBuf>>>;

/// `keep` keeps a clone of a slice of its payload (dropping the payload
/// itself); `pass` keeps nothing.
async fn register(server: &ActiveMessageManager) -> Kept {
    let kept: Kept = Arc::default();
    let k = Arc::clone(&kept);
    let keep = am_handler("keep", move |c: AmContext| {
        let k = Arc::clone(&k);
        async move {
            let slice = c.payload.slice(KEPT);
            assert!(slice.is_pooled(), "a 1 MiB payload is read in place");
            // A clone is kept and the slice dropped: one holder remains (for
            // the first message, as `Bytes`, whose owner holds it the same way).
            let mut k = k.lock().unwrap();
            let kept = match k.is_empty() {
                true => PayloadBuf::from(slice.to_bytes()),
                false => slice.clone(),
            };
            k.push(kept);
            drop((slice, c));
            Ok(())
        }
    });
    let pass = am_handler("pass", |c: AmContext| async move {
        std::hint::black_box(c.payload.len());
        Ok(())
    });
    for (name, h) in [("keep", keep), ("pass", pass)] {
        server.register_handler(name, h).await.unwrap();
    }
    kept
}

async fn send(p: &common::Pair, handler: &str, body: Bytes) {
    p.client
        .client()
        .active_message(handler)
        .unwrap()
        .raw_payload(body)
        .send(p.target())
        .await
        .unwrap();
}

fn check(kept: &Kept, held: u64) {
    for (seq, got) in kept.lock().unwrap().iter().enumerate() {
        let want = payload(seq as u64, LEN).slice(KEPT);
        assert!(*got == want, "kept slice of message {seq} changed");
    }
    assert_eq!(pool_usage().rx_held, held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_slices_hold_their_buffers_past_the_link_and_the_last_drop_reclaims_them() {
    let start = pool_usage();
    let p = pair(Flavor::Shm).await;
    let kept = register(&p.server).await;
    for seq in 0..3 {
        send(&p, "keep", payload(seq, LEN)).await;
    }
    assert_eq!(kept.lock().unwrap().len(), 3);
    check(&kept, start.rx_held + 3);

    // The sender goes on with fresh buffers, never the three held ones.
    for seq in 100..120 {
        send(&p, "pass", payload(seq, LEN)).await;
    }
    check(&kept, start.rx_held + 3);

    // The link ends; the held segments stay mapped for their holders.
    let server = p.server;
    p.client.shutdown().await.unwrap();
    // Closed when the sender's pool is gone and the receiver maps only
    // the segments still held.
    let closed = eventually(Duration::from_secs(10), || async {
        let now = pool_usage();
        now.tx_segments == start.tx_segments && now.rx_segments == start.rx_segments + 3
    })
    .await;
    assert!(closed, "the link closed: {:?}", pool_usage());
    check(&kept, start.rx_held + 3);

    // The last holders go: the segments are unmapped.
    kept.lock().unwrap().clear();
    assert_eq!(pool_usage(), start);
    server.shutdown().await.unwrap();
}
