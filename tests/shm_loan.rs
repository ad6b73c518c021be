//! Loans: a buffer lent by the link, filled by the caller, sent without a
//! copy over shared memory (the handler reads it in place, in the pooled
//! area) and by copy everywhere else, with every delivery mode.

mod common;

use active_message::handler_impls::{AmContext, am_handler, unary_handler_async};
use active_message::{ActiveMessageManager, Error, Loan};
use std::time::Duration;

use bytes::Bytes;
use common::{Flavor, Pair, pair};

/// Fills `buf` with a pattern that depends on `seed` and on every position.
fn fill(buf: &mut [u8], seed: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let word = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

/// Whether `buf` holds exactly `fill(_, seed)`.
fn holds(buf: &[u8], seed: u64) -> bool {
    let mut want = vec![0u8; buf.len()];
    fill(&mut want, seed);
    want == buf
}

/// The `/proc/self/maps` line of the mapping holding `address`.
fn mapping_of(address: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .find(|line| {
            let range = line.split_whitespace().next().unwrap_or_default();
            let (start, end) = range.split_once('-').unwrap_or_default();
            let start = usize::from_str_radix(start, 16).unwrap_or(usize::MAX);
            let end = usize::from_str_radix(end, 16).unwrap_or(0);
            (start..end).contains(&address)
        })
        .unwrap_or_default()
        .to_owned()
}

/// Where a handler expects its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// Anywhere (a copy).
    Anywhere,
    /// In the pooled area, frame copied there.
    Pool,
    /// In the pooled area, where the caller wrote it (page aligned).
    Loaned,
}

/// What a handler found in a payload, or why it refused it.
fn inspect(payload: &[u8], seed: u64, place: Where) -> Result<(), String> {
    if !holds(payload, seed) {
        return Err(format!("{} bytes differ from seed {seed}", payload.len()));
    }
    if place != Where::Anywhere {
        let at = payload.as_ptr() as usize;
        let mapping = mapping_of(at);
        if !mapping.contains("memfd:am-pool") {
            return Err(format!("payload copied out of the pool: {mapping:?}"));
        }
        if place == Where::Loaned && !at.is_multiple_of(4096) {
            return Err(format!("payload at {at:#x}, not page aligned"));
        }
    }
    Ok(())
}

/// Registers on `server` `check` (fails unless the payload holds `seed`'s
/// pattern where `place` says) and `check_reply` (the same
/// check, answering with the payload's length).
async fn register(server: &ActiveMessageManager, seed: u64, place: Where) {
    server
        .register_handler(
            "check",
            am_handler("check", move |c: AmContext| async move {
                inspect(&c.payload, seed, place)
            }),
        )
        .await
        .unwrap();
    server
        .register_handler(
            "check_reply",
            unary_handler_async("check_reply", move |c| async move {
                inspect(&c.payload, seed, place)?;
                Ok(Some(Bytes::from(
                    (c.payload.len() as u64).to_le_bytes().to_vec(),
                )))
            }),
        )
        .await
        .unwrap();
}

/// Calls and errors of `name` on `server` so far.
fn handler_counts(server: &ActiveMessageManager, name: &str) -> (u64, u64) {
    let stats = server.stats().handlers;
    let h = stats.iter().find(|h| h.name == name);
    h.map_or((0, 0), |h| (h.calls, h.errors))
}

async fn filled_loan(p: &Pair, len: usize, seed: u64) -> Loan {
    let mut loan = p.client.client().loan(p.target(), len).await.unwrap();
    assert_eq!(loan.len(), len);
    assert!((loan.as_ptr() as usize).is_multiple_of(active_message::LOAN_ALIGN));
    fill(&mut loan, seed);
    loan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_loan_is_read_in_place_by_the_handler() {
    let p = pair(Flavor::Shm).await;
    register(&p.server, 16, Where::Loaned).await;
    let loan = filled_loan(&p, 16 << 20, 16).await;
    assert!(loan.is_shared(), "a 16 MiB loan over shm lies in the pool");
    let client = p.client.client();
    client
        .active_message("check")
        .unwrap()
        .loaned(loan)
        .send(p.target())
        .await
        .expect("the handler found the loaned payload in place and intact");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loans_go_one_way_confirmed_and_with_a_response() {
    let p = pair(Flavor::Shm).await;
    register(&p.server, 3, Where::Loaned).await;
    let client = p.client.client();
    for round in 0..4 {
        let len = (1 << 20) + round * 4099;
        let reply = client
            .active_message("check_reply")
            .unwrap()
            .loaned(filled_loan(&p, len, 3).await)
            .expect_response::<()>()
            .send(p.target())
            .await
            .unwrap()
            .await_response_raw()
            .await
            .unwrap();
        assert_eq!(reply[..], (len as u64).to_le_bytes());
        client
            .active_message("check")
            .unwrap()
            .loaned(filled_loan(&p, len, 3).await)
            .send(p.target())
            .await
            .unwrap();
        client
            .active_message("check")
            .unwrap()
            .loaned(filled_loan(&p, len, 3).await)
            .target_instance(p.target())
            .execute()
            .await
            .unwrap();
    }
    // The one-way calls report nothing back: their handler's counters tell.
    let handled = || async { handler_counts(&p.server, "check").0 == 8 };
    assert!(common::eventually(Duration::from_secs(20), handled).await);
    assert_eq!(handler_counts(&p.server, "check").1, 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_loan_is_a_heap_buffer_sent_through_the_ring() {
    let p = pair(Flavor::Shm).await;
    register(&p.server, 5, Where::Anywhere).await;
    let loan = filled_loan(&p, 1000, 5).await;
    assert!(!loan.is_shared(), "1000 bytes fit a ring record");
    let client = p.client.client();
    client
        .active_message("check")
        .unwrap()
        .loaned(loan)
        .send(p.target())
        .await
        .unwrap();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_over_tcp_is_copied_and_arrives_intact() {
    let p = pair(Flavor::Tcp).await;
    register(&p.server, 9, Where::Anywhere).await;
    let loan = filled_loan(&p, 16 << 20, 9).await;
    assert!(!loan.is_shared(), "TCP lends heap buffers");
    let client = p.client.client();
    let reply = client
        .active_message("check_reply")
        .unwrap()
        .loaned(loan)
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(reply[..], (16u64 << 20).to_le_bytes());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_sent_to_another_peer_is_copied() {
    let p = pair(Flavor::Shm).await;
    let other = pair(Flavor::Shm).await;
    register(&other.server, 11, Where::Pool).await;
    p.client
        .client()
        .connect_to_peer(other.server.peer_info().await)
        .await
        .unwrap();
    // Lent by the link to `p.server`, sent to `other.server`: copied into
    // that link's own pool, where the handler reads it in place.
    let loan = filled_loan(&p, 2 << 20, 11).await;
    assert!(loan.is_shared());
    let cloned = loan.clone();
    assert!(!cloned.is_shared() && cloned[..] == loan[..]);
    p.client
        .client()
        .active_message("check")
        .unwrap()
        .loaned(loan)
        .send(other.target())
        .await
        .unwrap();
    p.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_to_an_unknown_peer_or_over_the_limit_is_refused() {
    let p = pair(Flavor::Shm).await;
    let client = p.client.client();
    let stranger = active_message::InstanceId::new_random();
    assert!(matches!(
        client.loan(stranger, 1 << 20).await,
        Err(Error::UnknownPeer(_))
    ));
    assert!(matches!(
        client.loan(p.target(), usize::MAX / 2).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    p.shutdown().await;
}
