//! Peers in the same run: our ring and active-message round trip beside the IPC a
//! user might pick instead (iceoryx2 request-response and publish-subscribe, rtrb)
//! and the atomic floor, 64 B, in interleaved rounds.
//!
//! ```text
//! cargo run --release --manifest-path peers/Cargo.toml            # full: 5 rounds
//! PEERS_ROUNDS=9 cargo run --release --manifest-path peers/Cargo.toml
//! COMPARE_QUICK=1 cargo run --release --manifest-path peers/Cargo.toml  # smoke
//! cargo run --release --manifest-path peers/Cargo.toml -- iox am   # only some cases
//! ```
//!
//! Every case but rtrb runs across two processes pinned to two CPUs (this binary
//! re-executes itself as `--child <case>`), with the harness's own plumbing
//! (`benches/compare/*.rs`, included by path). Tables go to stdout and
//! `target/peers.md`, every row of every round to `target/peers.csv`.

#[allow(dead_code)]
#[path = "../../benches/compare/am.rs"]
mod am;
#[allow(dead_code)]
#[path = "../../benches/compare/am_server.rs"]
mod am_server;
#[path = "../../benches/compare/beside.rs"]
mod beside;
mod iox;
#[allow(dead_code)]
#[path = "../../benches/compare/machine.rs"]
mod machine;
#[path = "../../benches/compare/park_rounds.rs"]
mod park_rounds;
#[allow(dead_code)]
#[path = "../../benches/compare/plan.rs"]
mod plan;
#[allow(dead_code)]
#[path = "../../benches/compare/raw.rs"]
mod raw;
#[allow(dead_code)]
#[path = "../../benches/compare/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../../benches/compare/ring.rs"]
mod ring;
#[allow(dead_code)]
#[path = "../../benches/compare/rounds.rs"]
mod rounds;
mod rtrb_pp;
#[allow(dead_code)]
#[path = "../../benches/compare/session.rs"]
mod session;
#[allow(dead_code)]
#[path = "../../benches/compare/stream.rs"]
mod stream;
mod tables;
#[allow(dead_code)]
#[path = "../../benches/compare/tcp_rounds.rs"]
mod tcp_rounds;
#[allow(dead_code)]
#[path = "../../benches/compare/util.rs"]
mod util;

use std::time::Instant;

use anyhow::{Result, bail};

pub use plan::{LARGE, Plan, SIZES};
use report::Row;
use util::{Args, Ctl};

#[global_allocator]
static GLOBAL: util::CountingAlloc = util::CountingAlloc;

/// Rounds of a full run unless `PEERS_ROUNDS` says otherwise.
const ROUNDS: usize = 5;

/// One round: every wanted case once, each with its two sides pinned, in an order
/// that puts each case next to the ones it is compared with.
fn round(plan: Plan, wanted: &dyn Fn(&str) -> bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut case = |key: &str, f: &dyn Fn() -> Result<Vec<Row>>| {
        if !wanted(key) {
            return;
        }
        let _pin = machine::PinnedPair::new();
        let t = Instant::now();
        match f() {
            Ok(new) => rows.extend(new),
            Err(e) => rows.push(Row::skipped(key, key, format!("{e:#}"))),
        }
        println!("  {key:<22} {:.1} s", t.elapsed().as_secs_f64());
    };
    let trips = |us| plan.trips(us);
    case("floor", &|| {
        let (w, n) = trips(0.5);
        Ok(vec![raw::floor(plan, w, n)?])
    });
    case("rtrb", &|| {
        let (w, n) = trips(0.5);
        Ok(vec![rtrb_pp::pingpong(plan, w, n)?])
    });
    case("ring_pp_spin", &|| {
        let (w, n) = trips(1.0);
        Ok(vec![ring::pingpong(plan, "spin", 64, w, n)?])
    });
    case("iox_ps", &|| {
        let (w, n) = trips(1.0);
        Ok(vec![iox::pubsub(plan, w, n)?])
    });
    case("iox_rr", &|| {
        let (w, n) = trips(2.0);
        Ok(vec![iox::request_response(plan, w, n)?])
    });
    for suite in ["spin", "adaptive"] {
        let key = format!("am_shm_{suite}_rt");
        case(&key, &|| am::suite(suite).run(plan));
    }
    rows
}

fn parent(filters: &[String], plan: Plan, rounds: usize) -> Result<()> {
    print!("{}", machine::facts());
    let mode = if plan.quick {
        "quick (COMPARE_QUICK=1)"
    } else {
        "full"
    };
    println!("mode: {mode}, {rounds} rounds\n");
    let wanted = |k: &str| filters.is_empty() || filters.iter().any(|f| k.contains(f.as_str()));
    let started = Instant::now();
    let mut all = Vec::new();
    for i in 1..=rounds {
        println!("round {i}/{rounds}");
        all.push(round(plan, &wanted));
    }
    let (sum_t, sum_md) = tables::summary(&all);
    let (per_t, per_md) = tables::per_round(&all);
    let (rat_t, rat_md) = tables::ratios(&all);
    let note = tables::half_rtt_note(&all);
    println!("\n{sum_t}\nMedians per round:\n{per_t}\nRatios per round:\n{rat_t}\n{note}");
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir)?;
    let md = format!(
        "# peers\n\n```text\n{}mode: {mode}, {rounds} rounds\n```\n\n{sum_md}\n### Medians per round\n\n{per_md}\n### Ratios per round\n\n{rat_md}\n{note}",
        machine::facts()
    );
    std::fs::write(dir.join("peers.md"), md)?;
    std::fs::write(dir.join("peers.csv"), tables::csv(&all))?;
    println!("written: target/peers.md, target/peers.csv");
    Ok(())
}

fn child(case: &str, rest: &[String]) -> Result<()> {
    if let Some(cpu) = std::env::var(util::CPU_ENV)
        .ok()
        .and_then(|c| c.parse().ok())
    {
        machine::pin_to(cpu);
    }
    util::watchdog();
    let args = Args::parse(rest);
    let ctl = Ctl::from_stdin()?;
    match case {
        "floor" => raw::floor_child(&ctl),
        "ring_pp" => ring::pingpong_child(&args, &ctl),
        "am_server" => am_server::server_child(&args, ctl),
        "iox_rr" => iox::request_response_child(&args, &ctl),
        "iox_ps" => iox::pubsub_child(&args, &ctl),
        other => bail!("unknown child case {other}"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let case = args.get(i + 1).cloned().unwrap_or_default();
        if let Err(e) = child(&case, &args[i + 2..]) {
            eprintln!("peers child {case}: {e:#}");
            std::process::exit(2);
        }
        return Ok(());
    }
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let quick = std::env::var("COMPARE_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let rounds = std::env::var("PEERS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 2 } else { ROUNDS });
    parent(&filters, Plan { quick }, rounds)
}
