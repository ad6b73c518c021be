//! Plumbing shared by every case: the child process and its control socket, busy
//! waiting, statistics, an allocation counter and the CPU time of this process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use shm_ring::fdpass::{recv_fds, send_fds};

use crate::machine::Snap;
use crate::report::{Metric, Row};

/// Counts heap allocations of this process (both sides of every case run this binary),
/// so the steady-state rows can report allocations per message.
pub struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the counter is a
// relaxed atomic and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations so far in this process.
pub fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// One busy-wait round, as in the ring's `Spin` policy: a spin hint per poll and a
/// `yield_now` every 1024 polls (so a loaded 2-core machine still progresses).
#[inline]
pub fn spin(polls: &mut u32) {
    std::hint::spin_loop();
    *polls = polls.wrapping_add(1);
    if (*polls).is_multiple_of(1024) {
        std::thread::yield_now();
    }
}

/// Median and 99th percentile of `v` (sorted in place).
pub fn median_p99(v: &mut [u64]) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let p99 = ((v.len() * 99).div_ceil(100)).clamp(1, v.len()) - 1;
    (v[v.len() / 2], v[p99])
}

/// Timed round trips and this process's counters around them.
pub struct Trips {
    /// ns per timed trip.
    pub ns: Vec<u64>,
    /// Counters before the first timed trip.
    pub before: Snap,
    /// Counters after the last timed trip.
    pub after: Snap,
}

impl Trips {
    /// A latency row (median, p99) with this side's syscalls and sleeps per trip.
    pub fn row(mut self, key: &str, label: impl Into<String>) -> Row {
        let n = self.ns.len() as u64;
        let (median, p99) = median_p99(&mut self.ns);
        let row = Row::new(key, label, n, Metric::Latency { median, p99 });
        self.before.per_msg(self.after, n, "client", false, row)
    }
}

/// Times up to `iters` round trips of `f` (given the trip index, counting from 0
/// without gaps) after up to `warmup` untimed ones (at most a fifth of `budget`),
/// stopping early once `budget` is spent (after at least 1000 trips).
pub fn time_trips(warmup: u64, iters: u64, budget: Duration, mut f: impl FnMut(u64)) -> Trips {
    let start = Instant::now();
    let mut done = warmup;
    for i in 0..warmup {
        f(i);
        if i % 64 == 63 && start.elapsed() > budget / 5 {
            done = i + 1;
            break;
        }
    }
    let warmup = done;
    let before = Snap::now();
    let start = Instant::now();
    let mut ns = Vec::with_capacity(iters as usize);
    for i in warmup..warmup + iters {
        let t = Instant::now();
        f(i);
        ns.push(t.elapsed().as_nanos() as u64);
        if ns.len() >= 1000 && ns.len().is_multiple_of(256) && start.elapsed() > budget {
            break;
        }
    }
    let after = Snap::now();
    Trips { ns, before, after }
}

/// Messages for the next batch of a one-way stream: enough for `batch_time` at the
/// rate of the previous batch (`count` messages in `elapsed`), within [20, 4M].
pub fn next_count(count: u64, elapsed: Duration, batch_time: Duration) -> u64 {
    let per = elapsed.as_secs_f64() / count.max(1) as f64;
    ((batch_time.as_secs_f64() / per.max(1e-9)) as u64).clamp(20, 4_000_000)
}

/// Runs a one-way stream in batches: `send(count)` sends `count` messages and returns
/// once the receiver has them all. The first batch (`first` messages) calibrates, the
/// second warms up, then `batches` are timed. Returns (messages timed, ns per message
/// of each timed batch, sorted).
pub fn batches(
    first: u64,
    batches: u64,
    batch_time: Duration,
    mut send: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, Vec<f64>)> {
    let mut count = first;
    let mut total = 0;
    let mut per_msg = Vec::new();
    for b in 0..batches + 2 {
        let t = Instant::now();
        send(count)?;
        let elapsed = t.elapsed();
        if b >= 2 {
            total += count;
            per_msg.push(elapsed.as_nanos() as f64 / count as f64);
        }
        count = next_count(count, elapsed, batch_time);
    }
    per_msg.sort_by(f64::total_cmp);
    Ok((total, per_msg))
}

