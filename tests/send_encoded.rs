//! A prepared sender's frames made of its encoded head: small ones are
//! patched into ring records, and those the ring cannot hold (larger than a
//! record) or does not hold now go the regular way (the pooled area), in
//! order, raw or archived, one by one or in batches mixing both sizes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use active_message::handler_impls::{ArchivedContext, am_handler, archived_unary_handler};
use common::{Flavor, eventually, pair_with};

/// Payload sizes in the order sent: record-sized and larger than a record of
/// the 64 KiB rings below.
const SIZES: [usize; 6] = [64, 200_000, 1, 100_000, 4_000, 300_000];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_frames_arrive_whole_and_in_order() {
    let p = pair_with(Flavor::Shm, |b| b.ring_capacity(64 << 10)).await;
    // Each handler notes the first byte and the length of what it got.
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let raw = am_handler("raw", move |ctx| {
        let first = ctx.payload.first().copied();
        g.lock().unwrap().push((first, ctx.payload.len()));
        async { Ok(()) }
    });
    p.server.register_handler("raw", raw).await.unwrap();
    let g = Arc::clone(&got);
    let typed = archived_unary_handler("typed", move |c: ArchivedContext<'_, Vec<u8>>| {
        g.lock()
            .unwrap()
            .push((c.input.first().copied(), c.input.len()));
        Ok(())
    });
    p.server.register_handler("typed", typed).await.unwrap();

    let client = p.client.client();
    let raw = client.one_way_sender("raw", p.target()).unwrap();
    let typed = client.one_way_sender("typed", p.target()).unwrap();
    let payloads: Vec<Vec<u8>> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![i as u8; n])
        .collect();
    let mut want = Vec::new();
    // One by one, raw then archived; then a raw and an archived batch.
    for (i, body) in payloads.iter().enumerate() {
        raw.send_raw(body).await.unwrap();
        want.push((Some(i as u8), body.len()));
    }
    for (i, body) in payloads.iter().enumerate() {
        typed.send(body).await.unwrap();
        want.push((Some(i as u8), body.len()));
    }
    raw.send_raw_batch(&payloads).await.unwrap();
    typed.send_batch(&payloads).await.unwrap();
    for _ in 0..2 {
        want.extend(
            payloads
                .iter()
                .enumerate()
                .map(|(i, b)| (Some(i as u8), b.len())),
        );
    }
    // One reader serves the link, so one sender's frames arrive in order.
    let all = eventually(Duration::from_secs(30), || async {
        got.lock().unwrap().len() >= want.len()
    })
    .await;
    assert!(
        all,
        "{} of {} frames arrived",
        got.lock().unwrap().len(),
        want.len()
    );
    assert_eq!(*got.lock().unwrap(), want);
    assert_eq!(p.server.stats().counters.protocol_errors, 0);
    p.shutdown().await;
}
