//! Unit tests of the pooled area: both sides in one process, the receiver
//! mapping the sender's descriptors as a peer would.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::*;

/// The pool's usage counters are process-wide: tests that move them run one
/// at a time, so one test's comparisons never see another's segments.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// A sender pool and a receiver table wired together by descriptor.
struct Pair {
    tx: TxPool,
    rx: RxPool,
}

impl Pair {
    fn new(cap: usize) -> Self {
        Self {
            tx: TxPool::new(cap),
            rx: RxPool::new(cap),
        }
    }

    /// Leases, writes `fill` and publishes; the receiver maps new segments.
    /// As many frames of `len` bytes as the sender keeps in flight.
    fn send_pipeline(&mut self, len: usize) -> Vec<Ref> {
        (0..PIPELINE as u8)
            .map(|i| self.send(len, i).unwrap())
            .collect()
    }

    fn send(&mut self, len: usize, fill: u8) -> Option<Ref> {
        let mut lease = self.tx.try_lease(len).unwrap()?;
        lease.data_mut()[..len].fill(fill);
        let announce = self.tx.announcements(lease.id);
        for id in announce.retired {
            self.rx.retire(id).unwrap();
        }
        if let Some((id, size, fd)) = announce.new {
            let seg = map_peer_segment(fd, size, self.rx.max_segment()).unwrap();
            self.rx.add(id, seg).unwrap();
        }
        let r = Ref {
            id: lease.id,
            gen_: lease.gen_,
            offset: 0,
            len,
        };
        lease.published();
        Some(r)
    }
}

#[test]
fn capacities_round_up_by_an_eighth() {
    let _serial = SERIAL.lock();
    assert_eq!(capacity_for(10), 1 << 20);
    assert_eq!(capacity_for((1 << 20) + 1), 1 << 20 | 1 << 18);
    assert_eq!(capacity_for(16 << 20), 16 << 20);
    assert!(capacity_for((256 << 20) + 320) <= 320 << 20);
}

#[test]
fn a_held_buffer_is_never_reused_and_a_released_one_is() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(64 << 20);
    let first = p.send(3 << 20, 7).unwrap();
    let held = p.rx.take(first).unwrap();
    // Held: the next frame gets a fresh segment, and the first keeps its bytes.
    let second = p.send(3 << 20, 9).unwrap();
    assert_ne!(second.id, first.id);
    assert!(held.as_ref().iter().all(|&b| b == 7));
    drop(held);
    let third = p.send(3 << 20, 1).unwrap();
    assert_eq!((third.id, third.gen_), (first.id, 2));
    let got = p.rx.take(third).unwrap();
    assert!(got.as_ref().iter().all(|&b| b == 1));
}

#[test]
fn clones_and_slices_hold_the_buffer_until_the_last_drops() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(64 << 20);
    let base = pool_usage().rx_held;
    let first = p.send(2 << 20, 7).unwrap();
    let held = p.rx.take(first).unwrap();
    let slice = held.sub(4096, 100);
    let clone = slice.clone();
    assert_eq!(clone.as_ref().len(), 100);
    drop((held, slice));
    let held_now = pool_usage().rx_held;
    assert_eq!(
        held_now,
        base + 1,
        "one frame held, by any number of holders"
    );
    // Still held by the clone: the next frame gets a fresh segment.
    let second = p.send(2 << 20, 9).unwrap();
    assert_ne!(second.id, first.id);
    assert!(clone.as_ref().iter().all(|&b| b == 7));
    assert!(
        p.rx.take(Ref { gen_: 2, ..first }).is_err(),
        "a reference to a held segment is refused"
    );
    drop(clone);
    assert_eq!(pool_usage().rx_held, base);
    let third = p.send(2 << 20, 1).unwrap();
    assert_eq!((third.id, third.gen_), (first.id, 2));
}

#[test]
fn a_full_area_says_wait_and_retires_misfits_to_make_room() {
    let _serial = SERIAL.lock();
    let seg = SEG_HEADER + capacity_for(1 << 20);
    let mut p = Pair::new(2 * seg);
    let r = p.send(1 << 20, 1).unwrap();
    let a = p.rx.take(r).unwrap();
    let r = p.send(1 << 20, 2).unwrap();
    let b = p.rx.take(r).unwrap();
    assert!(
        p.tx.try_lease(1 << 20).unwrap().is_none(),
        "both held: wait"
    );
    drop(a);
    drop(b);
    // Two free 1 MiB segments cannot hold 1.5 MiB: both are retired for one.
    let big = p.send(3 << 19, 3).unwrap();
    assert!(p.tx.total() <= 2 * seg);
    assert_eq!(p.rx.take(big).unwrap().as_ref().len(), 3 << 19);
    assert!(
        p.rx.take(Ref { gen_: 1, ..big }).is_err(),
        "retired segments are gone"
    );
}

#[test]
fn bad_references_are_refused() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(64 << 20);
    let r = p.send(1 << 20, 5).unwrap();
    let cap = capacity_for(1 << 20);
    let bad = [
        Ref { id: r.id + 1, ..r },
        Ref { gen_: 2, ..r },
        Ref { gen_: 0, ..r },
        Ref { offset: cap, ..r },
        Ref { offset: 8, ..r },
        Ref { len: cap + 1, ..r },
        Ref { len: 3, ..r },
        Ref {
            offset: usize::MAX - 4,
            ..r
        },
    ];
    for b in bad {
        assert!(p.rx.take(b).is_err(), "{b:?}");
    }
    let held = p.rx.take(r).unwrap();
    assert!(p.rx.take(Ref { gen_: 2, ..r }).is_err(), "held: no reuse");
    drop(held);
}

