//! A caller waiting for its reply reads its own shm link (`PeerLink::drive`):
//! it routes whatever it finds there exactly as the link's reader would,
//! shares the ring with the reader task without losing or reordering
//! anything, and its deadline holds while it spins with no timer armed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use active_message::handler_impls::{
    TypedContext, am_handler, typed_unary_handler, typed_unary_handler_async,
};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, TransportPolicy, WaitPolicy,
};
use tokio::sync::Semaphore;

fn builder(policy: WaitPolicy) -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .wait_policy(policy)
        .default_timeout(Duration::from_secs(20))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Both sides' handlers: `echo` (in place), `echo_async`, `gated` (answers
/// once the gate opens), `note` (a one-way in-place handler counting calls).
struct Side {
    am: ActiveMessageManager,
    notes: Arc<AtomicU64>,
    gate: Arc<Semaphore>,
}

async fn side(policy: WaitPolicy) -> Side {
    let am = builder(policy).build().await.unwrap();
    let notes = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let echo = typed_unary_handler("echo", |c: TypedContext<u64>| -> Result<u64, String> {
        Ok(c.input)
    });
    let echo_async = typed_unary_handler_async("echo_async", |c: TypedContext<u64>| async move {
        Ok::<u64, String>(c.input)
    });
    let g = Arc::clone(&gate);
    let gated = typed_unary_handler_async("gated", move |c: TypedContext<u64>| {
        let g = Arc::clone(&g);
        async move {
            g.acquire().await.map_err(|e| e.to_string())?.forget();
            Ok(c.input)
        }
    });
    let n = Arc::clone(&notes);
    let note = am_handler("note", move |_ctx| {
        let n = Arc::clone(&n);
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    for (name, h) in [
        ("echo", echo),
        ("echo_async", echo_async),
        ("gated", gated),
        ("note", note),
    ] {
        am.register_handler(name, h).await.unwrap();
    }
    Side { am, notes, gate }
}

/// A client and a server, each connected to the other.
async fn pair(policy: WaitPolicy) -> (Side, Side) {
    let server = side(policy).await;
    let client = side(policy).await;
    let info = server.am.peer_info().await;
    client.am.client().connect_to_peer(info).await.unwrap();
    let info = client.am.peer_info().await;
    server.am.client().connect_to_peer(info).await.unwrap();
    (client, server)
}

async fn call(from: &Side, to: &Side, name: &str, input: u64) -> Result<u64, Error> {
    from.am
        .client()
        .active_message(name)?
        .payload(input)?
        .expect_response::<u64>()
        .send(to.am.instance_id())
        .await?
        .await_response()
        .await
}

async fn note(from: &Side, to: &Side) {
    from.am
        .client()
        .active_message("note")
        .unwrap()
        .payload(0u64)
        .unwrap()
        .send(to.am.instance_id())
        .await
        .unwrap();
}

async fn shutdown(a: Side, b: Side) {
    a.am.shutdown().await.unwrap();
    b.am.shutdown().await.unwrap();
}

/// Waits until `check` holds (a condition, not a fixed sleep).
async fn eventually(within: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

const POLICIES: [WaitPolicy; 3] = [
    WaitPolicy::Spin,
    WaitPolicy::Adaptive {
        spin: Duration::from_micros(50),
    },
    WaitPolicy::Park,
];

/// The runtime's `block_on` future is the caller: with every task on one
/// thread, the caller's drive and the reader task take turns on the ring.
#[tokio::test(flavor = "current_thread")]
async fn calls_from_a_single_thread_runtime_complete_under_every_policy() {
    for policy in POLICIES {
        let (client, server) = pair(policy).await;
        for i in 0..300u64 {
            let name = if i % 2 == 0 { "echo" } else { "echo_async" };
            assert_eq!(
                call(&client, &server, name, i).await.unwrap(),
                i,
                "{policy:?}"
            );
        }
        shutdown(client, server).await;
    }
}

/// Many callers on two workers share one link: whoever reads the ring
/// (a caller's drive, or the reader task) routes every reply to its caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_on_one_link_each_get_their_own_reply() {
    for policy in [WaitPolicy::Spin, WaitPolicy::default()] {
        let (client, server) = pair(policy).await;
        let (client, server) = (Arc::new(client), Arc::new(server));
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let (c, s) = (Arc::clone(&client), Arc::clone(&server));
            tasks.push(tokio::spawn(async move {
                for i in 0..100u64 {
                    let input = t * 1_000_000 + i;
                    let name = if i % 3 == 0 { "echo_async" } else { "echo" };
                    assert_eq!(call(&c, &s, name, input).await.unwrap(), input);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (Ok(client), Ok(server)) = (Arc::try_unwrap(client), Arc::try_unwrap(server)) else {
            panic!("every caller finished");
        };
        shutdown(client, server).await;
    }
}

/// While a caller waits for a slow reply, its peer sends it invocations
/// and other calls' replies come in: the caller's drive routes all of them
/// (handlers in place, replies to their callers), and its own reply last.
#[tokio::test(flavor = "current_thread")]
async fn a_waiting_caller_routes_invocations_and_other_replies() {
    for policy in [WaitPolicy::Spin, WaitPolicy::default()] {
        let (client, server) = pair(policy).await;
        let slow = call(&client, &server, "gated", 7);
        let others = async {
            for i in 0..100u64 {
                note(&server, &client).await;
                assert_eq!(call(&client, &server, "echo", i).await.unwrap(), i);
            }
            server.gate.add_permits(1);
        };
        let (slow, ()) = tokio::join!(slow, others);
        assert_eq!(slow.unwrap(), 7);
        let notes = &client.notes;
        assert!(
            eventually(Duration::from_secs(10), || notes.load(Ordering::SeqCst)
                == 100)
            .await,
            "{policy:?}: {} of 100 invocations ran",
            notes.load(Ordering::SeqCst)
        );
        shutdown(client, server).await;
    }
}

/// A spinning caller whose reply never comes times out at its deadline,
/// with no timer armed while it drives the link; the link serves on.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_caller_times_out_at_its_deadline() {
    for policy in POLICIES {
        let (client, server) = pair(policy).await;
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let got = client
            .am
            .client()
            .active_message("gated")
            .unwrap()
            .payload(1u64)
            .unwrap()
            .timeout(timeout)
            .expect_response::<u64>()
            .send(server.am.instance_id())
            .await
            .unwrap()
            .await_response()
            .await;
        assert!(matches!(got, Err(Error::Timeout(_))), "{policy:?}: {got:?}");
        assert!(started.elapsed() >= timeout, "{policy:?}: early timeout");
        assert_eq!(call(&client, &server, "echo", 5).await.unwrap(), 5);
        server.gate.add_permits(1);
        shutdown(client, server).await;
    }
}
