//! Nothing acknowledged as sent is lost at shutdown: a flood of one-way
//! messages to a slow handler, then `shutdown()` of the sender; the handler
//! sees exactly as many messages as `execute()` returned `Ok` for.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    let sender = builder(flavor).build().await.unwrap();
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
