//! Transport conformance: one set of behavioural tests, instantiated for
//! every transport. The dispatcher, response table and system handlers must
//! behave the same whichever transport carries the messages.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::handler_impls::am_handler;
use active_message::{Error, NetworkClient};
use bytes::Bytes;
use common::{Flavor, Pair, eventually, pair, pair_with};

/// How long a condition that must come true may take on a busy machine.
const PATIENCE: Duration = Duration::from_secs(10);
/// Budget of a `_wait_for_handler` call that the test expects to be woken.
const WAIT_BUDGET: Duration = Duration::from_secs(60);

async fn request(
    c: &Arc<NetworkClient>,
    p: &Pair,
    name: &str,
    input: &str,
) -> Result<String, Error> {
    c.active_message(name)?
        .payload(input)?
        .expect_response::<String>()
        .send(p.target())
        .await?
        .await_response()
        .await
}

async fn notes(c: &Arc<NetworkClient>, p: &Pair) -> u64 {
    c.active_message("notes")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap()
}

async fn every_pattern_and_handler_kind(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    for name in ["echo", "echo_async", "echo_archived"] {
        assert_eq!(
            request(&c, &p, name, "typed").await.unwrap(),
            "typed",
            "{name}"
        );
        c.active_message(name)
            .unwrap()
            .payload("confirmed")
            .unwrap()
            .send(p.target())
            .await
            .unwrap();
        let receipt = c
            .active_message(name)
            .unwrap()
            .payload("two-phase")
            .unwrap()
            .expect_response::<String>()
            .detach_receipt()
            .send(p.target())
            .await
            .unwrap();
        assert_eq!(
            receipt
                .await_receipt()
                .await
                .unwrap()
                .await_response()
                .await
                .unwrap(),
            "two-phase"
        );
        c.active_message(name)
            .unwrap()
            .payload("one-way")
            .unwrap()
            .target_instance(p.target())
            .execute()
            .await
            .unwrap();
    }
    let raw = c
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(Bytes::from_static(b"\x00raw\xff"))
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(&raw[..], b"\x00raw\xff");
    c.active_message("echo_bytes")
        .unwrap()
        .raw_payload(&b"x"[..])
        .send(p.target())
        .await
        .unwrap();
    c.active_message("echo_bytes")
        .unwrap()
        .raw_payload(&b"x"[..])
        .detach_receipt()
        .send(p.target())
        .await
        .unwrap()
        .await_receipt()
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    // Active-message handler: one-way, confirmed, request (empty response), receipt.
    let before = notes(&c, &p).await;
    for _ in 0..10 {
        c.active_message("note")
            .unwrap()
            .target_instance(p.target())
            .execute()
            .await
            .unwrap();
    }
    c.active_message("note")
        .unwrap()
        .send(p.target())
        .await
        .unwrap();
    c.active_message("note")
        .unwrap()
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    c.active_message("note")
        .unwrap()
        .detach_receipt()
        .send(p.target())
        .await
        .unwrap()
        .await_receipt()
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert!(eventually(PATIENCE, || async { notes(&c, &p).await == before + 13 }).await);
    p.shutdown().await;
}

async fn handler_errors_arrive_promptly(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let handler_error = |r: Result<(), Error>| matches!(r, Err(Error::Handler(_)));
    // Calls left unanswered end as `Timeout` after 10 s: a `Handler` error
    // shows the failure itself was reported.
    for name in ["fail", "fail_async", "fail_bytes", "fail_note"] {
        let r = c
            .active_message(name)
            .unwrap()
            .payload("x")
            .unwrap()
            .expect_response::<()>()
            .send(p.target())
            .await
            .unwrap()
            .await_response_raw()
            .await
            .map(drop);
        assert!(handler_error(r), "{name}: request");
        let r = c
            .active_message(name)
            .unwrap()
            .payload("x")
            .unwrap()
            .send(p.target())
            .await
            .map(drop);
        assert!(handler_error(r), "{name}: confirmed send");
        let receipt = c
            .active_message(name)
            .unwrap()
            .payload("x")
            .unwrap()
            .expect_response::<()>()
            .detach_receipt()
            .send(p.target())
            .await
            .unwrap();
        let r = receipt
            .await_receipt()
            .await
            .unwrap()
            .await_response_raw()
            .await
            .map(drop);
        assert!(handler_error(r), "{name}: receipt then response");
    }
    let err = request(&c, &p, "fail", "abc").await.unwrap_err();
    assert_eq!(err.to_string(), "handler failed: failed on \"abc\"");
    p.shutdown().await;
}

