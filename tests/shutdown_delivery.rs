//! Nothing acknowledged as sent is lost at shutdown: a flood of one-way
//! messages to a slow handler, then `shutdown()` of the sender; the handler
//! sees exactly as many messages as `execute()` returned `Ok` for.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::Error;
use active_message::handler_impls::am_handler;
use common::{Flavor, builder, eventually};

const FLOOD: usize = 3000;

async fn flood_then_shutdown(flavor: Flavor) {
    let server = builder(flavor)
        .max_concurrent_handlers(4)
        .build()
        .await
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    server
        .register_handler(
            "slow_note",
            am_handler("slow_note", move |_| {
                let counter = Arc::clone(&counter);
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    // A budget no loaded machine exhausts: this test is about delivery.
    let sender = builder(flavor)
        .shutdown_timeout(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let client = sender.client();
    client
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let target = server.instance_id();
    let mut ok = 0u64;
    for i in 0..FLOOD as u64 {
        let sent = client
            .active_message("slow_note")
            .unwrap()
            .payload(&i)
            .unwrap()
            .target_instance(target)
            .execute()
            .await;
        if sent.is_ok() {
            ok += 1;
        }
    }
    sender.shutdown().await.unwrap();
    assert_eq!(ok, FLOOD as u64, "every send was accepted before shutdown");
    let all = eventually(Duration::from_secs(60), || async {
        seen.load(Ordering::SeqCst) >= ok
    })
    .await;
    assert!(
        all,
        "{} of {ok} acknowledged messages reached the handler",
        seen.load(Ordering::SeqCst)
    );
    assert_eq!(seen.load(Ordering::SeqCst), ok);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_then_shutdown_over_shm() {
    flood_then_shutdown(Flavor::Shm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_then_shutdown_over_tcp() {
    flood_then_shutdown(Flavor::Tcp).await;
}

/// A receiver stuck in a handler with a full inbox cannot read the rest, so
/// a short shutdown deadline passes: the sender says so instead of `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undrained_tcp_link_makes_shutdown_report_it() {
    let server = builder(Flavor::Tcp)
        .max_concurrent_handlers(1)
        .inbox_capacity(1)
        .build()
        .await
        .unwrap();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let (gate, count) = (Arc::clone(&release), Arc::clone(&started));
    server
        .register_handler(
            "stuck",
            am_handler("stuck", move |_| {
                let (gate, count) = (Arc::clone(&gate), Arc::clone(&count));
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _pass = gate.acquire().await;
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let sender = builder(Flavor::Tcp)
        .shutdown_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let client = sender.client();
    client
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    for i in 0..50u64 {
        client
            .active_message("stuck")
            .unwrap()
            .payload(&i)
            .unwrap()
            .target_instance(server.instance_id())
            .execute()
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await
    );
    let outcome = sender.shutdown().await;
    assert!(
        matches!(outcome, Err(Error::ShutdownIncomplete { links: 1 })),
        "{outcome:?}"
    );
    release.add_permits(tokio::sync::Semaphore::MAX_PERMITS);
    server.shutdown().await.unwrap();
}
