//! Error texts sent to peers reveal nothing internal: a payload that does
//! not decode as the handler's input type gets a fixed `Codec` text, never
//! the decoder's own message (which quotes process memory addresses).

mod common;

use active_message::Error;
use common::{Flavor, pair};

async fn undecodable_payloads_get_a_fixed_text(flavor: Flavor) {
    let pair = pair(flavor).await;
    let client = pair.client.client();
    // Short and long garbage, and bytes shaped like a relative pointer.
    let inputs: [Vec<u8>; 4] = [
        vec![1, 2],
        vec![0xff; 8],
        vec![0x10, 0, 0, 0, 0x40, 0, 0, 0],
        (0..=255).collect(),
    ];
    let mut refused = 0;
    for input in inputs {
        let outcome = client
            .active_message("echo")
            .unwrap()
            .raw_payload(input.clone())
            .expect_response::<String>()
            .send(pair.target())
            .await
            .unwrap()
            .await_response()
            .await;
        match outcome {
            // Some byte patterns happen to be valid archives of a string.
            Ok(_) => {}
            Err(Error::Codec(text)) => {
                refused += 1;
                assert!(
                    !text.contains("0x") && !text.contains("ptr"),
                    "{input:?}: the error text reveals internals: {text}"
                );
            }
            Err(err) => panic!("{input:?}: expected a codec error, got {err}"),
        }
    }
    assert!(refused >= 2, "only {refused} garbage payloads were refused");
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp() {
    undecodable_payloads_get_a_fixed_text(Flavor::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_shm() {
    undecodable_payloads_get_a_fixed_text(Flavor::Shm).await;
}
