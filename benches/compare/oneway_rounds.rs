//! One-way 64 B streams interleaved in rounds (see `rounds.rs` for why): the
//! AM prepared sender in batches of 64 to the zero-copy handler (as
//! `am_shm_tp_64_zc_batch`) and to the async handler (as `am_shm_tp_64_batch`),
//! and raw libzmq PUSH/PULL (as `zmq_tp_64`). Each phase is a throughput (ns
//! per message, the median of a few timed batches); the ratio PUSH/PULL ns ÷
//! AM ns is taken per round.
//!
//! The AM server of these cases spins (`Spin`) for as long as it lives, on the
//! CPU the PULL child is pinned to as well; so each round starts its own server
//! for the two AM phases, back to back, and stops it before or after the
//! PUSH/PULL phase (which goes first alternates). Nothing else runs during a
//! phase: the idle PULL child and both libzmq I/O threads sleep.

use std::time::{Duration, Instant};

use active_message::OneWaySender;
use anyhow::{Context, Result};

use crate::Plan;
use crate::am::{BATCH, Client};
use crate::am_server::runtime;
use crate::report::{Metric, Row};
use crate::rounds::{self, Worst};
use crate::session::Session;
use crate::util::{self, Peer, kv};

/// Message size.
const SIZE: usize = 64;
/// Timed batches per phase in a full run (quick: 2); the phase's figure is
/// their median.
const TIMED: usize = 3;

const ZMQ: (&str, &str) = (
    "zmq_tp_64_rounds",
    "raw libzmq PUSH/PULL one-way (tcp, 64 B), in rounds with the next two",
);
const ZC: (&str, &str) = (
    "am_shm_tp_64_zc_batch_rounds",
    "AM one-way, shm (64 B, zero-copy handler, prepared sender, batches of 64), in rounds",
);
const ASYNC: (&str, &str) = (
    "am_shm_tp_64_batch_rounds",
    "AM one-way, shm (64 B, prepared sender, batches of 64), in rounds",
);

/// Rows `zmq_tp_64_rounds`, `am_shm_tp_64_zc_batch_rounds` and
/// `am_shm_tp_64_batch_rounds` (all skipped, with the reason, if a side fails).
pub fn oneway_rounds(plan: Plan) -> Result<Vec<Row>> {
    let rt = runtime()?;
    Ok(match rt.block_on(measure(plan)) {
        Ok(rows) => rows,
        Err(e) => {
            let why = format!("{e:#}");
            [ZMQ, ZC, ASYNC]
                .into_iter()
                .map(|(key, label)| Row::skipped(key, label, why.clone()))
                .collect()
        }
    })
}

/// The figures of one case over all rounds.
struct Series {
    /// Messages in the next batch (calibrated to the batch time as it goes).
    count: u64,
    /// ns per message of every timed batch.
    batches: Vec<f64>,
    /// The figure of each phase (median of its timed batches), in round order.
    phases: Vec<f64>,
    /// Messages timed.
    msgs: u64,
}

impl Series {
    fn new(plan: Plan) -> Series {
        Series {
            count: plan.first(SIZE),
            batches: Vec::new(),
            phases: Vec::new(),
            msgs: 0,
        }
    }

    /// One phase: untimed batches (two the first time, to calibrate and warm
    /// up; one later, after the idle time between phases), then the timed
    /// ones. `send(n)` sends `n` messages and returns once all were received.
    async fn phase(
        &mut self,
        plan: Plan,
        mut send: impl AsyncFnMut(u64) -> Result<()>,
    ) -> Result<()> {
        let warm = if self.phases.is_empty() { 2 } else { 1 };
        let timed = if plan.quick { 2 } else { TIMED };
        let mut mine = Vec::with_capacity(timed);
        for b in 0..warm + timed {
            let n = self.count;
            let t = Instant::now();
            send(n).await?;
            let elapsed = t.elapsed();
            if b >= warm {
                mine.push(elapsed.as_nanos() as f64 / n as f64);
                self.msgs += n;
            }
            self.count = util::next_count(n, elapsed, batch_time(plan));
        }
        mine.sort_by(f64::total_cmp);
        self.phases.push(mine[mine.len() / 2]);
        self.batches.extend(mine);
        Ok(())
    }

    /// The row: median and slowest of every timed batch.
    fn row(mut self, (key, label): (&str, &str)) -> Result<Row> {
        self.batches.sort_by(f64::total_cmp);
        let worst = *self.batches.last().context("no timed batch")?;
        let median = self.batches[self.batches.len() / 2];
        Ok(Row::new(
            key,
            label,
            self.msgs,
            Metric::Rate {
                size: SIZE,
                median,
                worst,
            },
        ))
    }
}

