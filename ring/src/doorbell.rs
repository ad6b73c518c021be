//! Doorbells: one eventfd per direction ("data ready" P→C, "space freed" C→P).
//!
//! An eventfd is created non-blocking and close-on-exec; one received from another process
//! is wrapped with [`Doorbell::from_fd`] (which forces `O_NONBLOCK`). Under `--cfg loom`
//! the eventfd is modelled by a loom mutex + condvar counter, so a lost wake-up shows up as
//! a loom deadlock.

#[cfg(not(loom))]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
#[cfg(not(loom))]
use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;

/// One wake-up channel: a non-blocking eventfd (cheap to clone: clones share the fd).
#[cfg(not(loom))]
#[derive(Clone, Debug)]
pub struct Doorbell {
    fd: Arc<OwnedFd>,
}

#[cfg(not(loom))]
impl Doorbell {
    /// A new eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`, counter 0).
    pub fn new() -> Result<Self> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let efd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Doorbell {
            fd: Arc::new(efd.into()),
        })
    }

    /// Wraps an eventfd received from another process (e.g. over `SCM_RIGHTS`), making
    /// sure it is non-blocking.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        if !flags.contains(OFlag::O_NONBLOCK) {
            fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        }
        Ok(Doorbell { fd: Arc::new(fd) })
    }

    /// A new descriptor for the same eventfd, to pass to another process.
    pub fn try_clone_fd(&self) -> Result<OwnedFd> {
        Ok(self.fd.try_clone()?)
    }

    /// Adds 1 to the counter, waking a waiter. Never blocks.
    ///
    /// An async waiter does not read the counter when it wakes (see the
    /// crate's `wait` module): epoll, edge-triggered, reports every write. A write
    /// that would overflow the counter (EAGAIN: only a peer that wrote a huge
    /// value gets there) wakes nobody, so the counter is reset and the write
    /// made again, as mio's eventfd waker does.
    #[inline]
    pub fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        if let Err(nix::errno::Errno::EAGAIN) = nix::unistd::write(&*self.fd, &one) {
            self.drain();
            let _ = nix::unistd::write(&*self.fd, &one);
        }
    }

    /// Resets the counter; returns whether it was non-zero.
    ///
    /// One read: an eventfd's read returns the whole counter and zeroes it,
    /// so a second read (to see EAGAIN) would cost a system call per wake-up
    /// for nothing. (A descriptor a peer created in semaphore mode may keep a
    /// count; its waiter then returns spuriously once and re-checks the
    /// ring, which every caller does.)
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8];
        loop {
            match nix::unistd::read(&*self.fd, &mut buf) {
                Ok(8) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                _ => return false,
            }
        }
    }

    /// Blocks until rung or `deadline`; drains. Returns false on timeout. Spurious
    /// returns are allowed: callers re-check the ring.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(self.drain());
                }
                let ms = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => Ok(false),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {
                self.drain();
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(not(loom))]
impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(not(loom))]
impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Loom model of an eventfd: a counter under a mutex, with a condvar to park on.
#[cfg(loom)]
#[derive(Clone)]
pub struct Doorbell {
    inner: loom::sync::Arc<(loom::sync::Mutex<u64>, loom::sync::Condvar)>,
}

#[cfg(loom)]
impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Doorbell(loom)")
    }
}

#[cfg(loom)]
impl Doorbell {
    /// A new modelled doorbell.
    pub fn new() -> Result<Self> {
        let inner = (loom::sync::Mutex::new(0), loom::sync::Condvar::new());
        Ok(Doorbell {
            inner: loom::sync::Arc::new(inner),
        })
    }

    /// Adds 1 to the counter and wakes a waiter.
    pub fn ring(&self) {
        let (count, cv) = &*self.inner;
        *count.lock().unwrap() += 1;
        cv.notify_all();
    }

    /// Resets the counter; returns whether it was non-zero.
    pub fn drain(&self) -> bool {
        std::mem::take(&mut *self.inner.0.lock().unwrap()) != 0
    }

    /// Blocks until the counter is non-zero, then resets it (deadlines are not modelled).
    pub(crate) fn wait(&self, _deadline: Option<Instant>) -> Result<bool> {
        let (count, cv) = &*self.inner;
        let mut n = count.lock().unwrap();
        while *n == 0 {
            n = cv.wait(n).unwrap();
        }
        *n = 0;
        Ok(true)
    }
}

/// The two doorbells of one ring. Both handles of a ring (and its closers) hold clones.
#[derive(Clone, Debug)]
pub struct Bells {
    /// "Data ready": rung by the producer, waited on by the consumer.
    pub data: Doorbell,
    /// "Space freed": rung by the consumer, waited on by the producer.
    pub space: Doorbell,
}

impl Bells {
    /// Two fresh doorbells.
    pub fn new() -> Result<Self> {
        Ok(Bells {
            data: Doorbell::new()?,
            space: Doorbell::new()?,
        })
    }

    /// Doorbells from eventfds received from another process.
    #[cfg(not(loom))]
    pub fn from_fds(data: OwnedFd, space: OwnedFd) -> Result<Self> {
        Ok(Bells {
            data: Doorbell::from_fd(data)?,
            space: Doorbell::from_fd(space)?,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_drain_resets_every_ring() {
        let bell = Doorbell::new().unwrap();
        assert!(!bell.drain(), "a fresh bell was never rung");
        bell.ring();
        bell.ring();
        bell.ring();
        assert!(bell.drain());
        assert!(!bell.drain(), "one read took the whole count");
        bell.ring();
        assert!(bell.drain());
    }

    /// Reads the counter's value (0 when it is zero).
    fn count(bell: &Doorbell) -> u64 {
        let mut buf = [0u8; 8];
        match nix::unistd::read(&*bell.fd, &mut buf) {
            Ok(8) => u64::from_ne_bytes(buf),
            _ => 0,
        }
    }

    #[test]
    fn a_ring_on_a_full_counter_resets_it_and_wakes() {
        let bell = Doorbell::new().unwrap();
        // The largest count an eventfd holds: one more would block.
        let full = (u64::MAX - 1).to_ne_bytes();
        nix::unistd::write(&*bell.fd, &full).unwrap();
        bell.ring();
        assert_eq!(count(&bell), 1, "the ring was lost on a full counter");
        bell.ring();
        bell.ring();
        assert_eq!(count(&bell), 2);
    }
}
