//! Streamed responses across two processes: items per second of a stream of
//! 64 B and 64 KiB raw items over shm and TCP, next to the same number of
//! unary calls answering the same size, and the latency from a handler's
//! `send` of an item to the caller's receipt of it.
//!
//! * stream rate: one `blob_stream` call per batch (window 64), every item read;
//! * unary rate: `blob` requests one after the other, each answered with one
//!   item of the same size (the same count as the stream's batch);
//! * item latency: a stream with window 1 (credit after every item, so the
//!   handler sends each item only once the previous one was read: no queueing);
//!   each item carries the handler's `CLOCK_MONOTONIC` time of its `send`,
//!   which the caller subtracts from its own on receipt (one host, one clock).

use std::time::Instant;

use active_message::handler_impls::{raw_stream_handler, unary_handler};
use active_message::{ActiveMessageManager, PeerInfo};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use nix::time::{ClockId, clock_gettime};

use crate::Plan;
use crate::am::Client;
use crate::am_server::{builder, runtime};
use crate::raw::{size_key, size_label};
use crate::report::{Metric, Row};
use crate::util::{self, Peer, kv, median_p99};

/// Item sizes measured.
pub const ITEM_SIZES: [usize; 2] = [64, 64 << 10];
/// Window of the rate cases.
const WINDOW: u32 = 64;

/// Now on `CLOCK_MONOTONIC`, in ns (shared by every process of the host).
fn mono_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// `[count u64 LE, size u64 LE]`, the payload of `blob_stream` and `blob`.
fn request(count: u64, size: usize) -> Bytes {
    let mut out = count.to_le_bytes().to_vec();
    out.extend_from_slice(&(size as u64).to_le_bytes());
    Bytes::from(out)
}

fn parse(payload: &[u8]) -> Result<(u64, usize), String> {
    let field = |at: usize| {
        payload
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| "payload: count u64, size u64".to_string())
    };
    Ok((field(0)?, field(8)? as usize))
}