async fn unknown_handler_is_reported_promptly(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    // `NoSuchHandler` rather than the 10 s `Timeout`: reported, not waited out.
    assert!(
        matches!(request(&c, &p, "missing", "x").await, Err(Error::NoSuchHandler(n)) if n == "missing")
    );
    assert!(matches!(
        c.active_message("missing").unwrap().send(p.target()).await,
        Err(Error::NoSuchHandler(_))
    ));
    let receipt = c
        .active_message("missing")
        .unwrap()
        .detach_receipt()
        .send(p.target())
        .await
        .unwrap();
    assert!(matches!(
        receipt.await_receipt().await,
        Err(Error::NoSuchHandler(_))
    ));
    // Reserved names cannot be called or registered by users.
    assert!(matches!(
        c.active_message("_health_check"),
        Err(Error::InvalidHandlerName(_))
    ));
    let h = am_handler("_mine", |_| async { Ok(()) });
    assert!(matches!(
        p.server.register_handler("_mine", h).await,
        Err(Error::InvalidHandlerName(_))
    ));
    p.shutdown().await;
}

async fn silent_peer_times_out_and_link_survives(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    // The handler answers after 1.5 s: a `Timeout` shows the call's own
    // 200 ms budget ended it.
    let err = c
        .active_message("slow")
        .unwrap()
        .payload(&1500u64)
        .unwrap()
        .timeout(Duration::from_millis(200))
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(
        request(&c, &p, "echo", "still here").await.unwrap(),
        "still here"
    );
    // The slow handler's answer arrives after its caller left: dropped and counted.
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.client.stats().late_replies >= 1
        })
        .await
    );
    p.shutdown().await;
}

async fn concurrency_limit_holds_and_everything_completes(flavor: Flavor) {
    let p = pair_with(flavor, |b| b.max_concurrent_handlers(2)).await;
    let c = p.client.client();
    let calls = (0..200u64).map(|_| {
        let c = Arc::clone(&c);
        let target = p.target();
        tokio::spawn(async move {
            c.active_message("slow")?
                .payload(&5u64)?
                .expect_response::<u64>()
                .send(target)
                .await?
                .await_response()
                .await
        })
    });
    for call in futures::future::join_all(calls).await {
        assert_eq!(call.unwrap().unwrap(), 5);
    }
    let peak: u64 = c
        .active_message("peak")
        .unwrap()
        .payload(&())
        .unwrap()
        .expect_response::<u64>()
        .send(p.target())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert!((1..=2).contains(&peak), "peak concurrency {peak}");
    p.shutdown().await;
}

async fn shutdown_drains_in_flight_work_then_refuses(flavor: Flavor) {
    // The drain must not depend on how fast a loaded machine runs the 300 ms
    // handler: a deadline that could pass would fail the call (PeerLost).
    let p = pair_with(flavor, |b| b.shutdown_timeout(Duration::from_secs(120))).await;
    let c = p.client.client();
    let in_flight = {
        let c = Arc::clone(&c);
        let target = p.target();
        tokio::spawn(async move {
            c.active_message("slow")?
                .payload(&300u64)?
                .expect_response::<u64>()
                .send(target)
                .await?
                .await_response()
                .await
        })
    };
    assert!(
        eventually(PATIENCE, || async {
            p.server.stats().handlers_running == 1
        })
        .await
    );
    p.server.shutdown().await.unwrap();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        300,
        "in-flight call drained"
    );
    assert!(p.server.cancel_token().is_cancelled());
    let err = request(&c, &p, "echo", "late").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PeerLost(_) | Error::UnknownPeer(_) | Error::ShuttingDown
        ),
        "{err:?}"
    );
    p.client.shutdown().await.unwrap();
}

