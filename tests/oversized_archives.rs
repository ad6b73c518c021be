//! An archived payload over the peer's frame limit never reaches the wire:
//! the caller gets `PayloadTooLarge` before anything is sent (raw payloads
//! and archives alike), and the link keeps serving the next call.

mod common;

use active_message::Error;
use common::{Flavor, pair_with};

async fn archive_over_the_limit_is_refused_before_sending(flavor: Flavor) {
    let pair = pair_with(flavor, |b| b.max_message_bytes(1024)).await;
    let client = pair.client.client();
    let call = |text: String| {
        let client = client.clone();
        let target = pair.target();
        async move {
            client
                .active_message("echo")?
                .payload(text.as_str())?
                .expect_response::<String>()
                .send(target)
                .await?
                .await_response()
                .await
        }
    };
    let big = "x".repeat(8 * 1024);
    match call(big).await {
        Err(Error::PayloadTooLarge { size, max }) => assert!(size > max, "{size} <= {max}"),
        other => panic!("an 8 KiB archive to a 1 KiB peer gave {other:?}"),
    }
    let raw = client
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(vec![0u8; 8 * 1024])
        .expect_response::<()>()
        .send(pair.target())
        .await;
    assert!(
        matches!(raw, Err(Error::PayloadTooLarge { .. })),
        "raw: {raw:?}"
    );
    assert_eq!(call("still here".into()).await.unwrap(), "still here");
    assert_eq!(pair.server.stats().counters.protocol_errors, 0);
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp() {
    archive_over_the_limit_is_refused_before_sending(Flavor::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_shm() {
    archive_over_the_limit_is_refused_before_sending(Flavor::Shm).await;
}
