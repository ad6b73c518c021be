//! Two real processes over one sealed memfd holding two rings (one per direction).
//!
//! The test binary re-executes itself, filtered to `child_main`, with `SHM_RING_CHILD`
//! set. The child's stdin is one end of a Unix socketpair: it receives the memfd and the
//! four eventfds over it (`SCM_RIGHTS`), and the parent watches its own end for EOF, the
//! liveness signal a SIGKILLed child still gives: the watcher then closes both rings with
//! a `RingCloser`, which wakes any waiter.
#![cfg(not(loom))] // loom primitives only work inside loom models (tests/loom.rs)

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use shm_ring::fdpass::{recv_fds, send_fds};
use shm_ring::{
    Bells, Consumer, Producer, Region, RegionLayout, RingCloser, RingConfig, RingError, WaitPolicy,
    init_ring,
};

const ENV: &str = "SHM_RING_CHILD";
/// Hang guard only; every wait here normally ends in well under a second.
const GUARD: Option<Duration> = Some(Duration::from_secs(20));

/// Child side. A no-op in a normal test run.
#[test]
fn child_main() {
    let Ok(mode) = std::env::var(ENV) else { return };
    let stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    let (n, fds) = recv_fds(stdin.as_fd(), &mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    let offs: Vec<usize> = text.split(' ').map(|s| s.parse().unwrap()).collect();
    let [memfd, a_data, a_space, b_data, b_space]: [OwnedFd; 5] = fds.try_into().unwrap();
    let region = Region::from_fd(memfd).unwrap();
    let mut rx =
        Consumer::attach(&region, offs[0], Bells::from_fds(a_data, a_space).unwrap()).unwrap();
    let mut tx =
        Producer::attach(&region, offs[1], Bells::from_fds(b_data, b_space).unwrap()).unwrap();
    match mode.as_str() {
        // Echo every record back (payload reversed, flags + 1) until the parent closes.
        "echo" => loop {
            let g = match rx.read_blocking(None) {
                Ok(g) => g,
                Err(RingError::Closed) => break,
                Err(e) => panic!("child read: {e}"),
            };
            let mut out = tx.reserve_blocking(g.len(), None).unwrap();
            out.copy_from_slice(g.payload());
            out.reverse();
            out.set_flags(g.flags().wrapping_add(1));
            out.commit();
            g.release();
        },
        // Stream numbered records until killed or closed.
        "stream" => {
            for i in 0u64.. {
                if tx.push_blocking(&i.to_le_bytes(), None).is_err() {
                    break;
                }
            }
        }
        other => panic!("unknown child mode {other}"),
    }
    // Dropping the handles sets the closed flags: the parent sees Closed after draining.
}

/// The parent's side of a link to a child process.
struct Link {
    child: Child,
    tx: Producer,
    rx: Consumer,
    watcher: thread::JoinHandle<()>,
}

/// Watches the socket for EOF (peer process gone) and closes the rings. The child never
/// writes to the socket, so readability means EOF here; a real transport reads its
/// messages and treats a 0-byte read the same way.
fn watch_eof(sock: OwnedFd, closers: Vec<RingCloser>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("poll: {e}"),
            }
            match nix::unistd::read(&sock, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        closers.iter().for_each(RingCloser::close);
    })
}

fn spawn_child(mode: &str, policy: WaitPolicy) -> Link {
    let cfg = RingConfig::new(1 << 16).unwrap();
    let layout = RegionLayout::new(&[cfg, cfg]);
    let region: Arc<Region> = Region::memfd("cross-process-test", layout.size()).unwrap();
    let (off_a, off_b) = (layout.offsets()[0], layout.offsets()[1]);
    init_ring(&region, off_a, cfg).unwrap();
    init_ring(&region, off_b, cfg).unwrap();
    let (bells_a, bells_b) = (Bells::new().unwrap(), Bells::new().unwrap());
    let mut tx = Producer::attach(&region, off_a, bells_a.clone()).unwrap();
    let mut rx = Consumer::attach(&region, off_b, bells_b.clone()).unwrap();
    tx.set_policy(policy);
    rx.set_policy(policy);

    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(ENV, mode)
        .stdin(Stdio::from(theirs)) // the Command (and our copy of `theirs`) drops here
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let fds = [
        region.fd().unwrap(),
        bells_a.data.as_fd(),
        bells_a.space.as_fd(),
        bells_b.data.as_fd(),
        bells_b.space.as_fd(),
    ];
    send_fds(ours.as_fd(), format!("{off_a} {off_b}").as_bytes(), &fds).unwrap();
    let watcher = watch_eof(ours, vec![tx.closer(), rx.closer()]);
    Link {
        child,
        tx,
        rx,
        watcher,
    }
}

fn payload(i: usize) -> Vec<u8> {
    (0..(i * 97) % 5000).map(|j| (i + j) as u8).collect()
}

#[test]
fn echo_both_ways_then_clean_close() {
    let Link {
        mut child,
        mut tx,
        mut rx,
        watcher,
    } = spawn_child("echo", WaitPolicy::default());
    // Ping-pong, then pipelined bursts that wrap both rings many times.
    let check = |rx: &mut Consumer, i: usize| {
        let g = rx.read_blocking(GUARD).unwrap();
        let mut want = payload(i);
        want.reverse();
        assert_eq!(g.payload(), &want[..], "echo {i}");
        assert_eq!(g.flags(), i as u16 + 1);
        g.release();
    };
    for i in 0..200 {
        let mut g = tx.reserve_blocking(payload(i).len(), GUARD).unwrap();
        g.copy_from_slice(&payload(i));
        g.set_flags(i as u16);
        g.commit();
        check(&mut rx, i);
    }
    for burst in 0..50 {
        for i in burst * 10..burst * 10 + 10 {
            let mut g = tx.reserve_blocking(payload(i).len(), GUARD).unwrap();
            g.copy_from_slice(&payload(i));
            g.set_flags(i as u16);
            g.commit();
        }
        for i in burst * 10..burst * 10 + 10 {
            check(&mut rx, i);
        }
    }
    // Closing our producer makes the child drain, drop its handles and exit.
    tx.close();
    assert!(matches!(rx.read_blocking(GUARD), Err(RingError::Closed)));
    assert!(child.wait().unwrap().success());
    watcher.join().unwrap();
}

#[test]
fn sigkill_mid_stream_is_detected() {
    for policy in [WaitPolicy::Park, WaitPolicy::default()] {
        let Link {
            mut child,
            mut tx,
            mut rx,
            watcher,
        } = spawn_child("stream", policy);
        for i in 0u64..1000 {
            let g = rx.read_blocking(GUARD).unwrap();
            assert_eq!(g.payload(), i.to_le_bytes());
            g.release();
        }
        child.kill().unwrap(); // SIGKILL: the child sets no flag
        let killed = Instant::now();
        child.wait().unwrap();
        // Drain what the child committed before dying, then see Closed (not a timeout).
        let mut drained = 0u64;
        let end = loop {
            match rx.read_blocking(GUARD) {
                Ok(g) => {
                    assert_eq!(g.payload(), (1000 + drained).to_le_bytes());
                    drained += 1;
                    g.release();
                }
                Err(e) => break e,
            }
        };
        assert!(matches!(end, RingError::Closed), "got {end:?}");
        eprintln!("{policy:?}: Closed {:?} after SIGKILL", killed.elapsed());
        assert!(matches!(tx.try_reserve(8), Err(RingError::Closed)));
        watcher.join().unwrap();
    }
}