#[test]
fn unsealed_or_missized_segments_are_refused() {
    let _serial = SERIAL.lock();
    let fd = memfd_create("t", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
    let file = File::from(fd);
    file.set_len(2 * SEG_HEADER as u64).unwrap();
    let clone = || OwnedFd::from(file.try_clone().unwrap());
    assert!(
        map_peer_segment(clone(), 2 * SEG_HEADER, 1 << 20).is_err(),
        "unsealed"
    );
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).unwrap();
    assert!(
        map_peer_segment(clone(), 3 * SEG_HEADER, 1 << 20).is_err(),
        "size"
    );
    assert!(
        map_peer_segment(clone(), 2 * SEG_HEADER, SEG_HEADER).is_err(),
        "limit"
    );
    assert!(map_peer_segment(clone(), 2 * SEG_HEADER, 1 << 20).is_ok());
}

#[test]
fn pool_levels_return_when_both_sides_drop() {
    let _serial = SERIAL.lock();
    let before = pool_usage();
    let mut p = Pair::new(64 << 20);
    let r = p.send(2 << 20, 4).unwrap();
    let held = p.rx.take(r).unwrap();
    let during = pool_usage();
    assert!(during.tx_segments > before.tx_segments);
    assert!(during.rx_held > before.rx_held);
    drop(p);
    drop(held);
    let after = pool_usage();
    // Other tests in this binary run concurrently: compare only our part.
    assert!(after.tx_segments < during.tx_segments);
    assert!(after.rx_segments < during.rx_segments);
}

#[test]
fn a_sender_waits_for_a_returned_segment_before_mapping_more() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(256 << 20);
    let refs = p.send_pipeline(2 << 20);
    let held: Vec<Held> = refs.iter().map(|&r| p.rx.take(r).unwrap()).collect();
    assert!(
        p.tx.try_lease_with(2 << 20, Grow::Warm).unwrap().is_none(),
        "{PIPELINE} in flight: wait for one of them"
    );
    assert!(
        p.tx.try_lease_with(1 << 24, Grow::Warm).unwrap().is_some(),
        "none of another size in flight: map one"
    );
    let mut held = held.into_iter();
    drop(held.next());
    let lease = p.tx.try_lease_with(2 << 20, Grow::Warm).unwrap().unwrap();
    assert_eq!(lease.id, refs[0].id, "the returned one");
    assert!(
        p.tx.try_lease_with(2 << 20, Grow::Always)
            .unwrap()
            .is_some(),
        "beyond the wait, a fresh one"
    );
    drop(held);
}

#[test]
fn a_return_rings_an_armed_sender_once() {
    let _serial = SERIAL.lock();
    let rings = Arc::new(AtomicU64::new(0));
    let r2 = Arc::clone(&rings);
    let mut p = Pair::new(64 << 20);
    p.rx = RxPool::with_bell(
        64 << 20,
        Arc::new(move || {
            r2.fetch_add(1, Ordering::Relaxed);
        }),
    );
    let r = p.send(1 << 20, 1).unwrap();
    let held = p.rx.take(r).unwrap();
    drop(held);
    assert_eq!(rings.load(Ordering::Relaxed), 0, "nobody waited: no ring");
    let r = p.send(1 << 20, 2).unwrap();
    let held = p.rx.take(r).unwrap();
    p.tx.arm_wake();
    drop(held);
    assert_eq!(rings.load(Ordering::Relaxed), 1, "armed: one ring");
    let r = p.send(1 << 20, 3).unwrap();
    drop(p.rx.take(r).unwrap());
    assert_eq!(rings.load(Ordering::Relaxed), 1, "one ring per arming");
}

#[test]
fn past_the_wait_a_sender_grows_only_if_the_receiver_keeps_up() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(256 << 20);
    let refs = p.send_pipeline(2 << 20);
    assert!(
        p.tx.try_lease_with(2 << 20, Grow::Paced).unwrap().is_none(),
        "none read yet: the receiver is behind, wait"
    );
    let held: Vec<Held> = refs.iter().map(|&r| p.rx.take(r).unwrap()).collect();
    assert!(
        p.tx.try_lease_with(2 << 20, Grow::Paced).unwrap().is_some(),
        "all read and held: map a fresh one"
    );
    drop(held);
}

#[test]
fn a_sender_reuses_the_segment_it_published_last() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(256 << 20);
    let refs = p.send_pipeline(2 << 20);
    let held: Vec<Held> = refs.iter().map(|&r| p.rx.take(r).unwrap()).collect();
    // Returned in the order sent: every one is free again.
    drop(held);
    let lease = p.tx.try_lease(2 << 20).unwrap().unwrap();
    let last = refs.last().unwrap().id;
    assert_eq!(lease.id, last, "the warmest: the one published last");
    drop(lease);
    // Unpublished, the lease leaves the order as it was.
    let again = p.tx.try_lease(2 << 20).unwrap().unwrap();
    assert_eq!(again.id, last);
}

#[test]
fn large_frames_keep_two_segments_in_flight_before_waiting() {
    let _serial = SERIAL.lock();
    let mut p = Pair::new(256 << 20);
    let len = LARGE_FRAME;
    let refs: Vec<Ref> = (0..PIPELINE_LARGE as u8)
        .map(|i| p.send(len, i).unwrap())
        .collect();
    let held: Vec<Held> = refs.iter().map(|&r| p.rx.take(r).unwrap()).collect();
    assert!(
        p.tx.try_lease_with(len, Grow::Warm).unwrap().is_none(),
        "{PIPELINE_LARGE} large ones in flight: wait for one of them"
    );
    assert!(
        p.tx.try_lease_with(len, Grow::Paced).unwrap().is_some(),
        "all read and held: past the wait, map a fresh one"
    );
    drop(held);
}
