//! Cancelling the manager's root token from outside shuts it down: it stops
//! admitting work, and a peer's next call fails promptly with
//! `ShuttingDown` or `PeerLost` (never a timeout).

mod common;

use std::time::Duration;

use active_message::Error;
use common::{Flavor, eventually, pair};

async fn external_cancel_stops_the_manager(flavor: Flavor) {
    let pair = pair(flavor).await;
    let client = pair.client.client();
    let call = || async {
        client
            .active_message("echo")?
            .payload("ping")?
            .timeout(Duration::from_secs(30))
            .expect_response::<String>()
            .send(pair.target())
            .await?
            .await_response()
            .await
    };
    assert_eq!(call().await.unwrap(), "ping");
    pair.server.cancel_token().cancel();
    let stopped = eventually(Duration::from_secs(10), || async {
        !pair.server.client().is_admitting()
    })
    .await;
    assert!(
        stopped,
        "the manager kept admitting after its root token was cancelled"
    );
    // Calls made while the shutdown completes may still be answered; the
    // first one that fails must fail for the right reason, and promptly.
    let mut failed = None;
    for _ in 0..1000 {
        match call().await {
            Ok(_) => tokio::task::yield_now().await,
            Err(err) => {
                failed = Some(err);
                break;
            }
        }
    }
    let err = failed.expect("calls still succeed after the root token was cancelled");
    assert!(
        matches!(err, Error::ShuttingDown | Error::PeerLost(_)),
        "call failed with {err}"
    );
    pair.client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_cancel_over_tcp() {
    external_cancel_stops_the_manager(Flavor::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_cancel_over_shm() {
    external_cancel_stops_the_manager(Flavor::Shm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_cancel_in_process() {
    external_cancel_stops_the_manager(Flavor::Local).await;
}