/// Child side of a batched stream: the size of the next batch (`batch N`), or `None`
/// at `end`.
pub fn next_batch(ctl: &Ctl) -> Result<Option<u64>> {
    let (msg, _) = ctl.recv()?;
    if msg == "end" {
        return Ok(None);
    }
    let n = msg
        .strip_prefix("batch ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("expected `batch N` or `end`, got {msg:?}"))?;
    Ok(Some(n))
}

/// Environment variable naming the CPU a child pins itself to.
pub const CPU_ENV: &str = "COMPARE_CHILD_CPU";

/// How long a child may take before it is killed (a hang guard only).
const CHILD_GUARD: Duration = Duration::from_secs(90);

/// A control channel: a `SOCK_SEQPACKET` Unix socket, so every message (text plus
/// optional descriptors) arrives whole.
pub struct Ctl {
    fd: OwnedFd,
}

impl Ctl {
    /// The child's end: its stdin.
    pub fn from_stdin() -> Result<Ctl> {
        let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
        Ok(Ctl { fd })
    }

    /// A second handle on the same socket.
    pub fn try_clone(&self) -> Result<Ctl> {
        Ok(Ctl {
            fd: self.fd.try_clone()?,
        })
    }

    /// Sends `text` with `fds` attached.
    pub fn send(&self, text: &str, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let bytes = if text.is_empty() { " " } else { text };
        send_fds(self.fd.as_fd(), bytes.as_bytes(), fds)?;
        Ok(())
    }

    /// Receives one message; fails at EOF.
    pub fn recv(&self) -> Result<(String, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; 64 << 10];
        let (n, fds) = recv_fds(self.fd.as_fd(), &mut buf)?;
        if n == 0 {
            bail!("control socket closed by the peer");
        }
        Ok((String::from_utf8_lossy(&buf[..n]).trim().to_string(), fds))
    }

    /// Receives one message and checks that it is `want`.
    pub fn expect(&self, want: &str) -> Result<()> {
        let (got, _) = self.recv()?;
        if got != want {
            bail!("expected {want:?} from the peer, got {got:?}");
        }
        Ok(())
    }
}

/// The child process of one case and the parent's end of its control socket.
pub struct Peer {
    child: Child,
    /// Control channel to the child.
    pub ctl: Ctl,
}

impl Peer {
    /// Starts this binary again as `--child <case> <args..>`, its stdin the other end of
    /// a fresh control socket.
    pub fn spawn(case: &str, args: &[String]) -> Result<Peer> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let exe = std::env::current_exe().context("current_exe")?;
        let mut cmd = Command::new(exe);
        if let Some(cpu) = crate::machine::child_cpu() {
            cmd.env(CPU_ENV, cpu.to_string());
        }
        let child = cmd
            .arg("--child")
            .arg(case)
            .args(args)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the child process")?;
        Ok(Peer {
            child,
            ctl: Ctl { fd: ours },
        })
    }

    /// Kills the child with SIGKILL (no clean-up on its side).
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        Ok(())
    }

    /// Waits for the child to exit (successfully), killing it after the guard time.
    pub fn finish(mut self) -> Result<()> {
        let deadline = Instant::now() + CHILD_GUARD;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("child exited with {status}");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("child hung: killed after {CHILD_GUARD:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Child side: exits the process if the parent goes away (its pid changes) or after
/// the guard time, so a crashed parent never leaves a spinning child behind.
pub fn watchdog() {
    let parent = std::os::unix::process::parent_id();
    let start = Instant::now();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent || start.elapsed() > CHILD_GUARD {
                eprintln!("compare child: parent gone or guard time exceeded, exiting");
                std::process::exit(3);
            }
        }
    });
}

/// Parses `key=value` child arguments.
pub struct Args(Vec<(String, String)>);

impl Args {
    /// From the arguments after `--child <case>`.
    pub fn parse(raw: &[String]) -> Args {
        Args(
            raw.iter()
                .filter_map(|a| a.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The value of `key`, parsed.
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let v = self
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| anyhow!("child argument {key}= missing"))?;
        v.parse()
            .map_err(|_| anyhow!("child argument {key}={v} unparsable"))
    }
}

/// Formats `key=value` child arguments.
pub fn kv(pairs: &[(&str, &dyn std::fmt::Display)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}