/// Target duration of one batch: half the one-way cases' (three timed
/// batches per phase, three cases per round).
fn batch_time(plan: Plan) -> Duration {
    plan.batch_time() / 2
}

/// The PUSH side and its PULL child (`zmq_tp`, as the `zmq_tp_64` row).
struct PushPull {
    peer: Peer,
    push: zmq::Socket,
    _ctx: zmq::Context,
}

impl PushPull {
    /// Spawns the PULL child and connects a PUSH socket to it.
    fn start() -> Result<PushPull> {
        let peer = Peer::spawn("zmq_tp", &kv(&[("size", &SIZE)]))?;
        let (ep, _) = peer.ctl.recv()?;
        let ctx = zmq::Context::new();
        let push = ctx.socket(zmq::PUSH)?;
        push.set_linger(0)?;
        push.connect(&ep)?;
        Ok(PushPull {
            peer,
            push,
            _ctx: ctx,
        })
    }

    /// `n` messages; returns once the child has them all.
    fn batch(&self, n: u64, src: &[u8]) -> Result<()> {
        self.peer.ctl.send(&format!("batch {n}"), &[])?;
        for _ in 0..n {
            self.push.send(src, 0)?;
        }
        self.peer.ctl.expect("done")
    }

    /// Ends the child and waits for it to exit.
    fn stop(self) -> Result<()> {
        self.peer.ctl.send("end", &[])?;
        self.peer.finish()
    }
}

/// The payloads of one batch, made once: raw slices for the async `sink`,
/// `Vec<u8>`s archived by the zero-copy `sink_zc`'s sender.
struct Payloads<'a> {
    raw: Vec<&'a [u8]>,
    archived: Vec<Vec<u8>>,
}

/// One AM phase: `n` messages per batch through a prepared sender, in
/// batches of [`BATCH`], each batch closed by a `barrier` request (`sent`:
/// the messages this server has been sent so far, the barrier's target).
async fn am_phase(
    s: &mut Series,
    plan: Plan,
    c: &Client,
    sent: &mut u64,
    zero_copy: bool,
    p: &Payloads<'_>,
) -> Result<()> {
    let sink = if zero_copy { "sink_zc" } else { "sink" };
    let sender = c.client.one_way_sender(sink, c.target)?;
    s.phase(plan, async |n| {
        send(&sender, zero_copy, n, p).await?;
        *sent += n;
        c.barrier(*sent).await.map(drop)
    })
    .await
}

async fn send(sender: &OneWaySender, zero_copy: bool, n: u64, p: &Payloads<'_>) -> Result<()> {
    let mut left = n as usize;
    while left > 0 {
        let k = left.min(BATCH);
        match zero_copy {
            true => sender.send_batch(&p.archived[..k]).await?,
            false => sender.send_raw_batch(&p.raw[..k]).await?,
        }
        left -= k;
    }
    Ok(())
}

async fn measure(plan: Plan) -> Result<Vec<Row>> {
    let src = vec![0x5au8; SIZE];
    let p = Payloads {
        raw: vec![&src[..]; BATCH],
        archived: vec![src.clone(); BATCH],
    };
    let zmq = PushPull::start()?;
    let (mut z, mut zc, mut asy) = (Series::new(plan), Series::new(plan), Series::new(plan));
    for round in 0..rounds::count(plan) {
        // Even rounds: PUSH/PULL, zero-copy, async; odd rounds the reverse.
        if round % 2 == 0 {
            z.phase(plan, async |n| zmq.batch(n, &src)).await?;
        }
        let session = Session::start("shm", "spin", 0).await?;
        let mut sent = 0;
        let am = async {
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for zero_copy in order {
                let s = if zero_copy { &mut zc } else { &mut asy };
                am_phase(s, plan, &session.c, &mut sent, zero_copy, &p).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        session.stop().await?;
        am?;
        if round % 2 == 1 {
            z.phase(plan, async |n| zmq.batch(n, &src)).await?;
        }
    }
    zmq.stop()?;
    let ratios = |am: &Series| -> Vec<f64> {
        z.phases
            .iter()
            .zip(&am.phases)
            .map(|(z, a)| z / a)
            .collect()
    };
    let (zc_x, asy_x) = (ratios(&zc), ratios(&asy));
    let am_row = |s: Series, names, x: &[f64]| -> Result<Row> {
        let row = s.row(names)?.vs(ZMQ.0);
        Ok(rounds::with_ratios(row, "zmq", x, Worst::Lowest))
    };
    Ok(vec![
        z.row(ZMQ)?,
        am_row(zc, ZC, &zc_x)?,
        am_row(asy, ASYNC, &asy_x)?,
    ])
}
