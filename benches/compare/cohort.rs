//! Cohort gather: the leader (this process) sends a 64 B typed request to every
//! rank and waits for all the typed replies, with 1, 2 and 4 worker processes
//! over shm and over TCP. Beside it, in the same run and interleaved with it,
//! the same N requests made one after another (N sequential unary calls).

use std::time::{Duration, Instant};

use active_message::cohort::{CohortConfig, LeaderWorkerCohort, join_cohort};
use active_message::handler_impls::{TypedContext, typed_unary_handler};
use anyhow::{Context, Result, bail};

use crate::Plan;
use crate::am_server::{builder, runtime};
use crate::report::{Metric, Row};
use crate::util::{Args, Ctl, Peer, kv, median_p99};

/// Gather and sequential rows for `workers` worker processes over `transport`.
pub fn gather(plan: Plan, transport: &'static str, workers: u32) -> Result<Vec<Row>> {
    runtime()?.block_on(leader(plan, transport, workers))
}

async fn leader(plan: Plan, transport: &'static str, workers: u32) -> Result<Vec<Row>> {
    let manager = builder(transport, "adaptive", 0)?.build().await?;
    let config = CohortConfig::new(workers).join_timeout(Duration::from_secs(60));
    let cohort = LeaderWorkerCohort::new(&manager, config).await?;
    let info = manager.peer_info().await;
    let address = match transport {
        "tcp" => info.tcp_endpoint,
        _ => info.shm_endpoint,
    }
    .context("no endpoint for the transport")?;
    let peers = (0..workers)
        .map(|rank| {
            let args = kv(&[
                ("leader", &address),
                ("rank", &rank),
                ("transport", &transport),
            ]);
            Peer::spawn("cohort_worker", &args)
        })
        .collect::<Result<Vec<_>>>()?;
    cohort.wait_for_workers().await?;
    let rows = measure(plan, &manager, &cohort, transport, workers).await;
    let _ = cohort.shutdown(Duration::from_secs(10)).await;
    for peer in peers {
        peer.finish()?;
    }
    drop(cohort);
    manager.shutdown().await?;
    rows
}

async fn measure(
    plan: Plan,
    manager: &active_message::ActiveMessageManager,
    cohort: &LeaderWorkerCohort,
    transport: &str,
    workers: u32,
) -> Result<Vec<Row>> {
    let req = [7u8; 64];
    let client = manager.client();
    let targets: Vec<_> = cohort.workers().into_iter().flatten().collect();
    let trip_us = if transport == "tcp" { 150.0 } else { 60.0 } * f64::from(workers);
    let (warmup, iters) = plan.trips(trip_us);
    let (mut gather_ns, mut seq_ns) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..warmup + iters {
        let t = Instant::now();
        let replies: Vec<Result<[u8; 64], _>> = cohort.gather("echo64", &req).await?;
        let g = t.elapsed();
        if let Some(bad) = replies.iter().find_map(|r| r.as_ref().err()) {
            bail!("a rank failed: {bad}");
        }
        let t = Instant::now();
        for &target in &targets {
            let back = client
                .active_message("echo64")?
                .payload(&req)?
                .expect_response::<[u8; 64]>()
                .send(target)
                .await?
                .await_response()
                .await?;
            std::hint::black_box(back);
        }
        let s = t.elapsed();
        if i >= warmup {
            gather_ns.push(g.as_nanos() as u64);
            seq_ns.push(s.as_nanos() as u64);
        }
        if gather_ns.len() >= 500 && start.elapsed() > 2 * plan.budget() {
            break;
        }
    }
    let n = gather_ns.len() as u64;
    let seq_key = format!("cohort_seq_{transport}_{workers}");
    let (median, p99) = median_p99(&mut seq_ns);
    let seq = Row::new(
        &seq_key,
        format!("{workers} sequential unary calls, {transport} (64 B typed)"),
        n,
        Metric::Latency { median, p99 },
    );
    let (median, p99) = median_p99(&mut gather_ns);
    let gather = Row::new(
        &format!("cohort_gather_{transport}_{workers}"),
        format!("cohort gather, {workers} workers, {transport} (64 B typed)"),
        n,
        Metric::Latency { median, p99 },
    )
    .vs(&seq_key);
    Ok(vec![gather, seq])
}

/// A worker child: joins the leader at `leader=` as `rank=`, answers `echo64`,
/// and exits when its membership ends (the leader's shutdown).
pub fn worker_child(args: &Args, ctl: Ctl) -> Result<()> {
    let leader: String = args.get("leader")?;
    let rank: u32 = args.get("rank")?;
    let transport: String = args.get("transport")?;
    runtime()?.block_on(async move {
        let manager = builder(&transport, "adaptive", 0)?.build().await?;
        manager
            .register_handler(
                "echo64",
                typed_unary_handler("echo64", |c: TypedContext<[u8; 64]>| Ok(c.input)),
            )
            .await?;
        let membership = join_cohort(&manager, &leader, Some(rank)).await?;
        membership.ended().await;
        drop(membership);
        drop(ctl);
        manager.shutdown().await?;
        Ok(())
    })
}
