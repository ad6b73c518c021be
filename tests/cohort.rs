//! Leader/worker cohorts across real processes: the workers (and, in one
//! test, the leader) are this test binary run again as children. The same
//! suite runs over shared memory, over TCP, and with ranks split between them.

#[path = "cohort/checks.rs"]
mod checks;
#[path = "cohort/child.rs"]
mod child;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use active_message::cohort::{
    CohortConfig, CohortError, CohortEvent, CohortEvents, FailurePolicy, LeaderWorkerCohort,
    RankError, RankPolicy,
};
use active_message::handler_impls::{TypedContext, typed_unary_handler, typed_unary_handler_async};
use active_message::{ActiveMessageManager, InstanceId, TransportKind};
use child::{Proc, Via};
use tokio::sync::Notify;

/// The child processes' entry point (run only by `Proc::spawn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the cohort tests"]
async fn cohort_child() {
    match std::env::var(child::ROLE).as_deref() {
        Ok("worker") => child::run_worker().await,
        Ok("leader") => child::run_leader().await,
        other => panic!("unknown role {other:?}"),
    }
}

/// What the leader's own handlers saw: `arrive` calls, and the `barrier`.
#[derive(Default)]
struct Seen {
    arrived: AtomicU64,
    inside: AtomicU64,
    released: AtomicU64,
    changed: Notify,
}

/// `arrive` counts; `barrier` returns once `ranks` callers are inside at
/// the same time (or fails when its caller gives up).
async fn leader_handlers(manager: &ActiveMessageManager, ranks: u64) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    let arrive = typed_unary_handler("arrive", move |_: TypedContext<()>| {
        Ok(s.arrived.fetch_add(1, Ordering::SeqCst) + 1)
    });
    let s = Arc::clone(&seen);
    let barrier = typed_unary_handler_async("barrier", move |c: TypedContext<()>| {
        let s = Arc::clone(&s);
        async move {
            s.inside.fetch_add(1, Ordering::SeqCst);
            s.changed.notify_waiters();
            loop {
                let changed = s.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if s.inside.load(Ordering::SeqCst) >= ranks {
                    s.released.fetch_add(1, Ordering::SeqCst);
                    return Ok(0u64);
                }
                tokio::select! {
                    () = changed => {}
                    () = c.cancel.cancelled() => {
                        s.inside.fetch_sub(1, Ordering::SeqCst);
                        return Err("caller gave up".to_owned());
                    }
                }
            }
        }
    });
    manager.register_handler("arrive", arrive).await.unwrap();
    manager.register_handler("barrier", barrier).await.unwrap();
    seen
}

async fn next_event(events: &mut CohortEvents) -> CohortEvent {
    tokio::time::timeout(Duration::from_secs(60), events.next())
        .await
        .expect("no cohort event")
        .expect("the cohort is gone")
}

