//! A worker that is alive but stopped (SIGSTOP) never hangs its callers:
//! every call and send to it ends at its own deadline, even while waiting
//! for room in a full ring, and a healthy worker on another link is served
//! meanwhile. Once the worker runs again, it skips the calls whose callers
//! gave up instead of running them late, and nothing accepted is lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId, NetworkClient,
    TransportPolicy,
};
use common::eventually;
use common::process::ServerProcess;

const CALLS: usize = 200;
const SENDS: usize = 20;
const BUDGET: Duration = Duration::from_millis(500);

/// Whether every thread of the worker is stopped (state `T` in /proc).
fn all_threads_stopped(worker: &ServerProcess) -> bool {
    let tasks = format!("/proc/{}/task", worker.child.id());
    std::fs::read_dir(tasks).unwrap().all(|task| {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

async fn worker() -> ServerProcess {
    // 64 KiB rings: a few dozen 1 KiB requests fill one.
    let args = ["--endpoint", "local://", "--ring-capacity", "65536"];
    tokio::task::spawn_blocking(move || ServerProcess::start(&args))
        .await
        .unwrap()
}

async fn echo(client: &Arc<NetworkClient>, peer: InstanceId, text: &str) -> Result<String, Error> {
    client
        .active_message("echo")?
        .payload(text)?
        .timeout(BUDGET)
        .expect_response::<String>()
        .send(peer)
        .await?
        .await_response()
        .await
}

async fn note(client: &Arc<NetworkClient>, peer: InstanceId) -> Result<(), Error> {
    client
        .active_message("note")?
        .raw_payload(vec![7u8; 1024])
        .timeout(BUDGET)
        .target_instance(peer)
        .execute()
        .await
}

async fn leader() -> ActiveMessageManager {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_times_out_its_callers_and_spares_the_others() {
    let (stopped, healthy) = (worker().await, worker().await);
    let manager = leader().await;
    let client = manager.client();
    for w in [&stopped, &healthy] {
        client.connect_to_peer(w.info.clone()).await.unwrap();
        assert_eq!(echo(&client, w.info.instance_id, "up").await.unwrap(), "up");
    }
    let (a, b) = (stopped.info.instance_id, healthy.info.instance_id);
    stopped.stop();
    let halted = eventually(Duration::from_secs(10), || async {
        all_threads_stopped(&stopped)
    })
    .await;
    assert!(halted, "the worker did not stop");

    let payload = "x".repeat(1024);
    let mut calls = Vec::new();
    for _ in 0..CALLS {
        let (client, payload) = (Arc::clone(&client), payload.clone());
        calls.push(tokio::spawn(
            async move { echo(&client, a, &payload).await },
        ));
    }
    let mut sends = Vec::new();
    for _ in 0..SENDS {
        let client = Arc::clone(&client);
        sends.push(tokio::spawn(async move { note(&client, a).await }));
    }
    // The healthy worker is served while the stopped one's link is full.
    for i in 0..50 {
        let text = format!("healthy {i}");
        assert_eq!(echo(&client, b, &text).await.unwrap(), text);
    }
    // A hang here is the bug this test exists for: fail rather than wait.
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap().map(drop));
        }
        let mut sent = 0;
        for send in sends {
            match send.await.unwrap() {
                Ok(()) => sent += 1,
                Err(Error::Timeout(_)) => {}
                Err(other) => panic!("a send to the stopped worker failed with {other}"),
            }
        }
        (outcomes, sent)
    })
    .await;
    let (outcomes, sent) = ended.expect("calls to a stopped worker still hang after 60 s");
    for outcome in outcomes {
        assert!(
            matches!(outcome, Err(Error::Timeout(_))),
            "a call to the stopped worker ended with {outcome:?}"
        );
    }

    stopped.signal("-CONT");
    // Once it runs again, it is reachable, and it ran none of the calls whose
    // callers gave up (no late replies), while every accepted send arrived.
    let back = eventually(Duration::from_secs(30), || async {
        echo(&client, a, "back").await.is_ok()
    })
    .await;
    assert!(back, "the worker never answered again after SIGCONT");
    assert_eq!(
        manager.stats().late_replies,
        0,
        "the worker ran abandoned calls"
    );
    let remote = client.remote_stats(a).await.unwrap();
    assert!(remote.counters.expired > 0, "no abandoned call was skipped");
    let notes = || async {
        let count: u64 = client
            .active_message("notes")
            .unwrap()
            .expect_response()
            .send(a)
            .await
            .unwrap()
            .await_response()
            .await
            .unwrap();
        count
    };
    let all_arrived = eventually(Duration::from_secs(30), || async { notes().await >= sent }).await;
    assert!(
        all_arrived,
        "one-way messages acknowledged as sent were lost"
    );
    assert_eq!(notes().await, sent);
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_liveness_probes_a_stopped_worker_is_reported_unresponsive() {
    let worker = worker().await;
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .liveness_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let client = manager.client();
    let peer = worker.info.instance_id;
    client.connect_to_peer(worker.info.clone()).await.unwrap();
    let call = |budget: Duration| {
        let client = Arc::clone(&client);
        async move {
            client
                .active_message("echo")?
                .payload("are you there")?
                .timeout(budget)
                .expect_response::<String>()
                .send(peer)
                .await?
                .await_response()
                .await
        }
    };
    assert_eq!(call(BUDGET).await.unwrap(), "are you there");
    worker.stop();
    let halted = eventually(Duration::from_secs(10), || async {
        all_threads_stopped(&worker)
    })
    .await;
    assert!(halted, "the worker did not stop");
    // A long budget: the probe, not the deadline, must end this call.
    let outcome = tokio::time::timeout(Duration::from_secs(60), call(Duration::from_secs(120)))
        .await
        .expect("the call to a stopped worker hangs");
    assert!(
        matches!(outcome, Err(Error::PeerUnresponsive(p)) if p == peer),
        "expected PeerUnresponsive, got {outcome:?}"
    );
    // While it stays silent, new calls fail at once.
    let again = call(Duration::from_secs(120)).await;
    assert!(
        matches!(again, Err(Error::PeerUnresponsive(_))),
        "got {again:?}"
    );
    worker.signal("-CONT");
    let back = eventually(Duration::from_secs(30), || async {
        call(BUDGET).await.is_ok()
    })
    .await;
    assert!(back, "the worker was not reachable again after SIGCONT");
    manager.shutdown().await.unwrap();
}
