//! The rendezvous socket: a Unix domain stream socket `am-<instance>.sock` in
//! a private directory, where peers connect to set up a link.
//!
//! A socket file left behind by a dead process is detected (connecting to it
//! is refused) and replaced; one with a live listener is never taken over.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

use crate::error::{Error, Result};

/// The socket file we created; removed on drop unless someone replaced it.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    ino: u64,
}

impl SocketFile {
    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one we bound. Idempotent.
    pub(crate) fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::debug!(path = %self.path.display(), %e, "socket file not removed");
                }
            }
            _ => {}
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What is at a socket path that could not be bound.
#[derive(Debug, PartialEq, Eq)]
enum Occupant {
    /// A process accepts connections there.
    Alive,
    /// A socket file nobody listens on (its process died).
    Stale,
    /// The file vanished meanwhile.
    Gone,
}

/// Probes `path` without blocking: a live listener accepts (or has a full
/// backlog), a stale socket file refuses.
fn probe(path: &Path) -> Result<Occupant> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Occupant::Gone),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::Transport(format!(
            "{} exists and is not a socket",
            path.display()
        )));
    }
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    let addr = UnixAddr::new(path).map_err(std::io::Error::from)?;
    match connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr) {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Ok(Occupant::Alive),
        Err(Errno::ECONNREFUSED) => Ok(Occupant::Stale),
        Err(Errno::ENOENT) => Ok(Occupant::Gone),
        Err(e) => Err(std::io::Error::from(e).into()),
    }
}

/// Removes `path` if it is a rendezvous socket nobody listens on any more
/// (its process died without cleaning up, e.g. SIGKILL). Returns whether it did.
pub(crate) fn remove_if_stale(path: &Path) -> bool {
    match probe(path) {
        Ok(Occupant::Stale) => match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::debug!(path = %path.display(), "removed a dead peer's rendezvous socket");
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}

/// After losing the link to the peer listening at `path`: once its process
/// is gone its socket file is stale; remove it. The dying process may close
/// its listener a moment after the link, so look a few times.
pub(crate) async fn reap_after_loss(path: std::path::PathBuf) {
    // A probe of a live listener costs it one connection that ends at once.
    for wait_ms in [0u64, 20, 100] {
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        match probe(&path) {
            Ok(Occupant::Alive) => continue,
            Ok(Occupant::Stale) => {
                remove_if_stale(&path);
                return;
            }
            _ => return,
        }
    }
}

/// Binds a listening socket at `path`, replacing a stale socket file.
pub(crate) fn bind(path: &Path) -> Result<(UnixListener, SocketFile)> {
    for _ in 0..3 {
        match UnixListener::bind(path) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                let ino = std::fs::symlink_metadata(path)?.ino();
                let file = SocketFile {
                    path: path.to_path_buf(),
                    ino,
                };
                return Ok((listener, file));
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse => match probe(path)? {
                Occupant::Alive => {
                    return Err(Error::Transport(format!(
                        "{} is in use by a live process",
                        path.display()
                    )));
                }
                Occupant::Stale => {
                    tracing::debug!(path = %path.display(), "replacing stale rendezvous socket");
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Occupant::Gone => {}
            },
            Err(e) => {
                return Err(Error::Transport(format!(
                    "cannot bind {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Err(Error::Transport(format!(
        "cannot bind {}: it keeps reappearing",
        path.display()
    )))
}

/// Socket files of dead processes older than this are swept at bind time
/// (instance ids are random, so a crashed process's socket is never reused).
const STALE_AGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Most directory entries looked at per sweep.
const SWEEP_LIMIT: usize = 1024;

/// Removes `am-*.sock` files in `dir` that nobody listens on any more and
/// that are old enough not to be a socket being set up right now.
pub(crate) fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten().take(SWEEP_LIMIT) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("am-") || !name.ends_with(".sock") {
            continue;
        }
        let path = entry.path();
        let old = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_socket())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AGE);
        if old && matches!(probe(&path), Ok(Occupant::Stale)) && std::fs::remove_file(&path).is_ok()
        {
            tracing::debug!(path = %path.display(), "removed a dead process's rendezvous socket");
            removed += 1;
        }
    }
    removed
}

/// Accepts a peer running as `peer_uid`: our own uid, or one explicitly allowed.
pub fn check_peer_uid(peer_uid: u32, own_uid: u32, allowed: &[u32]) -> Result<()> {
    if peer_uid == own_uid || allowed.contains(&peer_uid) {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "peer runs as uid {peer_uid}; only uid {own_uid} and {allowed:?} are allowed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_check() {
        check_peer_uid(1000, 1000, &[]).unwrap();
        check_peer_uid(7, 1000, &[7]).unwrap();
        assert!(matches!(
            check_peer_uid(7, 1000, &[8]),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = std::env::temp_dir().join(format!("am-rv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("x.sock");
        // A socket file whose listener is gone.
        drop(UnixListener::bind(&path).unwrap());
        assert_eq!(probe(&path).unwrap(), Occupant::Stale);
        let (live, file) = bind(&path).unwrap();
        assert_eq!(probe(&path).unwrap(), Occupant::Alive);
        assert!(matches!(bind(&path), Err(Error::Transport(_))));
        drop(live);
        drop(file);
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(bind(&path), Err(Error::Transport(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sweep_removes_only_old_dead_sockets() {
        use nix::sys::stat::{UtimensatFlags, utimensat};
        use nix::sys::time::TimeSpec;
        let dir = std::env::temp_dir().join(format!("am-sweep-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let age = |path: &Path| {
            let old = TimeSpec::new(1_000_000, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                path,
                &old,
                &old,
                UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        };
        let dead_old = dir.join("am-dead-old.sock");
        let dead_new = dir.join("am-dead-new.sock");
        let live_old = dir.join("am-live-old.sock");
        let other = dir.join("other.sock");
        drop(UnixListener::bind(&dead_old).unwrap());
        drop(UnixListener::bind(&dead_new).unwrap());
        drop(UnixListener::bind(&other).unwrap());
        let _live = UnixListener::bind(&live_old).unwrap();
        for p in [&dead_old, &live_old, &other] {
            age(p);
        }
        assert_eq!(sweep_stale(&dir), 1);
        assert!(!dead_old.exists());
        assert!(dead_new.exists() && live_old.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