fn joined(worker: &Proc) -> (u32, InstanceId) {
    let line = worker.line();
    let rank = line["joined"]
        .as_u64()
        .unwrap_or_else(|| panic!("not joined: {line}"));
    let instance = line["instance"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .unwrap();
    (u32::try_from(rank).unwrap(), instance.into())
}

async fn wait_until(check: impl Fn() -> bool) {
    for _ in 0..12_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within a minute");
}

/// The whole cohort suite, with rank `r` reached over `via(r)`.
async fn suite(via: fn(u32) -> Via) {
    let leader = child::leader_manager().await;
    let seen = leader_handlers(&leader, 4).await;
    let config = CohortConfig::new(4).operation_timeout(Duration::from_secs(30));
    let cohort = Arc::new(LeaderWorkerCohort::new(&leader, config).await.unwrap());
    let mut events = cohort.events();
    let mut workers = Vec::new();
    for rank in 0..4 {
        let address = child::address(&leader, via(rank)).await;
        workers.push(Proc::worker(&address, via(rank), Some(rank)));
    }
    let mut instances = [InstanceId::nil(); 4];
    for worker in &workers {
        let (rank, instance) = joined(worker);
        instances[rank as usize] = instance;
    }
    cohort.wait_for_workers().await.unwrap();
    assert_eq!(
        cohort.workers(),
        instances.iter().copied().map(Some).collect::<Vec<_>>()
    );
    // The leader calls each rank over the transport that rank was given.
    let peers = leader.stats().peers;
    for (rank, instance) in (0..).zip(&instances) {
        let peer = peers.iter().find(|p| p.instance_id == *instance).unwrap();
        let kind = match via(rank) {
            Via::Tcp => TransportKind::Tcp,
            Via::Shm => TransportKind::Shm,
        };
        assert_eq!(peer.transport, kind, "rank {rank}");
    }
    for _ in 0..4 {
        assert!(matches!(
            next_event(&mut events).await,
            CohortEvent::Joined { .. }
        ));
    }

    checks::refusals(&leader, via).await;
    checks::gathers_by_rank(&cohort).await;
    timeouts_run_in_parallel(&cohort, &seen).await;

    // BestEffort: a worker killed during a gather is `Lost` at its rank only.
    let took = kill_during_nap(&cohort, &seen, &mut workers[1], 1, |outcomes| {
        let outcomes = outcomes.unwrap();
        assert!(
            matches!(outcomes[1], Err(RankError::Lost)),
            "{:?}",
            outcomes[1]
        );
        for r in [0, 2, 3] {
            assert_eq!(outcomes[r].as_ref().unwrap(), &0);
        }
    })
    .await;
    println!("kill to Lost over {:?}: {took:?}", via(1));
    assert_eq!(
        next_event(&mut events).await,
        CohortEvent::Lost {
            rank: 1,
            instance: instances[1]
        }
    );

    // Restarted with the same rank: it rejoins and the next gather reaches it.
    let address = child::address(&leader, via(1)).await;
    workers[1] = Proc::worker(&address, via(1), Some(1));
    let (_, fresh) = joined(&workers[1]);
    assert_eq!(
        next_event(&mut events).await,
        CohortEvent::Rejoined {
            rank: 1,
            previous: instances[1],
            instance: fresh
        }
    );
    let who: Vec<Result<String, _>> = cohort.gather("whoami", &()).await.unwrap();
    assert_eq!(who[1].as_ref().unwrap(), &fresh.to_string());

    // FailFast: the gather fails promptly, naming the rank.
    cohort.set_failure_policy(FailurePolicy::FailFast);
    let took = kill_during_nap(&cohort, &seen, &mut workers[3], 3, |outcome| {
        assert!(
            matches!(outcome, Err(CohortError::RankLost { rank: 3, .. })),
            "{outcome:?}"
        );
    })
    .await;
    println!("kill to RankLost (FailFast) over {:?}: {took:?}", via(3));

    // Shutdown: the live workers acknowledge and exit; the lost rank is reported.
    let report = cohort.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.acknowledged, [0, 1, 2], "{report:?}");
    assert!(
        matches!(report.unanswered.as_slice(), [(3, RankError::Lost)]),
        "{report:?}"
    );
    for worker in &mut workers[..3] {
        assert_eq!(worker.line()["ended"], "StopRequested");
        assert!(worker.exits_cleanly());
    }
    drop(cohort);
    leader.shutdown().await.unwrap();
}

/// Four ranks each hold past the budget: all are inside the leader's
/// barrier at once (it releases only then), and all time out.
async fn timeouts_run_in_parallel(cohort: &LeaderWorkerCohort, seen: &Seen) {
    cohort.set_operation_timeout(Duration::from_secs(5));
    let outcomes: Vec<Result<u64, _>> = cohort.gather("hold", &()).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(RankError::Timeout(_)))),
        "{outcomes:?}"
    );
    assert_eq!(
        seen.released.load(Ordering::SeqCst),
        4,
        "all four held at once"
    );
    cohort.set_operation_timeout(Duration::from_secs(30));
}

