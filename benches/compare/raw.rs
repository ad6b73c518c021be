//! The floor and the raw OS baselines: atomic ping-pong over a memfd, eventfd
//! ping-pong, Unix-socket ping-pong, and memcpy.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::sys::eventfd::{EfdFlags, EventFd};
use shm_ring::Region;

use crate::Plan;
use crate::report::{Metric, Row};
use crate::util::{Ctl, Peer, median_p99, spin, time_trips};

/// Message size of the socket ping-pong.
const MSG: usize = 64;
/// In-band "stop" of the floor's counter.
const STOP: u64 = u64::MAX;
/// First byte of the in-band "stop" message of the socket and ring ping-pongs.
pub const STOP_BYTE: u8 = 0xff;

/// The shared counter at the start of a memfd region.
fn counter(region: &Region) -> &AtomicU64 {
    // SAFETY: a region is page-aligned and at least 8 bytes long; its bytes are shared
    // with the peer process, which only accesses them through this same atomic.
    unsafe { &*(region.as_ptr() as *const AtomicU64) }
}

/// Floor: the parent stores an odd value, the child answers with the next even one,
/// both spinning on one `AtomicU64` in a shared memfd.
pub fn floor(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let region = Region::memfd("compare-floor", 4096)?;
    let peer = Peer::spawn("floor", &[])?;
    let fd = region.fd().context("memfd region has an fd")?;
    peer.ctl.send("region", &[fd])?;
    let ctr = counter(&region);
    let trips = time_trips(warmup, iters, plan.budget(), |i| {
        ctr.store(2 * i + 1, Ordering::Release);
        let mut polls = 0;
        while ctr.load(Ordering::Acquire) != 2 * i + 2 {
            spin(&mut polls);
        }
    });
    ctr.store(STOP, Ordering::Release);
    peer.finish()?;
    Ok(trips.row("floor", "floor: atomic ping-pong (memfd, spin)"))
}

pub fn floor_child(ctl: &Ctl) -> Result<()> {
    let (_, mut fds) = ctl.recv()?;
    let region = Region::from_fd(fds.pop().context("memfd")?)?;
    let ctr = counter(&region);
    for i in 0.. {
        let mut polls = 0;
        loop {
            match ctr.load(Ordering::Acquire) {
                STOP => return Ok(()),
                v if v == 2 * i + 1 => break,
                _ => spin(&mut polls),
            }
        }
        ctr.store(2 * i + 2, Ordering::Release);
    }
    Ok(())
}

pub fn blocking_eventfd() -> Result<OwnedFd> {
    Ok(EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?.into())
}

pub fn efd_write(fd: &OwnedFd, value: u64) -> Result<()> {
    nix::unistd::write(fd, &value.to_ne_bytes())?;
    Ok(())
}

/// Blocks until the eventfd is non-zero; returns (and resets) its value.
pub fn efd_read(fd: &OwnedFd) -> Result<u64> {
    let mut buf = [0u8; 8];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(8) => return Ok(u64::from_ne_bytes(buf)),
            Err(nix::errno::Errno::EINTR) => continue,
            other => bail!("eventfd read: {other:?}"),
        }
    }
}

