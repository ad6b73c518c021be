//! Raw libzmq baselines (the `zmq` crate, libzmq underneath) over tcp://127.0.0.1:
//! DEALER -> ROUTER ping-pong and PUSH -> PULL throughput.

use anyhow::{Context, Result, anyhow};

use crate::Plan;
use crate::raw::{size_key, size_label};
use crate::report::{Metric, Row};
use crate::util::{self, Args, Ctl, Peer, kv, time_trips};

/// Ping-pong message size.
const MSG: usize = 64;

fn endpoint(sock: &zmq::Socket) -> Result<String> {
    sock.get_last_endpoint()?
        .map_err(|_| anyhow!("non-UTF-8 endpoint"))
}

/// DEALER (parent) -> ROUTER (child) -> DEALER: 64 B each way; an empty message
/// stops the child.
pub fn pingpong(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let peer = Peer::spawn("zmq_pp", &[])?;
    let (ep, _) = peer.ctl.recv()?;
    let ctx = zmq::Context::new();
    let dealer = ctx.socket(zmq::DEALER)?;
    dealer.set_linger(0)?;
    dealer.connect(&ep)?;
    let msg = [7u8; MSG];
    let mut back = [0u8; MSG];
    let mut failed = None;
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        let r = dealer
            .send(&msg[..], 0)
            .and_then(|()| dealer.recv_into(&mut back, 0));
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    dealer.send(&[][..], 0)?;
    peer.finish()?;
    Ok(trips.row("zmq_pp", "raw libzmq DEALER/ROUTER ping-pong (tcp, 64 B)"))
}

pub fn pingpong_child(ctl: &Ctl) -> Result<()> {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER)?;
    router.set_linger(0)?;
    router.bind("tcp://127.0.0.1:0")?;
    ctl.send(&endpoint(&router)?, &[])?;
    let mut buf = [0u8; MSG];
    loop {
        let id = router.recv_msg(0)?;
        let n = router.recv_into(&mut buf, 0)?;
        if n == 0 {
            return Ok(());
        }
        router.send(id, zmq::SNDMORE)?;
        router.send(&buf[..n.min(MSG)], 0)?;
    }
}

/// PUSH (parent) -> PULL (child), `size`-byte messages in batches; a batch ends when
/// the child reports it has received them all.
pub fn push_pull(plan: Plan, size: usize) -> Result<Row> {
    let peer = Peer::spawn("zmq_tp", &kv(&[("size", &size)]))?;
    let (ep, _) = peer.ctl.recv()?;
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH)?;
    push.set_linger(0)?;
    push.connect(&ep)?;
    let src = vec![0x5au8; size];
    let (total, per_msg) =
        util::batches(plan.first(size), plan.batches(), plan.batch_time(), |n| {
            peer.ctl.send(&format!("batch {n}"), &[])?;
            for _ in 0..n {
                push.send(&src[..], 0)?;
            }
            peer.ctl.expect("done")
        })?;
    peer.ctl.send("end", &[])?;
    peer.finish()?;
    Ok(Row::new(
        &format!("zmq_tp_{}", size_key(size)),
        format!("raw libzmq PUSH/PULL one-way (tcp, {})", size_label(size)),
        total,
        Metric::Rate {
            size,
            median: per_msg[per_msg.len() / 2],
            worst: *per_msg.last().context("no batch")?,
        },
    ))
}

pub fn push_pull_child(args: &Args, ctl: &Ctl) -> Result<()> {
    let size: usize = args.get("size")?;
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL)?;
    pull.set_linger(0)?;
    pull.bind("tcp://127.0.0.1:0")?;
    ctl.send(&endpoint(&pull)?, &[])?;
    let mut buf = vec![0u8; size];
    while let Some(count) = util::next_batch(ctl)? {
        for _ in 0..count {
            pull.recv_into(&mut buf, 0)?;
        }
        ctl.send("done", &[])?;
    }
    Ok(())
}
