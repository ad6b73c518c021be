//! Settings of the shared-memory transport and the rendezvous directory.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shm_ring::{RingConfig, WaitPolicy};

use crate::error::{Error, Result};

/// Default data capacity of each ring (one per direction): 1 MiB.
pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;
/// Default busy-poll budget of [`WaitPolicy::Adaptive`] before parking.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Default cap of each link direction's pooled large-buffer area: 1 GiB
/// of sparse shared memory (pages cost memory only once written).
pub const DEFAULT_POOL_CAP: usize = 1 << 30;
/// Default bound on every handshake step.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Spin budget used instead of `Spin` when the peer does not spin too (a
/// spinning producer never rings the doorbell, so a parking peer would hang).
pub(crate) const SPIN_FALLBACK: Duration = Duration::from_millis(1);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Settings of the shared-memory transport.
///
/// Built with [`ShmConfig::default`] and the `with_*` methods; the manager
/// builder exposes the same settings (`shm_dir`, `ring_capacity`,
/// `wait_policy`, `allow_uid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmConfig {
    dir: Option<PathBuf>,
    ring_capacity: usize,
    max_record: Option<usize>,
    wait_policy: WaitPolicy,
    allowed_uids: Vec<u32>,
    handshake_timeout: Duration,
    liveness_timeout: Option<Duration>,
    pool_cap: usize,
}

impl Default for ShmConfig {
    fn default() -> Self {
        Self {
            dir: None,
            ring_capacity: DEFAULT_RING_CAPACITY,
            max_record: None,
            wait_policy: WaitPolicy::Adaptive { spin: DEFAULT_SPIN },
            allowed_uids: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            liveness_timeout: None,
            pool_cap: DEFAULT_POOL_CAP,
        }
    }
}

impl ShmConfig {
    /// Probes every link's peer over its rendezvous socket (a byte each way,
    /// a quarter of `timeout` apart; nothing per message) and reports a peer
    /// that answers none for `timeout` as unresponsive: its pending calls
    /// fail with `Error::PeerUnresponsive`, and so do new ones until it
    /// answers again. A stopped (SIGSTOP) or wedged process is found this
    /// way; a dead one is found at once anyway (end of file). Time this
    /// process itself did not run is not counted against the peer. Default:
    /// off (every call still ends at its own deadline).
    pub fn with_liveness_timeout(mut self, timeout: Duration) -> Self {
        self.liveness_timeout = Some(timeout);
        self
    }

    /// Most bytes of shared memory each link direction maps for frames
    /// larger than a ring record (default [`DEFAULT_POOL_CAP`]). Buffers are
    /// reused once the receiver releases them; a sender that finds the area
    /// full and every buffer held waits (within its call's deadline). A
    /// frame larger than the whole area travels in a memfd of its own.
    pub fn with_pool_cap(mut self, bytes: usize) -> Self {
        self.pool_cap = bytes;
        self
    }

    /// The pooled area's cap per link direction.
    pub fn pool_cap(&self) -> usize {
        self.pool_cap
    }

    /// The liveness timeout, if probing is on.
    pub fn liveness_timeout(&self) -> Option<Duration> {
        self.liveness_timeout
    }

    /// The rendezvous directory (default: [`ShmConfig::default_dir`]). It is
    /// created with mode 0700 if missing, and refused unless it is a real
    /// directory owned by this user with mode 0700.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Data bytes of each ring, one per direction (a power of two, default 1 MiB).
    pub fn with_ring_capacity(mut self, bytes: usize) -> Self {
        self.ring_capacity = bytes;
        self
    }

    /// Largest frame carried in a ring record (default: capacity / 2 - 16).
    /// Larger frames travel in a dedicated sealed memfd.
    pub fn with_max_record(mut self, bytes: usize) -> Self {
        self.max_record = Some(bytes);
        self
    }

