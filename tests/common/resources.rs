//! Readers of this process's resources in `/proc/self`: open file
//! descriptors, memfd mappings and resident memory, so a test can check that
//! repeated work returns them to an earlier level.

use std::fmt;
use std::time::Duration;

/// Open file descriptors (entries of `/proc/self/fd`, minus the one the
/// directory listing itself holds open while it is read).
pub fn open_fds() -> usize {
    let entries = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
    entries.count().saturating_sub(1)
}

/// Mappings of memfd-backed memory (lines of `/proc/self/maps` naming `memfd:`).
pub fn memfd_mappings() -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().filter(|l| l.contains("memfd:")).count()
}

/// Resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// One reading of all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Open file descriptors.
    pub fds: usize,
    /// memfd mappings.
    pub memfd_maps: usize,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

impl Resources {
    /// Reads them now.
    pub fn now() -> Self {
        Self {
            fds: open_fds(),
            memfd_maps: memfd_mappings(),
            rss_kib: rss_kib(),
        }
    }

    /// Whether fds and memfd mappings are back at (or below) `base`, and RSS
    /// within `rss_slack_kib` of it.
    pub fn within(&self, base: &Resources, rss_slack_kib: u64) -> bool {
        self.fds <= base.fds
            && self.memfd_maps <= base.memfd_maps
            && self.rss_kib <= base.rss_kib + rss_slack_kib
    }

    /// Polls until [`Resources::within`] holds or `patience` passes (teardown
    /// of links and mappings runs on other tasks); returns the last reading.
    pub async fn settle_to(base: &Resources, rss_slack_kib: u64, patience: Duration) -> Self {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let now = Self::now();
            if now.within(base, rss_slack_kib) || std::time::Instant::now() >= deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fds, {} memfd mappings, {} KiB resident",
            self.fds, self.memfd_maps, self.rss_kib
        )
    }
}
