//! Per-link and per-handler counters move by exactly the traffic sent.

mod common;

use std::time::Duration;

use active_message::{Error, HandlerStat, LinkCounterValues, StatsSnapshot};
use common::{Flavor, Pair, pair};

fn link_to_server(p: &Pair) -> LinkCounterValues {
    let stats = p.client.stats();
    let peer = stats
        .peers
        .iter()
        .find(|peer| peer.instance_id == p.target())
        .expect("the client lists its server");
    peer.counters.clone()
}

fn handler(stats: &StatsSnapshot, name: &str) -> HandlerStat {
    stats
        .handlers
        .iter()
        .find(|h| h.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing from {:?}", stats.handlers))
}

async fn echo(p: &Pair, text: &str) {
    assert_eq!(p.echo(text).await.unwrap(), text);
}

async fn echo_bytes(p: &Pair, len: usize) {
    let out = p
        .client
        .client()
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(vec![7u8; len])
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(out.len(), len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_link_counts_frames_bytes_and_large_frames_exactly() {
    let p = pair(Flavor::Shm).await;
    let before = link_to_server(&p);
    for _ in 0..3 {
        echo(&p, "hi").await;
    }
    // Over half the default 1 MiB ring: it takes the large-frame path both ways.
    let big = 600 * 1024;
    echo_bytes(&p, big).await;
    // The reader publishes a run's frame counts when the run ends, which
    // may be just after the reply it routed reached its caller.
    let counted = || async { link_to_server(&p).messages_in - before.messages_in >= 4 };
    assert!(common::eventually(Duration::from_secs(10), counted).await);
    let after = link_to_server(&p);
    assert_eq!(after.messages_out - before.messages_out, 4);
    assert_eq!(after.messages_in - before.messages_in, 4);
    assert_eq!(after.large_frames - before.large_frames, 1);
    assert!(after.large_bytes - before.large_bytes > big as u64);
    assert!(after.bytes_out - before.bytes_out > big as u64);
    assert!(after.bytes_in - before.bytes_in > big as u64);
    assert_eq!(after.send_errors, 0);
    assert_eq!(after.timeouts, 0);
    assert_eq!(after.protocol_errors, 0);
    assert_eq!(p.client.stats().peers[0].calls_in_flight, 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_shm_reader_parks() {
    let p = pair(Flavor::Shm).await;
    // `slow` sleeps 20 ms: far past the reader's 50 µs spin budget, so the
    // client's reader parks.
    let out: u64 = p
        .client
        .client()
        .active_message("slow")
        .unwrap()
        .payload(&20u64)
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(out, 20);
    let link = link_to_server(&p);
    assert!(link.parks >= 1, "{link:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_count_calls_errors_and_latencies() {
    for flavor in [Flavor::Shm, Flavor::Tcp] {
        let p = pair(flavor).await;
        let before = link_to_server(&p);
        for _ in 0..3 {
            echo(&p, "hi").await;
        }
        let failed = p
            .client
            .client()
            .active_message("fail_bytes")
            .unwrap()
            .raw_payload(vec![1u8; 10])
            .expect_response::<()>()
            .send(p.target())
            .await
            .unwrap()
            .await_response_raw()
            .await;
        assert!(matches!(failed, Err(Error::Handler(_))), "{failed:?}");
        let stats = p.server.stats();
        let echo = handler(&stats, "echo");
        assert_eq!((echo.calls, echo.errors), (3, 0), "{flavor:?}");
        assert_eq!(echo.latency_buckets.iter().sum::<u64>(), 3);
        let fail = handler(&stats, "fail_bytes");
        assert_eq!((fail.calls, fail.errors), (1, 1), "{flavor:?}");
        let untouched = handler(&stats, "echo_bytes");
        assert_eq!(untouched.calls, 0);
        if flavor == Flavor::Tcp {
            // TCP links count too: 4 requests out; 4 replies in (plus any
            // heartbeat that happened to arrive meanwhile).
            let link = link_to_server(&p);
            assert_eq!(link.messages_out - before.messages_out, 4, "{link:?}");
            assert!(link.messages_in - before.messages_in >= 4, "{link:?}");
        }
        p.shutdown().await;
    }
}