/// Runs a `nap` gather in which `rank` sleeps for ten minutes, kills that
/// worker once every rank is napping, checks the outcome, and returns the
/// time from the kill to the gather's end.
async fn kill_during_nap<F>(
    cohort: &Arc<LeaderWorkerCohort>,
    seen: &Seen,
    worker: &mut Proc,
    rank: u32,
    check: F,
) -> Duration
where
    F: FnOnce(Result<Vec<Result<u64, RankError>>, CohortError>),
{
    let before = seen.arrived.load(Ordering::SeqCst);
    let c = Arc::clone(cohort);
    let gather = tokio::spawn(async move {
        let outcome = c
            .gather_with("nap", move |r| if r == rank { 600_000u64 } else { 0 })
            .await;
        (outcome, Instant::now())
    });
    let live = cohort.workers().iter().flatten().count() as u64;
    wait_until(|| seen.arrived.load(Ordering::SeqCst) >= before + live).await;
    let killed = Instant::now();
    worker.kill();
    let (outcome, done) = gather.await.unwrap();
    check(outcome);
    done.saturating_duration_since(killed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_suite_over_shm() {
    suite(|_| Via::Shm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_suite_over_tcp() {
    suite(|_| Via::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_suite_with_ranks_split_between_shm_and_tcp() {
    suite(|rank| if rank % 2 == 0 { Via::Shm } else { Via::Tcp }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_order_assigns_ranks_zero_to_n() {
    let leader = child::leader_manager().await;
    let config = CohortConfig::new(3).rank_policy(RankPolicy::JoinOrder);
    let cohort = LeaderWorkerCohort::new(&leader, config).await.unwrap();
    let address = child::address(&leader, Via::Shm).await;
    let workers: Vec<Proc> = (0..3)
        .map(|_| Proc::worker(&address, Via::Shm, None))
        .collect();
    let mut ranks: Vec<u32> = workers.iter().map(|w| joined(w).0).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, [0, 1, 2]);
    cohort.wait_for_workers().await.unwrap();
    let report = cohort.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.acknowledged, [0, 1, 2], "{report:?}");
    drop(cohort);
    leader.shutdown().await.unwrap();
}

/// The leader (a child here) is killed: every worker's membership says so.
async fn leader_killed(via: Via) {
    let leader = Proc::spawn(
        "cohort_child",
        &[(child::ROLE, "leader".into()), (child::RANK, "2".into())],
    );
    let line = leader.line();
    let key = if via == Via::Tcp { "tcp" } else { "shm" };
    let address = line[key].as_str().unwrap().to_owned();
    let mut workers: Vec<Proc> = (0..2)
        .map(|r| Proc::worker(&address, via, Some(r)))
        .collect();
    for worker in &workers {
        joined(worker);
    }
    assert_eq!(leader.line()["all_joined"], 2);
    let mut leader = leader;
    leader.kill();
    for worker in &mut workers {
        let line = worker.line();
        assert_eq!(line["ended"], "LeaderLost", "{line}");
        assert_eq!(line["status"], "Some(LeaderLost)");
        assert!(worker.exits_cleanly());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_every_worker_learns_it_over_shm() {
    leader_killed(Via::Shm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_every_worker_learns_it_over_tcp() {
    leader_killed(Via::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_all_stops_every_worker_when_one_is_lost() {
    let leader = child::leader_manager().await;
    let seen = leader_handlers(&leader, 2).await;
    let config = CohortConfig::new(2).failure_policy(FailurePolicy::TerminateAll);
    let cohort = Arc::new(LeaderWorkerCohort::new(&leader, config).await.unwrap());
    let address = child::address(&leader, Via::Shm).await;
    let mut workers: Vec<Proc> = (0..2)
        .map(|r| Proc::worker(&address, Via::Shm, Some(r)))
        .collect();
    for worker in &workers {
        joined(worker);
    }
    cohort.wait_for_workers().await.unwrap();
    kill_during_nap(&cohort, &seen, &mut workers[0], 0, |outcome| {
        assert!(
            matches!(outcome, Err(CohortError::Terminated { rank: 0 })),
            "{outcome:?}"
        );
    })
    .await;
    assert_eq!(workers[1].line()["ended"], "StopRequested");
    assert!(workers[1].exits_cleanly());
    drop(cohort);
    leader.shutdown().await.unwrap();
}
