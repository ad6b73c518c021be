//! The AM round trip with the Park policy and the raw eventfd ping-pong,
//! interleaved in rounds in one process: the host moves its vCPUs between
//! fast and slow placements every few seconds, and a wake-up's cost moves
//! with them, so two cases timed seconds apart can differ by 20 % for that
//! alone. Each round times a phase of each (alternating which goes first),
//! and the ratio is taken per round.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::Plan;
use crate::am::Client;
use crate::raw::{blocking_eventfd, efd_read, efd_write};
use crate::report::{Metric, Row};
use crate::util::{Peer, median_p99};

/// Rounds in a full run (a quick run makes 3).
const ROUNDS: usize = 7;

/// Round trips of one phase: as many as fit `phase`, at least 200.
pub async fn phase(
    phase: Duration,
    ns: &mut Vec<u64>,
    mut trip: impl AsyncFnMut() -> Result<()>,
) -> Result<u64> {
    let start = Instant::now();
    let first = ns.len();
    while ns.len() - first < 200 || start.elapsed() < phase {
        let t = Instant::now();
        trip().await?;
        ns.push(t.elapsed().as_nanos() as u64);
    }
    let (median, _) = median_p99(&mut ns[first..].to_vec());
    Ok(median)
}

/// Park round trips against `c` (a server with the Park policy) and raw
/// eventfd ping-pongs with a child of their own, interleaved in rounds.
pub async fn park_vs_eventfd(c: &Client, plan: Plan) -> Result<Vec<Row>> {
    let (ping, pong) = (blocking_eventfd()?, blocking_eventfd()?);
    let peer = Peer::spawn("eventfd", &[])?;
    peer.ctl.send("eventfds", &[ping.as_fd(), pong.as_fd()])?;
    let rounds = if plan.quick { 3 } else { ROUNDS };
    let each = plan.budget() / 2;
    let req = [7u8; 64];
    let (mut am, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Warm both up before the first round.
    phase(each / 4, &mut Vec::new(), async || {
        c.echo(&req).await.map(drop)
    })
    .await?;
    let eventfd = async || efd_write(&ping, 1).and_then(|()| efd_read(&pong)).map(drop);
    phase(each / 4, &mut Vec::new(), eventfd).await?;
    for round in 0..rounds {
        let (a, r) = if round % 2 == 0 {
            let a = phase(each, &mut am, async || c.echo(&req).await.map(drop)).await?;
            (a, phase(each, &mut raw, eventfd).await?)
        } else {
            let r = phase(each, &mut raw, eventfd).await?;
            (
                phase(each, &mut am, async || c.echo(&req).await.map(drop)).await?,
                r,
            )
        };
        ratios.push(a as f64 / r as f64);
    }
    efd_write(&ping, 2)?;
    peer.finish()?;
    let row = |key: &str, label: &str, ns: &mut Vec<u64>| {
        let (median, p99) = median_p99(ns);
        Row::new(key, label, ns.len() as u64, Metric::Latency { median, p99 })
    };
    let raw_row = row(
        "eventfd_rounds",
        "raw eventfd ping-pong (blocking), in rounds with the next",
        &mut raw,
    );
    let mut am_row = row(
        "am_shm_park_rounds",
        "AM round trip, shm park (64 B typed), in rounds with the previous",
        &mut am,
    )
    .vs("eventfd_rounds");
    for (i, x) in ratios.iter().enumerate() {
        am_row = am_row.extra(&format!("x eventfd round {}", i + 1), *x);
    }
    ratios.sort_by(f64::total_cmp);
    let am_row = am_row
        .extra("x eventfd, median round", ratios[ratios.len() / 2])
        .extra("x eventfd, highest round", ratios[ratios.len() - 1]);
    Ok(vec![raw_row, am_row])
}