/// The server's handlers: `blob_stream` (a raw stream of `count` items of
/// `size` bytes, each starting with its send time) and `blob` (one such item).
pub async fn register(manager: &ActiveMessageManager) -> Result<()> {
    let stream = raw_stream_handler("blob_stream", |c, sink| async move {
        let (count, size) = parse(&c.payload)?;
        let mut item = vec![0x5au8; size.max(8)];
        for _ in 0..count {
            item[..8].copy_from_slice(&mono_ns().to_le_bytes());
            sink.send_bytes(&item).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    manager.register_handler("blob_stream", stream).await?;
    let blob = unary_handler("blob", |c| {
        let (_, size) = parse(&c.payload)?;
        Ok(Some(Bytes::from(vec![0x5au8; size.max(8)])))
    });
    manager.register_handler("blob", blob).await?;
    Ok(())
}

/// Every stream case over `transport` (`shm` or `tcp`), against one server.
pub fn suite(plan: Plan, transport: &'static str) -> Result<Vec<Row>> {
    let rt = runtime()?;
    rt.block_on(async move {
        let peer = Peer::spawn(
            "am_server",
            &kv(&[
                ("transport", &transport),
                ("policy", &"adaptive"),
                ("ring", &0),
            ]),
        )?;
        let (json, _) = peer.ctl.recv().context("server PeerInfo")?;
        if let Some(why) = json.strip_prefix("error: ") {
            bail!("server: {why}");
        }
        let info: PeerInfo = serde_json::from_str(&json).context("server PeerInfo")?;
        let manager = builder(transport, "adaptive", 0)?.build().await?;
        let client = manager.client();
        client.connect_to_peer(info.clone()).await?;
        let c = Client {
            client,
            target: info.instance_id,
        };
        let mut rows = Vec::new();
        for size in ITEM_SIZES {
            let (stream, unary) = rates(&c, plan, transport, size).await?;
            rows.push(unary);
            rows.push(stream);
        }
        rows.push(latency(&c, plan, transport).await?);
        let _ = peer.ctl.send("stop", &[]);
        manager.shutdown().await?;
        peer.finish()?;
        Ok(rows)
    })
}

/// Reads one stream of `count` items of `size` bytes, every item checked in.
async fn one_stream(c: &Client, count: u64, size: usize, window: u32) -> Result<()> {
    let mut items = c
        .client
        .active_message("blob_stream")?
        .raw_payload(request(count, size))
        .expect_stream::<()>()
        .window(window)
        .send(c.target)
        .await?;
    let mut got = 0;
    while let Some(item) = items.next_bytes().await {
        std::hint::black_box(item?);
        got += 1;
    }
    if got != count {
        bail!("stream ended after {got} of {count} items");
    }
    Ok(())
}

async fn unary_calls(c: &Client, count: u64, size: usize) -> Result<()> {
    for _ in 0..count {
        let back = c
            .client
            .active_message("blob")?
            .raw_payload(request(1, size))
            .expect_response::<()>()
            .send(c.target)
            .await?
            .await_response_raw()
            .await?;
        std::hint::black_box(back);
    }
    Ok(())
}

/// The stream row and the unary row of one item size, batch by batch.
async fn rates(c: &Client, plan: Plan, transport: &str, size: usize) -> Result<(Row, Row)> {
    let mut count = plan.first(size);
    let (mut stream_ns, mut unary_ns) = (Vec::new(), Vec::new());
    let mut total = 0;
    for b in 0..plan.batches() + 2 {
        let t = Instant::now();
        one_stream(c, count, size, WINDOW).await?;
        let stream_elapsed = t.elapsed();
        let t = Instant::now();
        unary_calls(c, count, size).await?;
        let unary_elapsed = t.elapsed();
        if b >= 2 {
            total += count;
            stream_ns.push(stream_elapsed.as_nanos() as f64 / count as f64);
            unary_ns.push(unary_elapsed.as_nanos() as f64 / count as f64);
        }
        count = util::next_count(count, stream_elapsed, plan.batch_time());
    }
    let row = |key: String, label: String, per: &mut Vec<f64>| -> Result<Row> {
        per.sort_by(f64::total_cmp);
        let metric = Metric::Rate {
            size,
            median: per[per.len() / 2],
            worst: *per.last().context("no batch")?,
        };
        Ok(Row::new(&key, label, total, metric))
    };
    let k = size_key(size);
    let l = size_label(size);
    let unary_key = format!("stream_{transport}_unary_{k}");
    let unary = row(
        unary_key.clone(),
        format!("unary calls, {transport} ({l} answers, one after another)"),
        &mut unary_ns,
    )?;
    let stream = row(
        format!("stream_{transport}_{k}"),
        format!("streamed items, {transport} ({l}, window {WINDOW})"),
        &mut stream_ns,
    )?
    .vs(&unary_key);
    Ok((stream, unary))
}

/// Handler `send` -> caller receipt, window 1.
async fn latency(c: &Client, plan: Plan, transport: &str) -> Result<Row> {
    let count = plan.n(20_000);
    let mut items = c
        .client
        .active_message("blob_stream")?
        .raw_payload(request(count, 64))
        .expect_stream::<()>()
        .window(1)
        .send(c.target)
        .await?;
    let mut ns = Vec::with_capacity(count as usize);
    while let Some(item) = items.next_bytes().await {
        let now = mono_ns();
        let item = item?;
        let sent = u64::from_le_bytes(item[..8].try_into().context("short item")?);
        ns.push(now.saturating_sub(sent));
    }
    // The first tenth warms up.
    let timed = &mut ns[(count / 10) as usize..];
    let (median, p99) = median_p99(timed);
    Ok(Row::new(
        &format!("stream_{transport}_item_latency"),
        format!("stream item: handler send -> caller receipt, {transport} (64 B, window 1)"),
        timed.len() as u64,
        Metric::Latency { median, p99 },
    ))
}
