//! Cross-process comparison harness: every case runs across two real processes (this
//! binary re-executes itself as `--child <case>`), and one table compares our ring and
//! runtime with the floor and raw OS / libzmq baselines measured in the same run.
//!
//! ```text
//! cargo bench --bench compare                 # full run (< 3 min)
//! COMPARE_QUICK=1 cargo bench --bench compare # smoke run
//! cargo bench --bench compare -- ring zmq     # only cases whose key contains a word
//! cargo bench --bench compare -- cohort       # the cohort gathers (1, 2, 4 workers)
//! cargo bench --bench compare -- stream       # streamed responses next to unary calls
//! cargo bench --bench compare -- am_tcp rounds # TCP and one-way 64 B, also in rounds
//! ```
//!
//! The table goes to stdout, as markdown to `target/compare.md` and as CSV to
//! `target/compare.csv` (chart: `scripts/plot-compare`). What each case is, and the
//! bars, are in `docs/performance.md` (and design.md section 9).

#![allow(missing_docs)]

#[path = "compare/am.rs"]
mod am;
#[path = "compare/am_server.rs"]
mod am_server;
#[path = "compare/beside.rs"]
mod beside;
#[path = "compare/cohort.rs"]
mod cohort;
#[path = "compare/machine.rs"]
mod machine;
#[path = "compare/oneway_rounds.rs"]
mod oneway_rounds;
#[path = "compare/park_rounds.rs"]
mod park_rounds;
#[path = "compare/plan.rs"]
mod plan;
#[path = "compare/raw.rs"]
mod raw;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/ring.rs"]
mod ring;
#[path = "compare/rounds.rs"]
mod rounds;
#[path = "compare/session.rs"]
mod session;
#[path = "compare/stream.rs"]
mod stream;
#[path = "compare/tcp_rounds.rs"]
mod tcp_rounds;
#[path = "compare/util.rs"]
mod util;
#[path = "compare/zmq_raw.rs"]
mod zmq_raw;

use std::time::Instant;

use anyhow::{Result, bail};

pub use plan::{LARGE, Plan, SIZES};
use report::{Bar, Row};
use util::{Args, Ctl};

#[global_allocator]
static GLOBAL: util::CountingAlloc = util::CountingAlloc;

