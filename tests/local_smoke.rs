//! In-process tests of the zero-copy handler kind and of panicking handlers
//! (every pattern is covered per transport by tests/conformance.rs).

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, Error};

async fn pair() -> (ActiveMessageManager, ActiveMessageManager) {
    let a = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .build()
        .await
        .unwrap();
    let b = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .build()
        .await
        .unwrap();
    a.client()
        .connect_to_peer(b.peer_info().await)
        .await
        .unwrap();
    (a, b)
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Vector {
    values: Vec<u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_handler_reads_input_in_place() {
    use active_message::handler_impls::{ArchivedContext, archived_unary_handler};
    let (a, b) = pair().await;
    b.register_handler(
        "sum",
        archived_unary_handler("sum", |ctx: ArchivedContext<'_, Vector>| {
            Ok(ctx
                .input
                .values
                .iter()
                .map(|v| u64::from(v.to_native()))
                .sum::<u64>())
        }),
    )
    .await
    .unwrap();
    let c = a.client();
    let input = Vector {
        values: (1..=10).collect(),
    };
    let sum: u64 = c
        .active_message("sum")
        .unwrap()
        .payload(&input)
        .unwrap()
        .expect_response::<u64>()
        .send(b.instance_id())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(sum, 55);
    // Input that is not a valid archive of `Vector` is a codec error, promptly.
    let err = c
        .active_message("sum")
        .unwrap()
        .raw_payload(vec![0xffu8; 3])
        .expect_response::<u64>()
        .send(b.instance_id())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_answers_with_an_error() {
    let (a, b) = pair().await;
    b.register_handler(
        "panic",
        typed_unary_handler(
            "panic",
            |_: TypedContext<String>| -> Result<String, String> { panic!("deliberate") },
        ),
    )
    .await
    .unwrap();
    let err = a
        .client()
        .active_message("panic")
        .unwrap()
        .payload("x")
        .unwrap()
        .expect_response::<String>()
        .send(b.instance_id())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handler(ref m) if m.contains("panicked")),
        "{err:?}"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
