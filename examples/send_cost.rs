//! The sending side's cost per one-way 64-byte message over shared memory,
//! by API, for an instruction count that repeats exactly from run to run:
//!
//! ```text
//! cargo build --release --example send_cost
//! valgrind --tool=callgrind --callgrind-out-file=send.cg target/release/examples/send_cost
//! callgrind_annotate --inclusive=yes send.cg | grep send_cost::
//! ```
//!
//! Each `send_cost::<api>` function sends [`N`] messages (in batches of
//! [`BATCH`] for the batch APIs); its inclusive count divided by `N` is the
//! cost of one message on the sender, from building it to the ring's commit
//! (the receiving manager runs in this process too, on its own threads, and
//! is counted under its own functions). The rings are large enough to hold
//! every message of a run, so no send waits for room: each one completes
//! when first polled, here, with no task switch in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{ArchivedContext, am_handler, archived_unary_handler};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, NetworkClient, OneWaySender,
    TransportPolicy,
};
use anyhow::{Context, Result};
use bytes::Bytes;
use futures::FutureExt;

/// Messages per API.
const N: u64 = 20_000;
/// Messages per batch of the batch APIs.
const BATCH: usize = 64;
/// A send found the ring full (it never should: the rings hold every message).
const FULL: &str = "a send waited for room";
/// Bytes of each payload.
const SIZE: usize = 64;

fn manager() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .ring_capacity(16 << 20)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let server = manager().build().await?;
    let seen = Arc::new(AtomicU64::new(0));
    register_sinks(&server, &seen).await?;
    let client_manager = manager().build().await?;
    let client = client_manager.client();
    let target = server.instance_id();
    client.connect_to_peer(server.peer_info().await).await?;
    let raw = Bytes::from(vec![0x5au8; SIZE]);
    let typed = vec![0x5au8; SIZE];
    let sink = client.one_way_sender("sink", target)?;
    let sink_zc = client.one_way_sender("sink_zc", target)?;
    builder_raw(&client, target, &raw)?;
    wait_for(&seen, N).await.context("builder_raw")?;
    builder_archived(&client, target, &typed)?;
    wait_for(&seen, 2 * N).await.context("builder_archived")?;
    prepared_raw(&sink, &typed)?;
    wait_for(&seen, 3 * N).await.context("prepared_raw")?;
    prepared_archived(&sink_zc, &typed)?;
    wait_for(&seen, 4 * N).await.context("prepared_archived")?;
    batch_raw(&sink, &vec![&typed[..]; BATCH])?;
    wait_for(&seen, 5 * N).await.context("batch_raw")?;
    batch_archived(&sink_zc, &vec![typed.clone(); BATCH])?;
    wait_for(&seen, 6 * N).await.context("batch_archived")?;
    println!("{} one-way messages of {SIZE} B sent and received", 6 * N);
    client_manager.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

/// `sink` (raw bytes) and `sink_zc` (an archived `Vec<u8>`, read in place)
/// count what they get.
async fn register_sinks(server: &ActiveMessageManager, seen: &Arc<AtomicU64>) -> Result<()> {
    let s = Arc::clone(seen);
    let sink = am_handler("sink", move |_ctx| {
        s.fetch_add(1, Ordering::Release);
        async { Ok(()) }
    });
    server.register_handler("sink", sink).await?;
    let s = Arc::clone(seen);
    let zc = archived_unary_handler("sink_zc", move |_c: ArchivedContext<'_, Vec<u8>>| {
        s.fetch_add(1, Ordering::Release);
        Ok(())
    });
    server.register_handler("sink_zc", zc).await?;
    Ok(())
}

/// Waits (a minute at most) until the sinks counted `n` messages, so one
/// API's messages are all read before the next API's are counted.
async fn wait_for(seen: &AtomicU64, n: u64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Acquire) < n {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{n} messages not received"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

#[inline(never)]
fn builder_raw(client: &Arc<NetworkClient>, target: InstanceId, raw: &Bytes) -> Result<()> {
    for _ in 0..N {
        let m = client.active_message("sink")?.raw_payload(raw.clone());
        m.target_instance(target)
            .execute()
            .now_or_never()
            .context(FULL)??;
    }
    Ok(())
}

#[inline(never)]
fn builder_archived(
    client: &Arc<NetworkClient>,
    target: InstanceId,
    typed: &Vec<u8>,
) -> Result<()> {
    for _ in 0..N {
        let m = client.active_message("sink_zc")?.payload(typed)?;
        m.target_instance(target)
            .execute()
            .now_or_never()
            .context(FULL)??;
    }
    Ok(())
}

#[inline(never)]
fn prepared_raw(sender: &OneWaySender, typed: &[u8]) -> Result<()> {
    for _ in 0..N {
        sender.send_raw(typed).now_or_never().context(FULL)??;
    }
    Ok(())
}

#[inline(never)]
fn prepared_archived(sender: &OneWaySender, typed: &Vec<u8>) -> Result<()> {
    for _ in 0..N {
        sender.send(typed).now_or_never().context(FULL)??;
    }
    Ok(())
}

#[inline(never)]
fn batch_raw(sender: &OneWaySender, batch: &[&[u8]]) -> Result<()> {
    for _ in 0..N / BATCH as u64 {
        sender
            .send_raw_batch(batch)
            .now_or_never()
            .context(FULL)??;
    }
    // The rest, so that every API sends exactly `N`.
    let rest = (N % BATCH as u64) as usize;
    sender
        .send_raw_batch(&batch[..rest])
        .now_or_never()
        .context(FULL)??;
    Ok(())
}

#[inline(never)]
fn batch_archived(sender: &OneWaySender, batch: &[Vec<u8>]) -> Result<()> {
    for _ in 0..N / BATCH as u64 {
        sender.send_batch(batch).now_or_never().context(FULL)??;
    }
    let rest = (N % BATCH as u64) as usize;
    sender
        .send_batch(&batch[..rest])
        .now_or_never()
        .context(FULL)??;
    Ok(())
}
