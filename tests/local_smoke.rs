//! In-process smoke test of every message pattern over the loopback transport.

use std::time::Duration;

use active_message::handler_impls::{TypedContext, am_handler, typed_unary_handler, unary_handler};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, Error};
use bytes::Bytes;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_work_in_process() {
    let (a, b) = pair().await;
    b.register_handler(
        "echo",
        typed_unary_handler("echo", |ctx: TypedContext<String>| Ok(ctx.input)),
    )
    .await
    .unwrap();
    b.register_handler(
        "fail",
        typed_unary_handler(
            "fail",
            |_: TypedContext<String>| -> Result<String, String> { Err("boom".into()) },
        ),
    )
    .await
    .unwrap();
    b.register_handler(
        "bytes",
        unary_handler("bytes", |ctx| {
            Ok(Some(Bytes::from([ctx.payload.as_ref(), b"!"].concat())))
        }),
    )
    .await
    .unwrap();
    b.register_handler("note", am_handler("note", |_| async { Ok(()) }))
        .await
        .unwrap();
    let c = a.client();
    let target = b.instance_id();
    let echoed: String = c
        .active_message("echo")
        .unwrap()
        .payload("hi")
        .unwrap()
        .target_instance(target)
        .expect_response::<String>()
        .execute()
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(echoed, "hi");
    let err = c
        .active_message("fail")
        .unwrap()
        .payload("x")
        .unwrap()
        .expect_response::<String>()
        .send(target)
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handler(ref m) if m == "boom"),
        "{err:?}"
    );
    let err = c
        .active_message("fail")
        .unwrap()
        .payload("x")
        .unwrap()
        .send(target)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handler(_)), "{err:?}");
    let err = c
        .active_message("nope")
        .unwrap()
        .send(target)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoSuchHandler(ref n) if n == "nope"),
        "{err:?}"
    );
    c.active_message("note")
        .unwrap()
        .send(target)
        .await
        .unwrap();
    c.active_message("note")
        .unwrap()
        .target_instance(target)
        .execute()
        .await
        .unwrap();
    let raw = c
        .active_message("bytes")
        .unwrap()
        .raw_payload(Bytes::from_static(b"ab"))
        .expect_response::<()>()
        .send(target)
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(&raw[..], b"ab!");
    let receipt = c
        .active_message("echo")
        .unwrap()
        .payload("r")
        .unwrap()
        .expect_response::<String>()
        .detach_receipt()
        .send(target)
        .await
        .unwrap();
    let resp = receipt.await_receipt().await.unwrap();
    assert_eq!(resp.await_response().await.unwrap(), "r");
    let receipt = c
        .active_message("fail")
        .unwrap()
        .payload("r")
        .unwrap()
        .expect_response::<String>()
        .detach_receipt()
        .send(target)
        .await
        .unwrap();
    let err = receipt
        .await_receipt()
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handler(_)));
    let err = c
        .active_message("nope")
        .unwrap()
        .detach_receipt()
        .send(target)
        .await
        .unwrap()
        .await_receipt()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchHandler(_)));
    let health = c.health_check(target).await.unwrap();
    assert_eq!(health.status, "ok");
    let handlers = c.list_handlers(target).await.unwrap();
    assert!(
        handlers.contains(&"echo".to_string()) && handlers.contains(&"_list_handlers".to_string())
    );
    assert!(
        !c.await_handler(target, "later", Some(Duration::from_millis(50)))
            .await
            .unwrap()
    );
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.await_handler(target, "later", Some(Duration::from_secs(5)))
                .await
        })
    };
    b.register_handler("later", am_handler("later", |_| async { Ok(()) }))
        .await
        .unwrap();
    assert!(waiter.await.unwrap().unwrap());
    assert!(c.active_message("_health_check").is_err());
    c.ensure_bidirectional_connection(target).await.unwrap();
    assert_eq!(b.stats().peers.len(), 1);
    b.shutdown().await.unwrap();
    let err = c
        .active_message("echo")
        .unwrap()
        .payload("x")
        .unwrap()
        .send(target)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PeerLost(_) | Error::UnknownPeer(_)),
        "{err:?}"
    );
    a.shutdown().await.unwrap();
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
