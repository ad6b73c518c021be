//! In-process links come and go without leaving memory behind: each link
//! keeps reused buffers and a receive arena of its own (a few 64 KiB
//! chunks, 2 MiB ones once medium frames pass), so a link that outlived its
//! managers, or a pool that grew per use, shows in resident memory here.
//!
//! A serving manager stays up; each cycle builds a client manager, connects
//! it, makes calls of 64 B, 16 KiB (a medium frame: the arena's large
//! chunks) and 200 KiB (past the reused buffer), sends one-way messages of
//! the same sizes, and shuts the client down. After a warm-up, the process's
//! open fds and resident memory must come back to their level.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{TypedContext, am_handler, typed_unary_handler};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder};
use bytes::Bytes;
use common::resources::Resources;

/// Cycles before the baseline: the runtime's lazily made state (worker
/// threads, allocator arenas, tracing callsites) exists by then.
const WARM_UP: usize = 5;
/// Cycles measured against the baseline.
const CYCLES: usize = 40;
/// Frame sizes of each cycle's calls and one-way messages.
const SIZES: [usize; 3] = [64, 16 << 10, 200 << 10];
/// Resident memory may exceed the baseline by this much (freed heap memory
/// stays with the allocator's arenas). A link kept per cycle holds at least
/// its 2 MiB arena chunk: 40 cycles would add 80 MiB.
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// How long teardown may take after the last cycle.
const SETTLE: Duration = Duration::from_secs(10);

fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(20))
        .endpoint("local://")
        .shm(false)
}

async fn server(received: &Arc<AtomicU64>) -> ActiveMessageManager {
    let server = builder().build().await.unwrap();
    let echo = typed_unary_handler("echo", |c: TypedContext<Vec<u8>>| Ok(c.input));
    let r = Arc::clone(received);
    let sink = am_handler("sink", move |_ctx| {
        let r = Arc::clone(&r);
        async move {
            r.fetch_add(1, Ordering::Release);
            Ok(())
        }
    });
    server.register_handler("echo", echo).await.unwrap();
    server.register_handler("sink", sink).await.unwrap();
    server
}

/// One client manager's life: connect, calls and one-way messages of every
/// size, shutdown.
async fn cycle(server: &ActiveMessageManager, received: &AtomicU64) {
    let client = builder().build().await.unwrap();
    let c = client.client();
    c.connect_to_peer(server.peer_info().await).await.unwrap();
    let target = server.instance_id();
    let before = received.load(Ordering::Acquire);
    for size in SIZES {
        let input = vec![size as u8; size];
        let status = c
            .active_message("echo")
            .unwrap()
            .payload(&input)
            .unwrap()
            .expect_response::<Vec<u8>>()
            .send(target);
        let out = status.await.unwrap().await_response().await.unwrap();
        assert_eq!(out, input);
        let m = c.active_message("sink").unwrap();
        m.raw_payload(Bytes::from(input))
            .send(target)
            .await
            .unwrap();
    }
    let all = before + SIZES.len() as u64;
    let handled = common::eventually(SETTLE, || async { received.load(Ordering::Acquire) >= all });
    assert!(handled.await, "the one-way messages never all ran");
    client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_managers_coming_and_going_leave_fds_and_memory_at_their_level() {
    let received = Arc::new(AtomicU64::new(0));
    let server = server(&received).await;
    for _ in 0..WARM_UP {
        cycle(&server, &received).await;
    }
    let base = Resources::now();
    for _ in 0..CYCLES {
        cycle(&server, &received).await;
    }
    let end = Resources::settle_to(&base, RSS_SLACK_KIB, SETTLE).await;
    eprintln!("after warm-up: {base}; after {CYCLES} cycles: {end}");
    assert!(end.fds <= base.fds, "fds leaked: {end} vs {base}");
    assert!(
        end.rss_kib <= base.rss_kib + RSS_SLACK_KIB,
        "resident memory grew by {} KiB over {CYCLES} cycles ({end} vs {base})",
        end.rss_kib - base.rss_kib
    );
    server.shutdown().await.unwrap();
}
