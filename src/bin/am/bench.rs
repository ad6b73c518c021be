//! `am bench`: the shared-memory IPC benchmark, with no setup.
//!
//! Starts `am serve --endpoint local://` (this same executable) as the peer
//! process, connects to it over shared memory only, and measures, in one
//! run: round trips of 64 B and 4 KiB through `echo_bytes`, a typed round
//! trip through `echo`, and one-way throughput of 64 B and 1 MiB messages to
//! `note` (timed until `notes` reports every message handled). The figures depend on the machine and its load; compare cases
//! of one run with each other, not with another machine's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::{
    ActiveMessageManagerBuilder, InstanceId, NetworkClient, PeerInfo, TransportPolicy,
};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::CliError;
use crate::ping::{Summary, micros};

/// Options of `am bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A short run (a few hundred messages a case): checks that everything
    /// works, its figures are rough.
    #[arg(long)]
    quick: bool,
    /// Hides the progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// The peer process; killed and reaped when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_peer() -> Result<(Peer, PeerInfo), CliError> {
    let exe = std::env::current_exe().map_err(CliError::io("finding the am executable"))?;
    let mut child = Command::new(exe)
        .args(["serve", "--endpoint", "local://"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(CliError::io("starting the peer process"))?;
    let stdout = child.stdout.take();
    let peer = Peer(child);
    let mut line = String::new();
    if let Some(stdout) = stdout {
        // The reader stays alive inside the BufReader only for this line;
        // the peer prints nothing more on stdout.
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(CliError::io("reading the peer's PeerInfo"))?;
    }
    let info = serde_json::from_str(&line).map_err(CliError::Answer)?;
    Ok((peer, info))
}

/// One row of the result table.
struct Row {
    case: &'static str,
    count: u64,
    summary: Option<Summary>,
    rate: f64,
    bytes: usize,
}

struct Bench {
    client: Arc<NetworkClient>,
    peer: InstanceId,
    bar: ProgressBar,
}

impl Bench {
    async fn echo(&self, case: &'static str, size: usize, n: u64) -> Result<Row, CliError> {
        let payload = Bytes::from(vec![7u8; size]);
        let mut samples = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            self.client
                .active_message("echo_bytes")?
                .raw_payload(payload.clone())
                .expect_response::<()>()
                .send(self.peer)
                .await?
                .await_response_raw()
                .await?;
            samples.push(t.elapsed());
            self.bar.inc(1);
        }
        Ok(row(
            case,
            n,
            size,
            start.elapsed(),
            Summary::of(&mut samples),
        ))
    }

    async fn typed(&self, n: u64) -> Result<Row, CliError> {
        let input = "x".repeat(48);
        let mut samples = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let _: String = self
                .client
                .active_message("echo")?
                .payload(&input)?
                .expect_response::<String>()
                .send(self.peer)
                .await?
                .await_response()
                .await?;
            samples.push(t.elapsed());
            self.bar.inc(1);
        }
        let summary = Summary::of(&mut samples);
        Ok(row(
            "typed round trip (echo)",
            n,
            64,
            start.elapsed(),
            summary,
        ))
    }

    async fn one_way(&self, case: &'static str, size: usize, n: u64) -> Result<Row, CliError> {
        let payload = Bytes::from(vec![3u8; size]);
        let before = self.notes().await?;
        let start = Instant::now();
        for _ in 0..n {
            self.client
                .active_message("note")?
                .raw_payload(payload.clone())
                .target_instance(self.peer)
                .execute()
                .await?;
            self.bar.inc(1);
        }
        // `note` runs as a task while `notes` may run inline, so poll until
        // every note was handled (bounded: a lost note is an error).
        let give_up = Instant::now() + Duration::from_secs(30);
        let mut handled = self.notes().await? - before;
        while handled < n && Instant::now() < give_up {
            tokio::task::yield_now().await;
            handled = self.notes().await? - before;
        }
        let elapsed = start.elapsed();
        if handled != n {
            return Err(CliError::Bench(format!(
                "{case}: {n} sent, {handled} handled"
            )));
        }
        Ok(row(case, n, size, elapsed, None))
    }

    async fn notes(&self) -> Result<u64, CliError> {
        Ok(self
            .client
            .active_message("notes")?
            .payload(&())?
            .expect_response::<u64>()
            .send(self.peer)
            .await?
            .await_response()
            .await?)
    }
}

fn row(case: &'static str, n: u64, size: usize, took: Duration, s: Option<Summary>) -> Row {
    Row {
        case,
        count: n,
        summary: s,
        rate: n as f64 / took.as_secs_f64().max(1e-9),
        bytes: size,
    }
}

/// Runs the benchmark and prints its table.
pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    let (round, small, large) = if args.quick {
        (200, 2_000, 20)
    } else {
        (5_000, 100_000, 500)
    };
    let (_child, info) = tokio::task::spawn_blocking(spawn_peer)
        .await
        .map_err(|e| CliError::Bench(e.to_string()))??;
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .build()
        .await?;
    let client = manager.client();
    client.connect_to_peer(info.clone()).await?;
    let total = 3 * round + small + large;
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let bench = Bench {
        client,
        peer: info.instance_id,
        bar,
    };
    let rows = vec![
        bench.echo("round trip 64 B (bytes)", 64, round).await?,
        bench.echo("round trip 4 KiB (bytes)", 4096, round).await?,
        bench.typed(round).await?,
        bench.one_way("one-way 64 B", 64, small).await?,
        bench.one_way("one-way 1 MiB", 1 << 20, large).await?,
    ];
    bench.bar.finish_and_clear();
    print_table(&rows);
    manager.shutdown().await?;
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!("am bench: shared memory between two processes");
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>14} {:>12}",
        "case", "messages", "p50", "p99", "messages/s", "MB/s"
    );
    for r in rows {
        let (p50, p99) = r
            .summary
            .as_ref()
            .map_or(("-".into(), "-".into()), |s| (micros(s.p50), micros(s.p99)));
        println!(
            "{:<28} {:>8} {:>12} {:>12} {:>14.0} {:>12.1}",
            r.case,
            r.count,
            p50,
            p99,
            r.rate,
            r.rate * r.bytes as f64 / 1e6
        );
    }
}