/// The bars of design.md section 9 that this harness can judge.
fn bars() -> Vec<Bar> {
    use Bar::*;
    vec![
        Ratio {
            case: "ring_pp_spin_8",
            base: "floor",
            at_most: true,
            factor: 2.5,
            text: "ring-only ping-pong (8 B, as the floor) <= 2.5x floor",
        },
        Elsewhere {
            text: "ring-only ping-pong within 1.3x of rtrb",
            why: "rtrb: separate comparison crate (shm-ring criterion bench for threads)",
        },
        Ratio {
            case: "am_shm_spin_rt",
            base: "ring_pp_spin",
            at_most: true,
            factor: 3.0,
            text: "AM round trip, Spin <= 3x ring-only ping-pong (64 B)",
        },
        Elsewhere {
            text: "AM round trip, Spin faster than iceoryx2 request-response",
            why: "iceoryx2: separate comparison crate",
        },
        Ratio {
            case: "am_shm_adaptive_rt",
            base: "am_shm_spin_rt",
            at_most: true,
            factor: 1.5,
            text: "AM round trip, Adaptive <= 1.5x Spin",
        },
        AtMost {
            case: "am_shm_adaptive_rt",
            field: "idle cpu % server",
            limit: 1.0,
            unit: "%",
            text: "Adaptive: idle link < 1% of a core (server)",
        },
        AtMost {
            case: "am_shm_adaptive_rt",
            field: "idle cpu % client",
            limit: 1.0,
            unit: "%",
            text: "Adaptive: idle link < 1% of a core (client)",
        },
        Ratio {
            case: "am_shm_park_rt",
            base: "eventfd",
            at_most: true,
            factor: 1.1,
            text: "AM round trip, Park <= 1.1x raw eventfd ping-pong",
        },
        AtMost {
            case: "am_shm_park_rounds",
            field: "x eventfd, median round",
            limit: 1.1,
            unit: "x",
            text: "  same, interleaved in rounds: median of the per-round ratios",
        },
        Ratio {
            case: "am_tcp_rt",
            base: "zmq_pp",
            at_most: true,
            factor: 1.5,
            text: "AM round trip, TCP <= 1.5x raw libzmq ping-pong",
        },
        AtMost {
            case: "am_tcp_rounds",
            field: "x zmq, median round",
            limit: 1.3,
            unit: "x",
            text: "  same, interleaved in rounds: median of the per-round ratios <= 1.3x",
        },
        Elsewhere {
            text: "ring one-way 64 B >= 0.5x rtrb throughput",
            why: "rtrb: separate comparison crate",
        },
        Ratio {
            case: "am_shm_tp_64",
            base: "zmq_tp_64",
            at_most: false,
            factor: 5.0,
            text: "AM one-way 64 B (shm) >= 5x raw libzmq push/pull",
        },
        Ratio {
            case: "am_shm_tp_64_zc_ring4m",
            base: "zmq_tp_64",
            at_most: false,
            factor: 5.0,
            text: "  same, zero-copy handler (4 MiB rings)",
        },
        Ratio {
            case: "am_shm_tp_64_prep",
            base: "zmq_tp_64",
            at_most: false,
            factor: 2.0,
            text: "AM one-way 64 B (shm), prepared sender >= 2x push/pull",
        },
        Ratio {
            case: "am_shm_tp_64_zc_prep",
            base: "zmq_tp_64",
            at_most: false,
            factor: 5.0,
            text: "  same, zero-copy handler >= 5x",
        },
        Ratio {
            case: "am_shm_tp_64_batch",
            base: "zmq_tp_64",
            at_most: false,
            factor: 2.0,
            text: "AM one-way 64 B (shm), prepared sender, batches of 64 >= 2x push/pull",
        },
        Ratio {
            case: "am_shm_tp_64_zc_batch",
            base: "zmq_tp_64",
            at_most: false,
            factor: 5.0,
            text: "  same, zero-copy handler >= 5x",
        },
        AtLeast {
            case: "am_shm_tp_64_batch_rounds",
            field: "x zmq, median round",
            limit: 2.0,
            unit: "x",
            text: "  same, async handler, interleaved in rounds with push/pull: median round >= 2x",
        },
        AtLeast {
            case: "am_shm_tp_64_zc_batch_rounds",
            field: "x zmq, median round",
            limit: 5.0,
            unit: "x",
            text: "  same, zero-copy handler, interleaved in rounds: median round >= 5x",
        },
        Ratio {
            case: "am_shm_tp_1m",
            base: "ring_tp_1m",
            at_most: false,
            factor: 0.7,
            text: "AM one-way 1 MiB (shm) >= 0.7x bare ring bandwidth",
        },
        Ratio {
            case: "am_shm_tp_1m_ring4m",
            base: "ring_tp_1m",
            at_most: false,
            factor: 0.7,
            text: "  same, with 4 MiB rings (1 MiB fits in the ring)",
        },
        Ratio {
            case: "am_shm_tp_1m_zc_ring4m",
            base: "ring_tp_1m",
            at_most: false,
            factor: 0.7,
            text: "  same, zero-copy handler, 4 MiB rings",
        },
        Ratio {
            case: "am_shm_tp_16m",
            base: "am_shm_tp_16m_memcpy",
            at_most: false,
            factor: 0.7,
            text: "AM one-way 16 MiB (shm, default config) >= 0.7x memcpy timed \
                   between its batches",
        },
        Ratio {
            case: "am_shm_tp_16m",
            base: "memcpy_16m",
            at_most: false,
            factor: 0.7,
            text: "  same, vs the memcpy row timed before the AM cases",
        },
        Ratio {
            case: "am_shm_tp_256m",
            base: "memcpy_256m",
            at_most: false,
            factor: 0.7,
            text: "  same, 256 MiB",
        },
        Ratio {
            case: "am_shm_tp_16m",
            base: "memcpy2_16m",
            at_most: false,
            factor: 0.7,
            text: "  same, vs memcpy into 2 destinations in turn (second baseline)",
        },
        Ratio {
            case: "am_shm_tp_16m_loan",
            base: "am_shm_tp_16m_loan_memcpy",
            at_most: false,
            factor: 0.9,
            text: "loan + send 16 MiB (shm, one write into the loan) >= 0.9x memcpy \
                   timed between its batches",
        },
        Ratio {
            case: "am_shm_tp_16m_loan",
            base: "memcpy_16m",
            at_most: false,
            factor: 0.9,
            text: "  same, vs the memcpy row timed before the AM cases",
        },
        AtMost {
            case: "am_shm_tp_16m",
            field: "allocs/msg client",
            limit: 0.01,
            unit: "",
            text: "AM one-way 16 MiB: <= 0.01 allocations per message, client",
        },
        AtMost {
            case: "am_shm_tp_16m",
            field: "allocs/msg server",
            limit: 0.01,
            unit: "",
            text: "AM one-way 16 MiB: <= 0.01 allocations per message, server",
        },
        Ratio {
            case: "am_shm_tp_1m",
            base: "am_tcp_tp_1m",
            at_most: false,
            factor: 7.0,
            text: "AM one-way 1 MiB (shm) >= 7x AM over TCP",
        },
        AtMost {
            case: "am_shm_spin_rt",
            field: "allocs/msg client",
            limit: 0.01,
            unit: "",
            text: "steady state (shm, Spin): <= 0.01 allocations per message, client",
        },
        AtMost {
            case: "am_shm_spin_rt",
            field: "allocs/msg server",
            limit: 0.01,
            unit: "",
            text: "steady state (shm, Spin): <= 0.01 allocations per message, server",
        },
        AtMost {
            case: "am_shm_spin_rt",
            field: "rw syscalls/msg client",
            limit: 0.01,
            unit: "",
            text: "steady state (shm, Spin): <= 0.01 read/write syscalls per message, client",
        },
        AtMost {
            case: "am_shm_spin_rt",
            field: "rw syscalls/msg server",
            limit: 0.01,
            unit: "",
            text: "steady state (shm, Spin): <= 0.01 read/write syscalls per message, server",
        },
        Ratio {
            case: "cohort_gather_shm_4",
            base: "cohort_seq_shm_4",
            at_most: true,
            factor: 0.75,
            text: "cohort gather over 4 local ranks well below 4 sequential calls (<= 0.75x)",
        },
        AtMost {
            case: "am_shm_kill",
            field: "median",
            limit: 1000.0,
            unit: "µs",
            text: "peer killed: pending call failed in <= 1 ms (shm, median)",
        },
    ]
}

