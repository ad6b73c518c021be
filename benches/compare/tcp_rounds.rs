//! The AM round trip over TCP and the raw libzmq DEALER/ROUTER ping-pong,
//! interleaved in rounds in one process (see `rounds.rs` for why): each round
//! times a phase of each, alternating which goes first, and the ratio is taken
//! per round. The AM side is the `am_tcp_rt` client and server; the raw side is
//! the `zmq_pp` child of `zmq_raw.rs`, spawned beside them.

use anyhow::{Result, anyhow};

use crate::Plan;
use crate::am::Client;
use crate::park_rounds::phase;
use crate::report::{Metric, Row};
use crate::rounds::{self, Worst};
use crate::util::{Peer, median_p99};

/// Message size each way.
const MSG: usize = 64;
/// How long the DEALER waits for an answer before the phase fails: a child
/// that died fails the case instead of hanging it.
const RECV_TIMEOUT_MS: i32 = 10_000;

const RAW_KEY: &str = "zmq_pp_rounds";
const RAW_LABEL: &str = "raw libzmq DEALER/ROUTER ping-pong (tcp, 64 B), in rounds with the next";
const AM_KEY: &str = "am_tcp_rounds";
const AM_LABEL: &str = "AM round trip, TCP (64 B typed), in rounds with the previous";

/// TCP round trips against `c` (a TCP server) and raw DEALER/ROUTER
/// ping-pongs with a child of their own, interleaved in rounds; rows
/// `zmq_pp_rounds` and `am_tcp_rounds` (skipped, with the reason, if either
/// side fails).
pub async fn tcp_vs_zmq(c: &Client, plan: Plan) -> Vec<Row> {
    match measure(c, plan).await {
        Ok(rows) => rows,
        Err(e) => {
            let why = format!("{e:#}");
            vec![
                Row::skipped(RAW_KEY, RAW_LABEL, why.clone()),
                Row::skipped(AM_KEY, AM_LABEL, why),
            ]
        }
    }
}

async fn measure(c: &Client, plan: Plan) -> Result<Vec<Row>> {
    let peer = Peer::spawn("zmq_pp", &[])?;
    let (ep, _) = peer.ctl.recv()?;
    let ctx = zmq::Context::new();
    let dealer = ctx.socket(zmq::DEALER)?;
    dealer.set_linger(0)?;
    dealer.set_rcvtimeo(RECV_TIMEOUT_MS)?;
    dealer.connect(&ep)?;
    let msg = [7u8; MSG];
    // Blocking calls on the runtime's one thread, as the `zmq_pp` row makes
    // them: the AM client has nothing in flight during this phase.
    let raw = async || -> Result<()> {
        let mut back = [0u8; MSG];
        dealer.send(&msg[..], 0)?;
        match dealer.recv_into(&mut back, 0)? {
            MSG => Ok(()),
            n => Err(anyhow!("zmq_pp child answered {n} bytes")),
        }
    };
    let am = async || c.echo(&msg).await.map(drop);
    let each = plan.budget() / 3;
    // Warm both up before the first round.
    phase(each / 4, &mut Vec::new(), am).await?;
    phase(each / 4, &mut Vec::new(), raw).await?;
    let (mut am_ns, mut raw_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds::count(plan) {
        let (a, r) = if round % 2 == 0 {
            let a = phase(each, &mut am_ns, am).await?;
            (a, phase(each, &mut raw_ns, raw).await?)
        } else {
            let r = phase(each, &mut raw_ns, raw).await?;
            (phase(each, &mut am_ns, am).await?, r)
        };
        ratios.push(a as f64 / r.max(1) as f64);
    }
    dealer.send(&[][..], 0)?;
    peer.finish()?;
    let row = |key: &str, label: &str, ns: &mut Vec<u64>| {
        let (median, p99) = median_p99(ns);
        Row::new(key, label, ns.len() as u64, Metric::Latency { median, p99 })
    };
    let raw_row = row(RAW_KEY, RAW_LABEL, &mut raw_ns);
    let am_row = row(AM_KEY, AM_LABEL, &mut am_ns).vs(RAW_KEY);
    let am_row = rounds::with_ratios(am_row, "zmq", &ratios, Worst::Highest);
    Ok(vec![raw_row, am_row])
}
