//! A leader and N ranked worker processes on one host.
//!
//! `cargo run --example cohort_parallel` (options: `--workers N`,
//! `--transport shm|tcp|mix`) starts a leader, starts N workers (this
//! program again, as `worker`), broadcasts a setting, gathers typed results
//! from every rank, and prints them by rank with timings. Then it shuts the
//! cohort down: every worker acknowledges and exits.
//!
//! The roles also run on their own, e.g. on two hosts:
//! `cohort_parallel leader --workers 2 [--transport tcp]` prints the address
//! workers join; `cohort_parallel worker --leader <address> [--rank R]` joins it.
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use active_message::cohort::{CohortConfig, LeaderWorkerCohort, join_cohort};
use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, TransportPolicy};
use anyhow::{Context, Result, bail};

/// One rank's answer to `work`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Work {
    rank: u32,
    sum: u64,
    micros: u64,
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

async fn manager(tcp_only: bool) -> Result<ActiveMessageManager> {
    let builder = ActiveMessageManagerBuilder::new().endpoint("tcp://127.0.0.1:0");
    let builder = if tcp_only {
        builder
            .shm(false)
            .transport_policy(TransportPolicy::TcpOnly)
    } else {
        builder
    };
    Ok(builder.build().await?)
}

/// A worker: `scale` (a setting) and `work` (sums its share).
async fn worker(args: &[String]) -> Result<()> {
    let leader = arg(args, "--leader").context("--leader <address>")?;
    let rank = arg(args, "--rank").map(|r| r.parse()).transpose()?;
    let manager = manager(leader.starts_with("tcp://")).await?;
    let scale = Arc::new(AtomicU64::new(1));
    let s = Arc::clone(&scale);
    let set_scale = typed_unary_handler("scale", move |c: TypedContext<u64>| {
        s.store(c.input, Ordering::Relaxed);
        Ok(())
    });
    manager.register_handler("scale", set_scale).await?;
    let membership = join_cohort(&manager, &leader, rank).await?;
    let me = membership.rank();
    let work = typed_unary_handler("work", move |c: TypedContext<u64>| {
        let started = Instant::now();
        let (lo, hi) = (c.input * u64::from(me), c.input * (u64::from(me) + 1));
        let sum = (lo..hi).map(|x| x * scale.load(Ordering::Relaxed)).sum();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(Work {
            rank: me,
            sum,
            micros,
        })
    });
    manager.register_handler("work", work).await?;
    let how = membership.ended().await;
    eprintln!("worker rank {me}: membership ended ({how:?})");
    drop(membership);
    manager.shutdown().await?;
    Ok(())
}

/// The leader: waits for the workers, then runs the operations.
async fn lead(manager: &ActiveMessageManager, cohort: &LeaderWorkerCohort) -> Result<()> {
    let started = Instant::now();
    cohort.wait_for_workers().await?;
    println!(
        "{} workers joined in {:?}",
        cohort.size(),
        started.elapsed()
    );
    let ready = cohort.await_handler_on_all_workers("work").await?;
    if let Some(rank) = ready.iter().position(|r| !matches!(r, Ok(true))) {
        bail!("rank {rank} has no `work` handler: {:?}", ready[rank]);
    }

    let t = Instant::now();
    let sent = cohort.broadcast_confirmed("scale", &3u64).await?;
    println!(
        "broadcast scale=3 to {} ranks in {:?}",
        sent.len(),
        t.elapsed()
    );

    for round in 0..3 {
        let t = Instant::now();
        let results: Vec<Result<Work, _>> = cohort.gather("work", &1_000_000u64).await?;
        let took = t.elapsed();
        let busy: u64 = results.iter().flatten().map(|w| w.micros).sum();
        println!(
            "gather round {round}: {took:?} (the handlers' times add up to {:?})",
            Duration::from_micros(busy)
        );
        for (rank, result) in results.iter().enumerate() {
            match result {
                Ok(w) => println!(
                    "  rank {rank}: sum {} ({} µs in the handler)",
                    w.sum, w.micros
                ),
                Err(e) => println!("  rank {rank}: {e}"),
            }
        }
    }
    let report = cohort.shutdown(Duration::from_secs(10)).await;
    println!(
        "shutdown: acknowledged by ranks {:?}, unanswered {:?}",
        report.acknowledged, report.unanswered
    );
    let _ = manager;
    Ok(())
}

fn spawn_workers(n: u32, transport: &str, shm: &str, tcp: &str) -> Result<Vec<Child>> {
    let exe = std::env::current_exe()?;
    (0..n)
        .map(|rank| {
            let over_tcp = transport == "tcp" || (transport == "mix" && rank % 2 == 1);
            let address = if over_tcp { tcp } else { shm };
            let child = Command::new(&exe)
                .args(["worker", "--leader", address, "--rank", &rank.to_string()])
                .spawn()?;
            Ok(child)
        })
        .collect()
}

async fn leader(args: &[String], spawn: bool) -> Result<()> {
    let n: u32 = arg(args, "--workers").map_or(Ok(4), |n| n.parse())?;
    let transport = arg(args, "--transport").unwrap_or_else(|| "shm".into());
    let manager = manager(false).await?;
    let config = CohortConfig::new(n).join_timeout(Duration::from_secs(60));
    let cohort = LeaderWorkerCohort::new(&manager, config).await?;
    let info = manager.peer_info().await;
    let tcp = info.tcp_endpoint.context("no TCP endpoint")?;
    let shm = info.shm_endpoint.unwrap_or_else(|| tcp.clone());
    let mut children = Vec::new();
    if spawn {
        children = spawn_workers(n, &transport, &shm, &tcp)?;
    } else {
        println!("workers join with: --leader {shm}   (or over TCP: --leader {tcp})");
    }
    let outcome = lead(&manager, &cohort).await;
    for child in &mut children {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("a worker exited with {status}");
        }
    }
    drop(cohort);
    manager.shutdown().await?;
    outcome
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker(&args).await,
        Some("leader") => leader(&args, false).await,
        _ => leader(&args, true).await,
    }
}