/// Runs one case, turning an error into a "not measured" row (printed at once).
fn run(rows: &mut Vec<Row>, key: &str, label: &str, f: impl FnOnce() -> Result<Vec<Row>>) {
    let t = Instant::now();
    match f() {
        Ok(new) => {
            for r in &new {
                if let Err(why) = &r.metric {
                    println!("  {:<24} skipped: {why}", r.key);
                }
            }
            println!("  {key:<24} done in {:.1} s", t.elapsed().as_secs_f64());
            rows.extend(new);
        }
        Err(e) => {
            let why = format!("{e:#}");
            println!("  {key:<24} FAILED / skipped: {why}");
            rows.push(Row::skipped(key, format!("{label}: {key}"), why));
        }
    }
}

fn one(r: Result<Row>) -> Result<Vec<Row>> {
    r.map(|r| vec![r])
}

fn parent(filters: &[String], plan: Plan) -> Result<()> {
    print!("{}", machine::facts());
    println!(
        "mode: {}",
        if plan.quick {
            "quick (COMPARE_QUICK=1)"
        } else {
            "full"
        }
    );
    let wanted = |k: &str| filters.is_empty() || filters.iter().any(|f| k.contains(f.as_str()));
    let started = Instant::now();
    let mut rows = Vec::new();
    let r = &mut rows;
    // `case!(pinned, key, label, rows)`: pinned cases run this process (all its threads)
    // on one CPU and the child on another, so placement is the same in every run and
    // two busy-polling processes never share a core.
    macro_rules! case {
        ($pin:expr, $key:expr, $label:expr, $f:expr) => {
            if wanted(&$key) {
                let _pin = $pin.then(machine::PinnedPair::new);
                run(r, &$key, &$label, || $f);
            }
        };
    }
    // Grouped so that each case runs right after the baselines it is compared with
    // (the host moves the vCPUs around now and then; see the floor re-check).
    let pp = |pol: &'static str, size: usize| {
        let (w, n) = plan.trips(if pol == "spin" { 1.0 } else { 40.0 });
        one(ring::pingpong(plan, pol, size, w, n))
    };
    let (w, n) = plan.trips(0.5);
    case!(true, "floor", "floor", one(raw::floor(plan, w, n)));
    case!(true, "ring_pp_spin_8", "ring", pp("spin", 8));
    case!(true, "ring_pp_spin", "ring", pp("spin", 64));
    case!(true, "ring_pp_adaptive", "ring", pp("adaptive", 64));
    for name in ["spin", "adaptive"] {
        let suite = am::suite(name);
        case!(true, suite.key(), suite.label(), suite.run(plan));
    }
    case!(true, "floor_again", "floor", {
        let r = raw::floor(plan, w, n)?;
        Ok(vec![
            Row {
                key: "floor_again".into(),
                label: "floor again, after the spin cases".into(),
                ..r
            }
            .vs("floor"),
        ])
    });

    let (w, n) = plan.trips(60.0);
    case!(true, "eventfd", "eventfd", one(raw::eventfd(plan, w, n)));
    case!(true, "ring_pp_park", "ring", pp("park", 64));
    let suite = am::suite("park");
    case!(true, suite.key(), suite.label(), suite.run(plan));
    case!(true, "uds", "uds", one(raw::uds(plan, w, n)));

    let (w, n) = plan.trips(80.0);
    case!(true, "zmq_pp", "zmq", one(zmq_raw::pingpong(plan, w, n)));
    for size in [64, 1 << 20] {
        let k = format!("zmq_tp_{}", raw::size_key(size));
        case!(true, k, "zmq", one(zmq_raw::push_pull(plan, size)));
    }
    let suite = am::suite("tcp");
    case!(true, suite.key(), suite.label(), suite.run(plan));

    for size in SIZES.into_iter().chain(LARGE) {
        let k = format!("memcpy_{}", raw::size_key(size));
        // Large copies take milliseconds each: fewer samples.
        let samples = plan.n(if size >= LARGE[0] { 50 } else { 2000 });
        case!(false, k, "memcpy", one(raw::memcpy(size, samples)));
        if size == 16 << 20 {
            let k = format!("memcpy2_{}", raw::size_key(size));
            case!(false, k, "memcpy", one(raw::memcpy_two(size, samples)));
        }
    }
    for size in SIZES {
        let k = format!("ring_tp_{}", raw::size_key(size));
        case!(true, k, "ring", one(ring::throughput(plan, size)));
    }
    for name in [
        "shm_one_way",
        "shm_one_way_ring4m",
        "shm_one_way_zc",
        "shm_one_way_large",
        "shm_one_way_loan",
        "shm_large_rt",
        "shm_one_way_prep",
        "shm_one_way_zc_prep",
        "tcp_one_way_prep",
        "shm_one_way_batch",
        "shm_one_way_zc_batch",
        "shm_one_way_zc_ring4m_prep",
        "shm_one_way_zc_ring4m_batch",
    ] {
        let suite = am::suite(name);
        case!(true, suite.key(), suite.label(), suite.run(plan));
    }
    let k = "am_shm_tp_64_rounds";
    case!(true, k, "rounds", oneway_rounds::oneway_rounds(plan));
    case!(false, "am_shm_kill", "kill", one(am_server::kill(plan)));
    for transport in ["shm", "tcp"] {
        let k = format!("stream_{transport}");
        case!(true, k, "stream", stream::suite(plan, transport));
    }
    // Several worker processes: not pinned (the pinning is for pairs).
    for transport in ["shm", "tcp"] {
        for workers in [1, 2, 4] {
            let k = format!("cohort_gather_{transport}_{workers}");
            case!(false, k, "cohort", cohort::gather(plan, transport, workers));
        }
    }
    let mut warning = String::new();
    if let Some(x) = report::find_ratio(&rows, "floor_again", "floor")
        && !(0.8..=1.25).contains(&x)
    {
        warning = format!(
            "WARNING: the floor moved {x:.2}x during the spin cases (the host moved the \
             vCPUs): ratios against it are unreliable in this run\n"
        );
    }
    let table = report::text_table(&rows);
    let (bars_text, bars_md) = report::bars_tables(&bars(), &rows);
    println!("\n{table}\n{warning}\nBars (design.md section 9):\n{bars_text}");
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/compare.md");
    std::fs::create_dir_all(out.parent().expect("has a parent"))?;
    let md = format!(
        "# compare\n\n```text\n{}```\n\n{}\n{warning}\n## Bars\n\n{}",
        machine::facts(),
        report::markdown_table(&rows),
        bars_md
    );
    std::fs::write(&out, md)?;
    println!("markdown table written to {}", out.display());
    let csv = out.with_file_name("compare.csv");
    std::fs::write(&csv, report::csv_table(&rows))?;
    println!(
        "CSV written to {} (chart: scripts/plot-compare)",
        csv.display()
    );
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
        "eventfd" => raw::eventfd_child(&ctl),
        "uds" => raw::uds_child(&ctl),
        "ring_pp" => ring::pingpong_child(&args, &ctl),
        "ring_tp" => ring::throughput_child(&args, &ctl),
        "zmq_pp" => zmq_raw::pingpong_child(&ctl),
        "zmq_tp" => zmq_raw::push_pull_child(&args, &ctl),
        "am_server" => am_server::server_child(&args, ctl),
        "cohort_worker" => cohort::worker_child(&args, ctl),
        other => bail!("unknown child case {other}"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let case = args.get(i + 1).cloned().unwrap_or_default();
        if let Err(e) = child(&case, &args[i + 2..]) {
            eprintln!("compare child {case}: {e:#}");
            std::process::exit(2);
        }
        return Ok(());
    }
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let quick = std::env::var("COMPARE_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    parent(&filters, Plan { quick })
}
