//! Passing descriptors (the memfd, the doorbells) to another process over a Unix socket
//! with `SCM_RIGHTS`. Received descriptors are close-on-exec.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::error::{Result, bad_layout};

/// Most descriptors one [`recv_fds`] call accepts.
pub const MAX_FDS: usize = 16;

/// Sends `bytes` (at least one) with `fds` attached to the first of them.
pub fn send_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    if bytes.is_empty() || fds.len() > MAX_FDS {
        return bad_layout(
            "send_fds needs 1+ bytes and at most MAX_FDS fds",
            fds.len() as u64,
        );
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 { &cmsg } else { &[] };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and the descriptors attached to them. Returns the byte
/// count (0 at EOF) and the descriptors, each owned exactly once.
pub fn recv_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>)> {
    FdReceiver::new().recv(sock, buf)
}

/// [`recv_fds`] for a socket read again and again: keeps its control-message buffer, so
/// a message without descriptors allocates nothing.
#[derive(Debug)]
pub struct FdReceiver {
    space: Vec<u8>,
}

impl Default for FdReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl FdReceiver {
    /// A receiver with room for [`MAX_FDS`] descriptors per message.
    pub fn new() -> Self {
        Self {
            space: nix::cmsg_space!([RawFd; MAX_FDS]),
        }
    }

    /// As [`recv_fds`].
    pub fn recv(&mut self, sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>)> {
        loop {
            let mut iov = [IoSliceMut::new(buf)];
            let flags = MsgFlags::MSG_CMSG_CLOEXEC;
            let space = Some(self.space.as_mut_slice());
            let msg = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, space, flags) {
                Ok(msg) => msg,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors in our table for
                    // this message; nothing else owns them, and each is wrapped exactly once.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                return bad_layout("too many descriptors received", fds.len() as u64);
            }
            return Ok((msg.bytes, fds));
        }
    }
}
