//! The full active-message runtime across two processes: a server child with the
//! benchmark handlers, and this process as the client.
//!
//! * round trip: `[u8; 64]` request -> `typed_unary_handler` -> `[u8; 64]` response;
//! * one-way: `raw_payload` + `execute()` to an `am_handler`, then a request to a
//!   `barrier` handler that answers once the sink has counted every message;
//! * steady state: allocations and read/write syscalls per round trip on both sides
//!   (the server reports its counters through a `probe` handler);
//! * idle: CPU used by both processes over an idle second after the round trips.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::{InstanceId, NetworkClient};
use anyhow::{Context, Result};
use bytes::Bytes;

use crate::am_server::runtime;
use crate::beside::MemcpyBeside;
use crate::machine::{self, Snap};
use crate::raw::size_key;
use crate::report::{Metric, Row};
use crate::session::Session;
use crate::util::{self, median_p99};
use crate::{LARGE, Plan, SIZES};

/// One server child and the cases run against it.
#[derive(Clone, Copy, Debug)]
pub struct Suite {
    /// `"tcp"` or `"shm"`.
    transport: &'static str,
    /// `"spin"`, `"adaptive"` or `"park"` (shm only).
    policy: &'static str,
    /// Run the round trips (and, for Adaptive, the idle measurement).
    round_trips: bool,
    /// Sizes of the one-way throughput cases.
    sizes: &'static [usize],
    /// Ring capacity in bytes (0: the runtime's default).
    ring: usize,
    /// One-way messages go to the zero-copy `sink_zc` (an `archived_unary_handler`
    /// run inline on the link's reader, `Vec<u8>` archived into the ring slot) instead
    /// of the async `sink` (`am_handler`, raw payload).
    zero_copy: bool,
    /// One-way messages are loans (`client.loan`, filled with one copy, sent
    /// with `loaned`) instead of raw payloads.
    loan: bool,
    /// One-way messages go through a prepared `OneWaySender` (`send_raw` to
    /// `sink`, `send(&Vec<u8>)` to `sink_zc`) instead of the builder.
    prepared: bool,
    /// The prepared sender sends batches of [`BATCH`] messages
    /// (`send_raw_batch` / `send_batch`) instead of one at a time.
    batch: bool,
    /// Sizes of the raw round trips (`echo_raw`, payload back as response).
    rt_sizes: &'static [usize],
}

/// Ring capacity of the suite that carries 1 MiB messages inside the ring.
const BIG_RING: usize = 4 << 20;

/// Messages per batch of the batch cases.
pub const BATCH: usize = 64;

/// Sizes of the loan one-way cases.
const LOANED: [usize; 2] = [1 << 20, 16 << 20];
/// Sizes of the large round trips (default configuration).
const LARGE_RT: [usize; 3] = [64 << 10, 1 << 20, LARGEST_RT];
/// The largest of them (the server's `echo_raw` answers up to this).
pub const LARGEST_RT: usize = 16 << 20;

