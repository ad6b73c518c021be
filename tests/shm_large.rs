//! Large messages over shared memory with the default configuration: they go
//! through the link's pooled large-buffer area. Order with small messages,
//! buffers held by a receiver, backpressure at the pool's cap, and a
//! 256 MiB round trip.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use active_message::handler_impls::{AmContext, am_handler, unary_handler};
use active_message::transport::shm::{ShmConfig, pool_usage};
use active_message::{ActiveMessageManager, Error, PayloadBuf};
use bytes::Bytes;
use common::{Flavor, builder, eventually, pair};

/// A payload of `len` bytes whose content depends on `seq`.
fn payload(seq: u64, len: usize) -> Bytes {
    let mut out = vec![0u8; len];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let word = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(out)
}

/// Registers `log` on `server`: a synchronous handler (run by the link's
/// reader, in arrival order) that logs every payload.
async fn log_handler(server: &ActiveMessageManager) -> Arc<Mutex<Vec<PayloadBuf>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    server
        .register_handler(
            "log",
            unary_handler("log", move |c| {
                l.lock().unwrap().push(c.payload);
                Ok(None)
            }),
        )
        .await
        .unwrap();
    log
}

/// Registers `keep` on `server`: every payload is kept in `kept`.
async fn keep_handler(server: &ActiveMessageManager) -> Arc<Mutex<Vec<PayloadBuf>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = Arc::clone(&kept);
    server
        .register_handler(
            "keep",
            am_handler("keep", move |c: AmContext| {
                let k = Arc::clone(&k);
                async move {
                    k.lock().unwrap().push(c.payload);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    kept
}

async fn send(client: &ActiveMessageManager, to: &ActiveMessageManager, body: Bytes) {
    client
        .client()
        .active_message("keep")
        .unwrap()
        .raw_payload(body)
        .send(to.instance_id())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_small_and_large_messages_keep_their_order_and_contents() {
    let p = pair(Flavor::Shm).await;
    let kept = log_handler(&p.server).await;
    let sizes = [
        100,
        4 << 20,
        64 << 10,
        1 << 20,
        7,
        (16 << 20) + 3,
        600 << 10,
    ];
    let mut sent = Vec::new();
    for seq in 0..3 * sizes.len() as u64 {
        let body = payload(seq, sizes[seq as usize % sizes.len()]);
        // One-way: nothing waits for the handler, so order is the link's.
        p.client
            .client()
            .active_message("log")
            .unwrap()
            .raw_payload(body.clone())
            .target_instance(p.target())
            .execute()
            .await
            .unwrap();
        sent.push(body);
    }
    let n = sent.len();
    assert!(
        eventually(Duration::from_secs(20), || async {
            kept.lock().unwrap().len() == n
        })
        .await
    );
    let got = kept.lock().unwrap().clone();
    for (i, (got, want)) in got.iter().zip(&sent).enumerate() {
        assert!(got == want, "message {i} ({} bytes) differs", want.len());
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_buffer_is_never_overwritten_and_a_full_pool_pushes_back() {
    // Room for three 2 MiB segments per direction.
    let cap = 3 * ((2 << 20) + (512 << 10) + 4096);
    let config = || ShmConfig::default().with_pool_cap(cap);
    let server = builder(Flavor::Shm)
        .shm_config(config())
        .build()
        .await
        .unwrap();
    let kept = keep_handler(&server).await;
    let client = builder(Flavor::Shm)
        .shm_config(config())
        .build()
        .await
        .unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();

    let first = payload(1, 2 << 20);
    send(&client, &server, first.clone()).await;
    // The receiver keeps the first; the sender goes on and on, releasing
    // each later one as soon as it arrives.
    for seq in 2..40 {
        send(&client, &server, payload(seq, 2 << 20)).await;
        kept.lock().unwrap().truncate(1);
    }
    assert!(kept.lock().unwrap()[0] == first, "a held buffer changed");

    // Now keep everything: the cap is reached and the sender is pushed back.
    let mut outcome = Ok(());
    for seq in 100..110 {
        outcome = client
            .client()
            .active_message("keep")
            .unwrap()
            .raw_payload(payload(seq, 2 << 20))
            .timeout(Duration::from_millis(300))
            .target_instance(server.instance_id())
            .execute()
            .await;
        if outcome.is_err() {
            break;
        }
    }
    assert!(matches!(outcome, Err(Error::Timeout(_))), "{outcome:?}");
    assert!(kept.lock().unwrap()[0] == first);
    // Released buffers are reused: sending works again.
    kept.lock().unwrap().clear();
    send(&client, &server, payload(200, 2 << 20)).await;
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_round_trip_works_with_the_default_configuration() {
    let p = pair(Flavor::Shm).await;
    let body = payload(7, 256 << 20);
    let back = p
        .client
        .client()
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(body.clone())
        .timeout(Duration::from_secs(60))
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(back.len(), body.len());
    assert!(back == body, "256 MiB came back changed");
    // It went through the pooled area (no memfd of its own).
    assert!(pool_usage().tx_bytes >= 2 * (256 << 20));
    p.shutdown().await;
}
