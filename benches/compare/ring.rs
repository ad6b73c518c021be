//! The bare ring (`shm-ring`) across two processes: ping-pong over two rings (one per
//! direction, one memfd) and one-way throughput.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use shm_ring::{
    Bells, Consumer, Producer, Region, RegionLayout, RingConfig, WaitPolicy, init_ring,
};

use crate::Plan;
use crate::raw::{STOP_BYTE, size_key, size_label};
use crate::report::{Metric, Row};
use crate::util::{self, Args, Ctl, Peer, kv, time_trips};

/// Ring capacity for the ping-pong (each direction).
const PP_RING: usize = 64 << 10;
/// Ring capacity for the one-way throughput case (fits 1 MiB records).
pub const TP_RING: usize = 4 << 20;

/// Parses `spin`, `adaptive` (50 µs budget, the default policy) or `park`.
pub fn policy(name: &str) -> Result<WaitPolicy> {
    Ok(match name {
        "spin" => WaitPolicy::Spin,
        "adaptive" => WaitPolicy::default(),
        "park" => WaitPolicy::Park,
        other => bail!("unknown wait policy {other}"),
    })
}

/// The parent's handles of a two-ring link: it produces into ring 0, consumes ring 1.
struct Link {
    _region: Arc<Region>,
    tx: Producer,
    rx: Consumer,
}

/// Creates the memfd with two rings of `capacity` and hands it (and the four eventfds)
/// to the child.
fn link(peer: &Peer, capacity: usize, pol: WaitPolicy) -> Result<Link> {
    let cfg = RingConfig::new(capacity)?;
    let layout = RegionLayout::new(&[cfg, cfg]);
    let region = Region::memfd("compare-ring", layout.size())?;
    let (a, b) = (layout.offsets()[0], layout.offsets()[1]);
    init_ring(&region, a, cfg)?;
    init_ring(&region, b, cfg)?;
    let (bells_a, bells_b) = (Bells::new()?, Bells::new()?);
    let fds = [
        region.fd().context("memfd")?.try_clone_to_owned()?,
        bells_a.data.try_clone_fd()?,
        bells_a.space.try_clone_fd()?,
        bells_b.data.try_clone_fd()?,
        bells_b.space.try_clone_fd()?,
    ];
    let borrowed: Vec<_> = fds.iter().map(std::os::fd::AsFd::as_fd).collect();
    peer.ctl.send(&format!("{a} {b}"), &borrowed)?;
    let mut tx = Producer::attach(&region, a, bells_a)?;
    let mut rx = Consumer::attach(&region, b, bells_b)?;
    tx.set_policy(pol);
    rx.set_policy(pol);
    Ok(Link {
        _region: region,
        tx,
        rx,
    })
}

/// The child's side: consumes ring 0, produces into ring 1.
fn attach(ctl: &Ctl, pol: WaitPolicy) -> Result<(Arc<Region>, Consumer, Producer)> {
    let (text, fds) = ctl.recv()?;
    let offs: Vec<usize> = text
        .split(' ')
        .map(|s| s.parse().context("ring offset"))
        .collect::<Result<_>>()?;
    let [memfd, a_data, a_space, b_data, b_space]: [OwnedFd; 5] =
        fds.try_into().ok().context("five descriptors")?;
    let region = Region::from_fd(memfd)?;
    let mut rx = Consumer::attach(&region, offs[0], Bells::from_fds(a_data, a_space)?)?;
    let mut tx = Producer::attach(&region, offs[1], Bells::from_fds(b_data, b_space)?)?;
    rx.set_policy(pol);
    tx.set_policy(pol);
    Ok((region, rx, tx))
}

/// Ring-only ping-pong: `size` bytes (8 or 64) each way, both sides using `pol`.
pub fn pingpong(plan: Plan, pol_name: &str, size: usize, warmup: u64, iters: u64) -> Result<Row> {
    let pol = policy(pol_name)?;
    let peer = Peer::spawn("ring_pp", &kv(&[("policy", &pol_name)]))?;
    let mut l = link(&peer, PP_RING, pol)?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let (msg, back) = (&msg[..size.min(64)], &mut back[..size.min(64)]);
    let mut failed = None;
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        let r = (|| -> Result<()> {
            let mut g = l.tx.reserve_blocking(msg.len(), None)?;
            g.copy_from_slice(msg);
            g.commit();
            let g = l.rx.read_blocking(None)?;
            g.copy_to_slice(back);
            g.release();
            Ok(())
        })();
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    l.tx.push_blocking(&[STOP_BYTE; 8], None)?;
    peer.finish()?;
    let (key, base) = match (pol_name, size) {
        ("spin", 8) => ("ring_pp_spin_8".to_string(), "floor"),
        ("spin", _) => ("ring_pp_spin".into(), "floor"),
        ("adaptive", _) => ("ring_pp_adaptive".into(), "ring_pp_spin"),
        _ => (format!("ring_pp_{pol_name}"), "eventfd"),
    };
    let label = format!("ring-only ping-pong, {pol_name} ({size} B)");
    Ok(trips.row(&key, label).vs(base))
}

/// Echoes every record until one starts with the stop byte.
pub fn pingpong_child(args: &Args, ctl: &Ctl) -> Result<()> {
    let pol = policy(&args.get::<String>("policy")?)?;
    let (_region, mut rx, mut tx) = attach(ctl, pol)?;
    loop {
        let g = rx.read_blocking(None)?;
        if g.payload().first() == Some(&STOP_BYTE) {
            return Ok(());
        }
        let mut out = tx.reserve_blocking(g.len(), None)?;
        out.copy_from_slice(g.payload());
        out.commit();
        g.release();
    }
}

/// Bare ring one-way throughput: per batch, the parent writes `count` records of
/// `size` bytes (copying from a buffer) and the child copies each out, then reports
/// `done` (see [`util::batches`] for calibration and warm-up).
pub fn throughput(plan: Plan, size: usize) -> Result<Row> {
    let peer = Peer::spawn("ring_tp", &kv(&[("size", &size)]))?;
    let mut l = link(&peer, TP_RING, WaitPolicy::Spin)?;
    let src = vec![0x5au8; size];
    let (total, per_msg) =
        util::batches(plan.first(size), plan.batches(), plan.batch_time(), |n| {
            peer.ctl.send(&format!("batch {n}"), &[])?;
            for _ in 0..n {
                let mut g = l.tx.reserve_blocking(size, None)?;
                g.copy_from_slice(&src);
                g.commit();
            }
            peer.ctl.expect("done")
        })?;
    peer.ctl.send("end", &[])?;
    drop(l);
    peer.finish()?;
    Ok(Row::new(
        &format!("ring_tp_{}", size_key(size)),
        format!("ring-only one-way, spin ({})", size_label(size)),
        total,
        Metric::Rate {
            size,
            median: per_msg[per_msg.len() / 2],
            worst: *per_msg.last().unwrap_or(&0.0),
        },
    )
    .vs(&format!("memcpy_{}", size_key(size))))
}

/// Receives `batch N` (then N records, then answers `done`) until `end`.
pub fn throughput_child(args: &Args, ctl: &Ctl) -> Result<()> {
    let size: usize = args.get("size")?;
    let (_region, mut rx, _tx) = attach(ctl, WaitPolicy::Spin)?;
    let mut dst = vec![0u8; size];
    while let Some(count) = util::next_batch(ctl)? {
        for _ in 0..count {
            let g = rx.read_blocking(None)?;
            g.copy_to_slice(&mut dst);
            g.release();
        }
        std::hint::black_box(&mut dst);
        ctl.send("done", &[])?;
    }
    Ok(())
}