/// A suite by name: `spin`, `adaptive`, `park` (shm round trips), `tcp` (round trips
/// and one-way), `shm_one_way`, `shm_one_way_ring4m`, `shm_one_way_zc`,
/// `shm_one_way_large`, `shm_one_way_loan`, `shm_large_rt`, and the prepared
/// sender's `shm_one_way_prep`, `shm_one_way_zc_prep`, `tcp_one_way_prep`, and
/// its batches' `shm_one_way_batch`, `shm_one_way_zc_batch` (default rings), with
/// `shm_one_way_zc_ring4m_prep` and `shm_one_way_zc_ring4m_batch` beside them.
pub fn suite(name: &str) -> Suite {
    let s = |transport, policy, round_trips, sizes, ring, zero_copy| Suite {
        transport,
        policy,
        round_trips,
        sizes,
        ring,
        zero_copy,
        loan: false,
        prepared: false,
        batch: false,
        rt_sizes: &[],
    };
    let prep = |suite: Suite| Suite {
        prepared: true,
        ..suite
    };
    let batch = |suite: Suite| Suite {
        batch: true,
        ..prep(suite)
    };
    match name {
        "shm_one_way_loan" => Suite {
            loan: true,
            ..s("shm", "spin", false, &LOANED[..], 0, false)
        },
        "shm_large_rt" => Suite {
            rt_sizes: &LARGE_RT[..],
            ..s("shm", "adaptive", false, &[], 0, false)
        },
        "spin" | "adaptive" | "park" => {
            let policy = ["spin", "adaptive", "park"]
                .into_iter()
                .find(|p| *p == name)
                .unwrap_or("spin");
            s("shm", policy, true, &[], 0, false)
        }
        "tcp" => s("tcp", "-", true, &SIZES[..], 0, false),
        "shm_one_way_ring4m" => s("shm", "spin", false, &SIZES[3..], BIG_RING, false),
        "shm_one_way_zc" => s("shm", "spin", false, &SIZES[..], BIG_RING, true),
        "shm_one_way_large" => s("shm", "spin", false, &LARGE[..], 0, false),
        "shm_one_way_prep" => prep(s("shm", "spin", false, &SIZES[..1], 0, false)),
        "shm_one_way_zc_prep" => prep(s("shm", "spin", false, &SIZES[..1], 0, true)),
        "shm_one_way_zc_ring4m_prep" => prep(s("shm", "spin", false, &SIZES[..1], BIG_RING, true)),
        "tcp_one_way_prep" => prep(s("tcp", "-", false, &SIZES[..1], 0, false)),
        "shm_one_way_batch" => batch(s("shm", "spin", false, &SIZES[..1], 0, false)),
        "shm_one_way_zc_batch" => batch(s("shm", "spin", false, &SIZES[..1], 0, true)),
        "shm_one_way_zc_ring4m_batch" => {
            batch(s("shm", "spin", false, &SIZES[..1], BIG_RING, true))
        }
        _ => s("shm", "spin", false, &SIZES[..], 0, false),
    }
}

impl Suite {
    /// Key of the suite (a prefix of its rows' keys, for filtering).
    pub fn key(self) -> String {
        match (self.transport, self.round_trips) {
            ("tcp", _) if self.prepared => "am_tcp_one_way_prep".into(),
            ("tcp", _) => "am_tcp".into(),
            (_, true) => format!("am_shm_{}", self.policy),
            _ if !self.rt_sizes.is_empty() => "am_shm_large_rt".into(),
            _ if self.sizes.first() >= Some(&LARGE[0]) && !self.loan => {
                "am_shm_one_way_large".into()
            }
            (_, false) => format!("am_shm_one_way{}", self.variant()),
        }
    }

    /// Key suffix of the variants: `_zc` (zero-copy sink), `_ring4m` (4 MiB rings).
    fn variant(self) -> String {
        let zc = if self.zero_copy { "_zc" } else { "" };
        let ring = if self.ring > 0 { "_ring4m" } else { "" };
        let loan = if self.loan { "_loan" } else { "" };
        let prep = match (self.prepared, self.batch) {
            (_, true) => "_batch",
            (true, false) => "_prep",
            _ => "",
        };
        format!("{zc}{ring}{loan}{prep}")
    }

    /// What the suite measures.
    pub fn label(self) -> String {
        format!("active message over {} ({})", self.transport, self.policy)
    }

    fn rt_key(self) -> String {
        format!("{}_rt", self.key())
    }

    fn rt_label(self) -> String {
        match self.transport {
            "tcp" => "AM round trip, TCP (64 B typed)".into(),
            _ => format!("AM round trip, shm {} (64 B typed)", self.policy),
        }
    }

    fn tp_key(self, size: usize) -> String {
        let v = self.variant();
        format!("am_{}_tp_{}{v}", self.transport, size_key(size))
    }

    fn tp_label(self, size: usize) -> String {
        let zc = if self.zero_copy {
            ", zero-copy handler"
        } else {
            ""
        };
        let ring = if self.ring > 0 { ", 4 MiB rings" } else { "" };
        let loan = if self.loan { ", loan" } else { "" };
        let prep = match (self.prepared, self.batch) {
            (_, true) => ", prepared sender, batches of 64",
            (true, false) => ", prepared sender",
            _ => "",
        };
        let size = crate::raw::size_label(size);
        format!(
            "AM one-way, {} ({size}{zc}{ring}{loan}{prep})",
            self.transport
        )
    }