    /// How ring readers and writers wait (default `Adaptive` with a 50 µs spin).
    pub fn with_wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.wait_policy = policy;
        self
    }

    /// Also accepts peers running as `uid` (default: the same uid only).
    /// Frames from such peers are copied out of shared memory before use.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        if !self.allowed_uids.contains(&uid) {
            self.allowed_uids.push(uid);
        }
        self
    }

    /// Bound on each handshake step (default 5 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The configured rendezvous directory, or the default one.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(Self::default_dir)
    }

    /// Ring capacity in bytes.
    pub fn ring_capacity(&self) -> usize {
        self.ring_capacity
    }

    /// The wait policy.
    pub fn wait_policy(&self) -> WaitPolicy {
        self.wait_policy
    }

    /// Extra uids accepted besides our own.
    pub fn allowed_uids(&self) -> &[u32] {
        &self.allowed_uids
    }

    /// Bound on each handshake step.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// `$XDG_RUNTIME_DIR/active-message` when `XDG_RUNTIME_DIR` is an absolute
    /// path, else `<temp dir>/active-message-<uid>`.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() => dir.join("active-message"),
            _ => std::env::temp_dir().join(format!("active-message-{}", own_uid())),
        }
    }

    /// The geometry of each ring, checked.
    pub(crate) fn ring_config(&self) -> Result<RingConfig> {
        let bad = |e| Error::Config(format!("shm ring geometry: {e}"));
        let cfg = RingConfig::new(self.ring_capacity).map_err(bad)?;
        match self.max_record {
            Some(max) => cfg.with_max_record(max).map_err(bad),
            None => Ok(cfg),
        }
    }

    /// Checks every setting without touching the file system.
    pub(crate) fn validate(&self) -> Result<()> {
        self.ring_config()?;
        if self.handshake_timeout.is_zero() {
            return Err(Error::Config(
                "shm handshake timeout must be positive".into(),
            ));
        }
        if let WaitPolicy::Adaptive { spin } = self.wait_policy
            && spin > Duration::from_secs(1)
        {
            return Err(Error::Config("shm spin budget above 1 s".into()));
        }
        if self
            .liveness_timeout
            .is_some_and(|t| t < Duration::from_millis(4))
        {
            return Err(Error::Config("shm liveness timeout below 4 ms".into()));
        }
        Ok(())
    }
}

/// The effective uid of this process.
pub(crate) fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Creates `dir` (mode 0700) if missing, then checks it is a directory (not a
/// symlink) owned by us with mode exactly 0700; refuses anything else.
pub(crate) fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_absolute() {
        return Err(Error::Config(format!(
            "shm rendezvous dir {} is not absolute",
            dir.display()
        )));
    }
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(Error::Transport(format!(
                "cannot create shm rendezvous dir {}: {e}",
                dir.display()
            )));
        }
    }
    check_dir(dir)?;
    Ok(dir.to_path_buf())
}

/// Refuses a rendezvous dir that another user could write to or swap out.
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::Transport(format!(
            "refusing shm rendezvous dir {}: {why}",
            dir.display()
        )))
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) => return refuse(e.to_string()),
    };
    if !meta.file_type().is_dir() {
        return refuse("not a directory (or a symlink)".into());
    }
    if meta.uid() != own_uid() {
        return refuse(format!("owned by uid {}, not {}", meta.uid(), own_uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        return refuse(format!("mode {mode:o}, expected 700"));
    }
    Ok(())
}

/// The rendezvous socket of instance `id` in `dir`.
pub(crate) fn socket_path(dir: &Path, id: crate::ids::InstanceId) -> Result<PathBuf> {
    let path = dir.join(format!("am-{id}.sock"));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(Error::Config(format!(
            "shm socket path {} is longer than {MAX_SOCKET_PATH} bytes: choose a shorter shm_dir",
            path.display()
        )));
    }
    Ok(path)
}

/// The policy both handles of a link use: `Spin` only when both peers spin
/// (a spinning producer never rings the doorbell a parked consumer waits on).
pub(crate) fn link_policy(local: WaitPolicy, peer_spins: bool) -> WaitPolicy {
    match local {
        WaitPolicy::Spin if peer_spins => WaitPolicy::Spin,
        WaitPolicy::Spin => WaitPolicy::Adaptive {
            spin: SPIN_FALLBACK,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = ShmConfig::default();
        c.validate().unwrap();
        assert_eq!(c.ring_config().unwrap().capacity(), 1 << 20);
        assert_eq!(c.ring_config().unwrap().max_record(), (1 << 19) - 16);
        assert!(matches!(c.wait_policy(), WaitPolicy::Adaptive { .. }));
        assert!(ShmConfig::default_dir().is_absolute());
    }

    #[test]
    fn bad_geometry_is_a_config_error() {
        let c = ShmConfig::default().with_ring_capacity(1000);
        assert!(matches!(c.validate(), Err(Error::Config(_))));
        let c = ShmConfig::default()
            .with_ring_capacity(4096)
            .with_max_record(4096);
        assert!(matches!(c.validate(), Err(Error::Config(_))));
    }

    #[test]
    fn spin_only_when_both_spin() {
        assert_eq!(link_policy(WaitPolicy::Spin, true), WaitPolicy::Spin);
        assert_eq!(
            link_policy(WaitPolicy::Spin, false),
            WaitPolicy::Adaptive {
                spin: SPIN_FALLBACK
            }
        );
        assert_eq!(link_policy(WaitPolicy::Park, true), WaitPolicy::Park);
    }

    #[test]
    fn dir_is_created_0700_and_loose_dirs_are_refused() {
        let base = std::env::temp_dir().join(format!("am-cfg-{}", uuid::Uuid::new_v4()));
        let dir = base.join("rv");
        prepare_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(prepare_dir(&dir), Err(Error::Transport(_))));
        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(check_dir(&link), Err(Error::Transport(_))));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