async fn peer_loss_fails_pending_calls_at_once(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let pending = {
        let c = Arc::clone(&c);
        let target = p.target();
        tokio::spawn(async move {
            c.active_message("slow")?
                .payload(&5000u64)?
                .expect_response::<u64>()
                .send(target)
                .await?
                .await_response()
                .await
        })
    };
    assert!(
        eventually(PATIENCE, || async {
            p.server.stats().handlers_running == 1
        })
        .await
    );
    // The handler runs 5 s and the call's timeout is 10 s: `PeerLost` can
    // only come from the disconnect.
    assert!(c.disconnect_from_peer(p.target()));
    assert!(matches!(pending.await.unwrap(), Err(Error::PeerLost(_))));
    p.shutdown().await;
}

async fn system_handlers_answer(flavor: Flavor) {
    let p = pair(flavor).await;
    let c = p.client.client();
    let health = c.health_check(p.target()).await.unwrap();
    assert_eq!(
        (health.status.as_str(), health.instance_id),
        ("ok", p.target())
    );
    let handlers = c.list_handlers(p.target()).await.unwrap();
    for name in [
        "echo",
        "_list_handlers",
        "_wait_for_handler",
        "_health_check",
        "_stats",
    ] {
        assert!(
            handlers.iter().any(|h| h == name),
            "{name} missing from {handlers:?}"
        );
    }
    assert_eq!(
        c.discover(p.target()).await.unwrap(),
        p.server.peer_info().await
    );
    assert!(
        !c.await_handler(p.target(), "later", Some(Duration::from_millis(50)))
            .await
            .unwrap()
    );
    let waiting = {
        let c = Arc::clone(&c);
        let target = p.target();
        tokio::spawn(async move { c.await_handler(target, "later", Some(WAIT_BUDGET)).await })
    };
    assert!(
        eventually(PATIENCE, || async {
            p.server.stats().handlers_running >= 1
        })
        .await
    );
    let started = Instant::now();
    p.server
        .register_handler("later", am_handler("later", |_| async { Ok(()) }))
        .await
        .unwrap();
    assert!(waiting.await.unwrap().unwrap());
    // A wait that is not woken ends only with its budget; half of it is a
    // margin no scheduling delay comes near.
    assert!(
        started.elapsed() < WAIT_BUDGET / 2,
        "woken by the registration, not by its budget running out"
    );
    let stats = c.remote_stats(p.target()).await.unwrap();
    assert!(stats.counters.messages_received >= 5);
    // The server can call back once asked to connect.
    c.ensure_bidirectional_connection(p.target()).await.unwrap();
    p.client
        .register_handler("ping", am_handler("ping", |_| async { Ok(()) }))
        .await
        .unwrap();
    p.server
        .client()
        .active_message("ping")
        .unwrap()
        .send(p.client.instance_id())
        .await
        .unwrap();
    p.shutdown().await;
}

async fn remote_shutdown_request_is_honoured(flavor: Flavor) {
    // Shared-memory and in-process callers are trusted by default; an
    // unauthenticated TCP caller (or a plugged-in transport's) only when
    // remote shutdown is allowed to all.
    let p = pair_with(flavor, |b| match flavor {
        Flavor::Tcp | Flavor::Uds => b.allow_remote_shutdown(true),
        Flavor::Local | Flavor::Shm => b,
    })
    .await;
    let c = p.client.client();
    c.request_shutdown(p.target()).await.unwrap();
    let token = p.server.cancel_token();
    assert!(eventually(PATIENCE, || async { token.is_cancelled() }).await);
    p.client.shutdown().await.unwrap();
}

macro_rules! conformance {
    ($($flavor:ident: $value:expr;)*) => {$(
        mod $flavor {
            use super::*;
            conformance!(@tests $value; every_pattern_and_handler_kind, handler_errors_arrive_promptly,
                unknown_handler_is_reported_promptly, silent_peer_times_out_and_link_survives,
                concurrency_limit_holds_and_everything_completes, shutdown_drains_in_flight_work_then_refuses,
                peer_loss_fails_pending_calls_at_once, system_handlers_answer, remote_shutdown_request_is_honoured);
        }
    )*};
    (@tests $value:expr; $($test:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            super::$test($value).await;
        }
    )*};
}

conformance! {
    local: Flavor::Local;
    tcp: Flavor::Tcp;
    shm: Flavor::Shm;
    uds: Flavor::Uds;
}