    fn large_rt_key(self, size: usize) -> String {
        format!("am_{}_rt_{}", self.transport, size_key(size))
    }

    fn large_rt_label(self, size: usize) -> String {
        let size = crate::raw::size_label(size);
        format!("AM round trip, {} ({size} raw each way)", self.transport)
    }

    fn rt_baseline(self) -> &'static str {
        match (self.transport, self.policy) {
            ("tcp", _) => "zmq_pp",
            (_, "spin") => "ring_pp_spin",
            (_, "adaptive") => "am_shm_spin_rt",
            _ => "eventfd",
        }
    }

    fn tp_baseline(self, size: usize) -> Option<String> {
        match (self.transport, size) {
            ("shm", s) if s >= LARGE[0] => Some(format!("memcpy_{}", size_key(s))),
            ("shm", s) => Some(format!("ring_tp_{}", size_key(s))),
            ("tcp", 64 | 0x10_0000) => Some(format!("zmq_tp_{}", size_key(size))),
            _ => None,
        }
    }

    fn sink(self) -> &'static str {
        if self.zero_copy { "sink_zc" } else { "sink" }
    }

    /// Runs the suite; every case it cannot measure comes back as a skipped row.
    pub fn run(self, plan: Plan) -> Result<Vec<Row>> {
        let rt = runtime()?;
        match rt.block_on(self.client(plan)) {
            Ok(rows) => Ok(rows),
            Err(e) => Ok(self.skipped(&format!("{e:#}"))),
        }
    }

    fn skipped(self, why: &str) -> Vec<Row> {
        let mut rows = Vec::new();
        if self.round_trips {
            rows.push(Row::skipped(&self.rt_key(), self.rt_label(), why));
        }
        for &size in self.sizes {
            rows.push(Row::skipped(&self.tp_key(size), self.tp_label(size), why));
        }
        for &size in self.rt_sizes {
            let (key, label) = (self.large_rt_key(size), self.large_rt_label(size));
            rows.push(Row::skipped(&key, label, why));
        }
        rows
    }

    async fn client(self, plan: Plan) -> Result<Vec<Row>> {
        let session = Session::start(self.transport, self.policy, self.ring).await?;
        let rows = self.cases(&session.c, plan).await;
        session.stop().await?;
        rows
    }

    async fn cases(self, c: &Client, plan: Plan) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        if self.round_trips {
            let mut row = self.round_trip_row(c, plan).await?;
            if self.policy == "adaptive" {
                let idle = Duration::from_millis(if plan.quick { 300 } else { 2000 });
                let before = c.probe().await?;
                let cpu0 = machine::cpu_ns();
                tokio::time::sleep(idle).await;
                let cpu1 = machine::cpu_ns();
                let after = c.probe().await?;
                let pct = |d: u64| d as f64 / idle.as_nanos() as f64 * 100.0;
                row = row
                    .extra("idle cpu % client", pct(cpu1 - cpu0))
                    .extra("idle cpu % server", pct(after.cpu - before.cpu));
            }
            rows.push(row);
            if self.policy == "park" {
                rows.extend(crate::park_rounds::park_vs_eventfd(c, plan).await?);
            }
            if self.transport == "tcp" {
                rows.extend(crate::tcp_rounds::tcp_vs_zmq(c, plan).await);
            }
        }
        let mut sent = 0;
        for &size in self.sizes {
            rows.extend(self.one_way(c, plan, size, &mut sent).await?);
        }
        for &size in self.rt_sizes {
            rows.push(self.large_round_trips(c, plan, size).await?);
        }
        Ok(rows)
    }

    /// Typed 64 B round trips, with allocations and syscalls per trip on both sides.
    async fn round_trip_row(self, c: &Client, plan: Plan) -> Result<Row> {
        let trip_us = match (self.transport, self.policy) {
            ("tcp", _) => 100.0,
            (_, "spin") => 5.0,
            _ => 60.0,
        };
        let (warmup, iters) = plan.trips(trip_us);
        let req = [7u8; 64];
        let start = Instant::now();
        for _ in 0..warmup {
            c.echo(&req).await?;
            if start.elapsed() > plan.budget() / 5 {
                break;
            }
        }
        let before = c.probe().await?;
        let ours = Snap::now();
        let start = Instant::now();
        let mut ns = Vec::with_capacity(iters as usize);
        while (ns.len() as u64) < iters {
            let t = Instant::now();
            let back = c.echo(&req).await?;
            ns.push(t.elapsed().as_nanos() as u64);
            std::hint::black_box(back);
            if ns.len() >= 1000 && start.elapsed() > plan.budget() {
                break;
            }
        }
        let ours_after = Snap::now();
        let after = c.probe().await?;
        let iters = ns.len() as u64;
        let (median, p99) = median_p99(&mut ns);
        let row = Row::new(
            &self.rt_key(),
            self.rt_label(),
            iters,
            Metric::Latency { median, p99 },
        )
        .vs(self.rt_baseline());
        let row = ours.per_msg(ours_after, iters, "client", true, row);
        Ok(before.per_msg(after, iters, "server", true, row))
    }

    /// Fire-and-forget stream of `size`-byte raw payloads to the `sink` handler; each
    /// batch ends with a `barrier` request answered once the sink counted them all.
    /// Batches as in [`util::batches`]; `sent` is the running total for the barrier.
    async fn one_way(
        self,
        c: &Client,
        plan: Plan,
        size: usize,
        sent: &mut u64,
    ) -> Result<Vec<Row>> {
        let payload = Bytes::from(vec![0x5au8; size]);
        let typed = vec![0x5au8; size];
        // Made once, outside the timed batches, and only for the batch cases
        // (64 copies of a 256 MiB payload would take 16 GiB).
        let batches = match self.batch {
            true => (vec![&typed[..]; BATCH], vec![typed.clone(); BATCH]),
            false => (Vec::new(), Vec::new()),
        };
        let mut count = plan.first(size);
        // Room for every batch: the case counts this process's allocations.
        let mut per_msg = Vec::with_capacity(plan.batches() as usize);
        let mut beside = MemcpyBeside::for_case(self.transport, size, LARGE[0]);
        let mut total = 0;
        let mut probes = None;
        let prepared = match self.prepared {
            true => Some(c.client.one_way_sender(self.sink(), c.target)?),
            false => None,
        };
        for b in 0..plan.batches() + 2 {
            if b == 2 {
                let server = c.probe().await?;
                probes = Some((server, Snap::now()));
            }
            let t = Instant::now();
            if let (Some(sender), true) = (&prepared, self.batch) {
                self.send_batches(sender, count, &batches).await?;
            } else if let Some(sender) = &prepared {
                for _ in 0..count {
                    match self.zero_copy {
                        true => sender.send(&typed).await?,
                        false => sender.send_raw(&typed).await?,
                    }
                }
            } else {
                for _ in 0..count {
                    let m = c.client.active_message(self.sink())?;
                    let m = match (self.zero_copy, self.loan) {
                        (true, _) => m.payload(&typed)?,
                        (false, true) => {
                            let mut loan = c.client.loan(c.target, size).await?;
                            loan.copy_from_slice(&typed);
                            m.loaned(loan)
                        }
                        (false, false) => m.raw_payload(payload.clone()),
                    };
                    m.target_instance(c.target).execute().await?;
                }
            }
            *sent += count;
            c.barrier(*sent).await?;
            let elapsed = t.elapsed();
            if b >= 2 {
                total += count;
                per_msg.push(elapsed.as_nanos() as f64 / count as f64);
                if let Some(beside) = &mut beside {
                    beside.sample();
                }
            }
            count = util::next_count(count, elapsed, plan.batch_time());
        }
        let ours_after = Snap::now();
        let after = c.probe().await?;
        let (before, ours) = probes.context("no timed batch")?;
        let in_order = per_msg.clone();
        per_msg.sort_by(f64::total_cmp);
        let row = Row::new(
            &self.tp_key(size),
            self.tp_label(size),
            total,
            Metric::Rate {
                size,
                median: per_msg[per_msg.len() / 2],
                worst: *per_msg.last().context("no batch")?,
            },
        );
        let row = ours.per_msg(ours_after, total, "client", true, row);
        let row = before.per_msg(after, total, "server", true, row);
        let row = match self.tp_baseline(size) {
            Some(b) => row.vs(&b),
            None => row,
        };
        Ok(match beside {
            Some(beside) => {
                let base = beside.row(&self.tp_key(size), &self.tp_label(size));
                vec![beside.ratios(row, &in_order), base]
            }
            None => vec![row],
        })
    }
}