/// Raw eventfd ping-pong: two blocking eventfds, one per direction.
pub fn eventfd(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let (ping, pong) = (blocking_eventfd()?, blocking_eventfd()?);
    let peer = Peer::spawn("eventfd", &[])?;
    peer.ctl.send("eventfds", &[ping.as_fd(), pong.as_fd()])?;
    let mut failed = None;
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        if let Err(e) = efd_write(&ping, 1).and_then(|()| efd_read(&pong)) {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    efd_write(&ping, 2)?;
    peer.finish()?;
    Ok(trips.row("eventfd", "raw eventfd ping-pong (blocking)"))
}

/// Answers every 1 on `ping` with a 1 on `pong`; any other value means stop.
pub fn eventfd_child(ctl: &Ctl) -> Result<()> {
    let (_, fds) = ctl.recv()?;
    let [ping, pong]: [OwnedFd; 2] = fds.try_into().ok().context("two eventfds")?;
    while efd_read(&ping)? == 1 {
        efd_write(&pong, 1)?;
    }
    Ok(())
}

/// Raw Unix-domain-socket ping-pong: 64 B each way over a socketpair.
pub fn uds(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let (mut ours, theirs) = UnixStream::pair()?;
    let peer = Peer::spawn("uds", &[])?;
    peer.ctl.send("socket", &[theirs.as_fd()])?;
    drop(theirs);
    let out = [7u8; MSG];
    let mut back = [0u8; MSG];
    let mut failed = None;
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        if let Err(e) = ours
            .write_all(&out)
            .and_then(|()| ours.read_exact(&mut back))
        {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    ours.write_all(&[STOP_BYTE; MSG])?;
    peer.finish()?;
    Ok(trips.row("uds", "raw Unix-socket ping-pong (64 B, blocking)"))
}

/// Echoes 64-byte messages until one starts with the stop byte.
pub fn uds_child(ctl: &Ctl) -> Result<()> {
    let (_, mut fds) = ctl.recv()?;
    let mut sock = UnixStream::from(fds.pop().context("socket")?);
    let mut buf = [0u8; MSG];
    loop {
        sock.read_exact(&mut buf)?;
        if buf[0] == STOP_BYTE {
            return Ok(());
        }
        sock.write_all(&buf)?;
    }
}

/// memcpy of `size` bytes in process: `samples` samples, each timing enough copies
/// to cover ~256 KiB (at least one), reported per copy.
pub fn memcpy(size: usize, samples: u64) -> Result<Row> {
    let src = vec![0x5au8; size];
    let mut dst = vec![0u8; size];
    let per_sample = ((256 << 10) / size).max(1);
    let mut ns = Vec::with_capacity(samples as usize);
    for s in 0..samples + samples / 10 {
        let t = Instant::now();
        for _ in 0..per_sample {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst);
        }
        if s >= samples / 10 {
            ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    let (median, p99) = median_p99(&mut ns);
    let per = per_sample as f64;
    Ok(Row::new(
        &format!("memcpy_{}", size_key(size)),
        format!("memcpy {} (in process)", size_label(size)),
        samples * per_sample as u64,
        Metric::Rate {
            size,
            median: median as f64 / per,
            worst: p99 as f64 / per,
        },
    ))
}

/// `64`, `4k`, `64k`, `1m`: the suffix of size-specific keys.
pub fn size_key(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}m", s >> 20),
        s if s >= 1 << 10 => format!("{}k", s >> 10),
        s => s.to_string(),
    }
}

/// `64 B`, `4 KiB`, `64 KiB`, `1 MiB`.
pub fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// memcpy of `size` bytes in process into two destinations in turn, as a
/// double-buffered pipeline must write (the one being read is not the one
/// being written): a second baseline for the pooled large messages, beside
/// [`memcpy`] (which rewrites one destination that stays in cache).
pub fn memcpy_two(size: usize, samples: u64) -> Result<Row> {
    let src = vec![0x5au8; size];
    let mut dst = [vec![0u8; size], vec![0u8; size]];
    let mut ns = Vec::with_capacity(samples as usize);
    for s in 0..samples + samples / 10 {
        let dst = &mut dst[s as usize % 2];
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut *dst);
        if s >= samples / 10 {
            ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    let (median, p99) = median_p99(&mut ns);
    Ok(Row::new(
        &format!("memcpy2_{}", size_key(size)),
        format!(
            "memcpy {} (in process, 2 destinations in turn)",
            size_label(size)
        ),
        samples,
        Metric::Rate {
            size,
            median: median as f64,
            worst: p99 as f64,
        },
    ))
}
