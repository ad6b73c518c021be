//! The machine: facts for the report, CPU pinning, and per-process counters read from
//! `/proc` (system calls, CPU time).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::report::Row;

/// The CPU the next spawned child is pinned to (`usize::MAX`: none).
static CHILD_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Words of the CPU mask passed to `sched_{get,set}affinity` (1024 CPUs).
const MASK_WORDS: usize = 16;

unsafe extern "C" {
    fn sched_setaffinity(pid: i32, cpusetsize: usize, mask: *const u64) -> i32;
    fn sched_getaffinity(pid: i32, cpusetsize: usize, mask: *mut u64) -> i32;
}

fn get_mask() -> Option<[u64; MASK_WORDS]> {
    let mut mask = [0u64; MASK_WORDS];
    // SAFETY: `mask` is a writable buffer of exactly the size passed; pid 0 is the
    // calling thread.
    let rc = unsafe { sched_getaffinity(0, size_of_val(&mask), mask.as_mut_ptr()) };
    (rc == 0).then_some(mask)
}

fn set_mask(mask: &[u64; MASK_WORDS]) -> bool {
    // SAFETY: `mask` is a readable buffer of exactly the size passed; pid 0 is the
    // calling thread.
    unsafe { sched_setaffinity(0, size_of_val(mask), mask.as_ptr()) == 0 }
}

/// Pins the calling thread (and the threads it creates later) to `cpu`.
pub fn pin_to(cpu: usize) -> bool {
    let mut mask = [0u64; MASK_WORDS];
    if cpu >= MASK_WORDS * 64 {
        return false;
    }
    mask[cpu / 64] |= 1 << (cpu % 64);
    set_mask(&mask)
}

/// While alive, this thread runs on one CPU and every child spawned runs on another
/// (so two busy-polling processes never share a core). Restores the affinity on drop.
pub struct PinnedPair {
    saved: Option<[u64; MASK_WORDS]>,
}

impl PinnedPair {
    /// Pins to the first two CPUs this process may use; does nothing if there are not
    /// two, or if `COMPARE_PIN=0`.
    pub fn new() -> PinnedPair {
        let off = std::env::var("COMPARE_PIN").is_ok_and(|v| v == "0");
        let Some(saved) = get_mask().filter(|_| !off) else {
            return PinnedPair { saved: None };
        };
        let cpus: Vec<usize> = (0..MASK_WORDS * 64)
            .filter(|c| saved[c / 64] & (1 << (c % 64)) != 0)
            .take(2)
            .collect();
        if cpus.len() < 2 || !pin_to(cpus[0]) {
            return PinnedPair { saved: None };
        }
        CHILD_CPU.store(cpus[1], Ordering::Relaxed);
        PinnedPair { saved: Some(saved) }
    }
}

impl Drop for PinnedPair {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            set_mask(saved);
            CHILD_CPU.store(usize::MAX, Ordering::Relaxed);
        }
    }
}

/// The CPU a child spawned now must pin itself to, if any.
pub fn child_cpu() -> Option<usize> {
    Some(CHILD_CPU.load(Ordering::Relaxed)).filter(|&c| c != usize::MAX)
}

/// Per-process counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snap {
    /// Heap allocations (the counting allocator).
    pub allocs: u64,
    /// `read`/`write`-family system calls (see [`rw_syscalls`]).
    pub rw: u64,
    /// Voluntary context switches of all threads: how often the process went to
    /// sleep (blocked in the kernel), i.e. how many wake-ups it paid for.
    pub sleeps: u64,
    /// CPU time in ns.
    pub cpu: u64,
    /// Allocations and `read` calls the snapshot itself made (reading `/proc`),
    /// left out of the next window so that they are not charged to the messages.
    own_allocs: u64,
    own_rw: u64,
}

impl Snap {
    /// The counters now.
    pub fn now() -> Snap {
        let allocs = crate::util::allocs();
        let rw = rw_syscalls();
        let mut snap = Snap {
            allocs,
            rw,
            sleeps: task_sum("status", |s| {
                s.lines()
                    .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            }),
            cpu: cpu_ns(),
            own_allocs: 0,
            own_rw: 0,
        };
        // The last read of `/proc/self/io` is not in its own figure: it is the
        // one read call (plus the one that finds its end) not counted here.
        snap.own_rw = (rw_syscalls() + 2).saturating_sub(rw);
        snap.own_allocs = crate::util::allocs() - allocs;
        snap
    }

    /// As an array, to travel in a message.
    pub fn to_array(self) -> [u64; 6] {
        let s = self;
        [s.allocs, s.rw, s.sleeps, s.cpu, s.own_allocs, s.own_rw]
    }

    /// From [`to_array`](Self::to_array).
    pub fn from_array(a: [u64; 6]) -> Snap {
        Snap {
            allocs: a[0],
            rw: a[1],
            sleeps: a[2],
            cpu: a[3],
            own_allocs: a[4],
            own_rw: a[5],
        }
    }

    /// Adds `allocs/msg`, `rw syscalls/msg` and `sleeps/msg` of `side` between `self`
    /// and `later` over `n` messages (allocations only if `allocs`).
    pub fn per_msg(self, later: Snap, n: u64, side: &str, allocs: bool, row: Row) -> Row {
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / n.max(1) as f64;
        let row = if allocs {
            row.extra(
                &format!("allocs/msg {side}"),
                per(self.allocs + self.own_allocs, later.allocs),
            )
        } else {
            row
        };
        let rw = per(self.rw + self.own_rw, later.rw);
        row.extra(&format!("rw syscalls/msg {side}"), rw).extra(
            &format!("sleeps/msg {side}"),
            per(self.sleeps, later.sleeps),
        )
    }
}

/// Sum over the threads of this process of a number parsed from
/// `/proc/self/task/*/<file>`.
fn task_sum(file: &str, parse: impl Fn(&str) -> Option<u64>) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join(file)).ok())
        .filter_map(|s| parse(&s))
        .sum()
}

/// `read(2)`/`write(2)`-family system calls so far (`syscr + syscw` of
/// `/proc/self/io`): calls through the VFS, such as eventfd and pipe reads and writes.
/// Not counted: `send`/`recv`/`sendmsg` on sockets, `poll`, `epoll_wait`, futexes.
pub fn rw_syscalls() -> u64 {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("syscr:") || l.starts_with("syscw:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// CPU time (ns) used so far by every thread of this process, from the scheduler's
/// own accounting (`/proc/self/task/*/schedstat`, first field).
pub fn cpu_ns() -> u64 {
    task_sum("schedstat", |s| s.split_whitespace().next()?.parse().ok())
}

/// Machine facts for the top of the table: CPUs, kernel, CPU model, load, date.
pub fn facts() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let (hh, mm) = (secs % 86_400 / 3600, secs % 3600 / 60);
    let loadavg = read("/proc/loadavg");
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    format!(
        "date: {y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC\nnproc: {nproc}\nkernel: {}\ncpu: {model}\nclocksource: {}\nload average at start: {}\npinning: {}\n",
        read("/proc/sys/kernel/osrelease").trim(),
        read("/sys/devices/system/clocksource/clocksource0/current_clocksource").trim(),
        load.join(" "),
        if std::env::var("COMPARE_PIN").is_ok_and(|v| v == "0") {
            "off (COMPARE_PIN=0)"
        } else {
            "each two-process case runs parent and child on two different CPUs"
        },
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