impl Suite {
    /// `count` messages in batches of [`BATCH`] (the last one shorter): raw
    /// payloads to `sink`, or archived `Vec<u8>`s to `sink_zc`.
    async fn send_batches(
        self,
        sender: &active_message::OneWaySender,
        count: u64,
        (raw, archived): &(Vec<&[u8]>, Vec<Vec<u8>>),
    ) -> Result<()> {
        let mut left = count as usize;
        while left > 0 {
            let n = left.min(BATCH);
            match self.zero_copy {
                true => sender.send_batch(&archived[..n]).await?,
                false => sender.send_raw_batch(&raw[..n]).await?,
            }
            left -= n;
        }
        Ok(())
    }

    /// Raw round trips of `size` bytes each way (`echo_raw` answers as many
    /// bytes as it got; the answer is read where it arrived), timed one by one, with allocations per trip
    /// on both sides. The row's rate counts `size` bytes per trip.
    async fn large_round_trips(self, c: &Client, plan: Plan, size: usize) -> Result<Row> {
        let payload = Bytes::from(vec![0x5au8; size]);
        let trip = || async {
            let back = c
                .client
                .active_message("echo_raw")?
                .raw_payload(payload.clone())
                .expect_response::<()>()
                .timeout(Duration::from_secs(60))
                .send(c.target)
                .await?
                .await_response_payload()
                .await?;
            anyhow::ensure!(back.len() == size, "echo_raw answered {} bytes", back.len());
            Ok(())
        };
        // At least a few trips first: they map the pooled segments that the
        // timed ones reuse.
        let start = Instant::now();
        for i in 0..20 {
            trip().await?;
            if i >= 4 && start.elapsed() > plan.budget() / 5 {
                break;
            }
        }
        let before = c.probe().await?;
        let ours = Snap::now();
        let start = Instant::now();
        let mut ns = Vec::new();
        while ns.len() < 20 || (start.elapsed() < plan.budget() && ns.len() < 100_000) {
            let t = Instant::now();
            trip().await?;
            ns.push(t.elapsed().as_nanos() as u64);
        }
        let (ours_after, after) = (Snap::now(), c.probe().await?);
        let n = ns.len() as u64;
        let (median, p99) = median_p99(&mut ns);
        let metric = Metric::Rate {
            size,
            median: median as f64,
            worst: p99 as f64,
        };
        let row = Row::new(
            &self.large_rt_key(size),
            self.large_rt_label(size),
            n,
            metric,
        )
        .vs(&format!("memcpy_{}", size_key(size)));
        let row = ours.per_msg(ours_after, n, "client", true, row);
        Ok(before.per_msg(after, n, "server", true, row))
    }
}

/// The client side of a suite.
pub struct Client {
    pub client: Arc<NetworkClient>,
    pub target: InstanceId,
}

impl Client {
    pub async fn echo(&self, req: &[u8; 64]) -> Result<[u8; 64]> {
        Ok(self
            .client
            .active_message("echo64")?
            .payload(req)?
            .expect_response::<[u8; 64]>()
            .send(self.target)
            .await?
            .await_response()
            .await?)
    }

    /// The server's counters so far.
    async fn probe(&self) -> Result<Snap> {
        let counters = self
            .client
            .active_message("probe")?
            .payload(&())?
            .expect_response::<[u64; 6]>()
            .send(self.target)
            .await?
            .await_response()
            .await?;
        Ok(Snap::from_array(counters))
    }

    /// Returns once the server's sink has counted `total` one-way messages.
    pub async fn barrier(&self, total: u64) -> Result<u64> {
        Ok(self
            .client
            .active_message("barrier")?
            .payload(&total)?
            .expect_response::<u64>()
            .timeout(Duration::from_secs(60))
            .send(self.target)
            .await?
            .await_response()
            .await?)
    }
}
