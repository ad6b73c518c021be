//! Property test: random reserve / commit (full, shorter, abandoned) / read / release
//! sequences against a `VecDeque<Vec<u8>>` model that also predicts `Full` exactly
//! (including the consumer's lazy publication of its head).
#![cfg(not(loom))] // loom primitives only work inside loom models (tests/loom.rs)

use std::collections::VecDeque;

use proptest::prelude::*;
use shm_ring::{RingConfig, RingError, heap_pair, record_footprint};

const CAP: u64 = 512;
const MAX: usize = 200;

#[derive(Clone, Debug)]
enum Commit {
    All,
    Shorter(usize),
    Abandon,
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        len: usize,
        commit: Commit,
        flags: u16,
    },
    Read {
        release: bool,
    },
    /// `Producer::hold`.
    Hold,
    /// `Producer::flush`.
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let commit = prop_oneof![
        3 => Just(Commit::All),
        2 => (0..=MAX).prop_map(Commit::Shorter),
        1 => Just(Commit::Abandon),
    ];
    prop_oneof![
        (0..=MAX + 8, commit, any::<u16>()).prop_map(|(len, commit, flags)| Op::Write {
            len,
            commit,
            flags
        }),
        any::<bool>().prop_map(|release| Op::Read { release }),
        Just(Op::Hold),
        Just(Op::Flush),
    ]
}

/// The specification of space accounting: free-running positions and PAD at the wrap.
#[derive(Default)]
struct Model {
    queue: VecDeque<(Vec<u8>, u16, u64)>, // payload, flags, end position
    tail: u64,
    /// End of the last released record (the consumer's private head).
    head: u64,
    /// The head as the producer sees it: published once `batch` bytes were released, or
    /// when a read finds the ring empty.
    published: u64,
    batch: u64,
    /// The tail as the consumer sees it (behind `tail` while the producer holds).
    visible: u64,
    holding: bool,
}

impl Model {
    /// Where a `len`-byte record would start, and the new tail, if it fits.
    fn place(&self, len: usize) -> Option<u64> {
        let fp = record_footprint(len) as u64;
        let rest = CAP - self.tail % CAP;
        let need = if fp <= rest { fp } else { rest + fp };
        let start = self.tail + (need - fp);
        (CAP - (self.tail - self.published) >= need).then_some(start)
    }

    /// Whether the consumer can see a record now.
    fn readable(&self) -> bool {
        self.queue.front().is_some_and(|r| r.2 <= self.visible)
    }
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed * 7 + i * 13) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn ring_matches_model(ops in proptest::collection::vec(op(), 1..400)) {
        let cfg = RingConfig::new(CAP as usize).unwrap().with_max_record(MAX).unwrap();
        let (mut p, mut c) = heap_pair(cfg).unwrap();
        let mut m = Model { batch: c.release_batch() as u64, ..Model::default() };
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Write { len, commit, flags } => match p.try_reserve(len) {
                    Err(RingError::TooLarge { .. }) => prop_assert!(len > MAX),
                    Err(RingError::Full) => {
                        prop_assert!(len <= MAX);
                        prop_assert!(m.place(len).is_none(), "Full but the model has room");
                        // A full ring publishes what it held.
                        m.visible = m.tail;
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                    Ok(mut g) => {
                        let start = m.place(len);
                        prop_assert!(start.is_some(), "reserved but the model is full");
                        prop_assert_eq!(g.len(), len);
                        prop_assert_eq!(g.as_ptr() as usize % 16, 0);
                        let data = pattern(n, len);
                        g.copy_from_slice(&data);
                        g.set_flags(flags);
                        let kept = match commit {
                            Commit::All => { g.commit(); len }
                            Commit::Shorter(k) => { let k = k.min(len); g.commit_len(k); k }
                            Commit::Abandon => { let _abandoned = g; continue; }
                        };
                        let end = start.unwrap() + record_footprint(kept) as u64;
                        m.tail = end;
                        if !m.holding {
                            m.visible = end;
                        }
                        m.queue.push_back((data[..kept].to_vec(), flags, end));
                    }
                },
                Op::Read { release } => match c.try_read() {
                    Err(RingError::Empty) => {
                        prop_assert!(!m.readable(), "Empty with a published record");
                        m.published = m.head;
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                    Ok(g) => {
                        prop_assert!(m.readable(), "read a record still held back");
                        let (want, flags, end) = m.queue.front().cloned().unwrap();
                        prop_assert_eq!(g.payload(), &want[..]);
                        prop_assert_eq!(g.to_vec(), want);
                        prop_assert_eq!(g.flags(), flags);
                        prop_assert_eq!(g.payload().as_ptr() as usize % 16, 0);
                        if release {
                            g.release();
                            m.queue.pop_front();
                            m.head = end;
                            if m.head - m.published >= m.batch {
                                m.published = m.head;
                            }
                        }
                    }
                },
                Op::Hold => {
                    p.hold();
                    m.holding = true;
                }
                Op::Flush => {
                    p.flush();
                    m.holding = false;
                    m.visible = m.tail;
                }
            }
        }
        p.flush();
        while let Some((want, _, _)) = m.queue.pop_front() {
            let g = c.try_read().unwrap();
            prop_assert_eq!(g.payload(), &want[..]);
            g.release();
        }
        prop_assert!(matches!(c.try_read(), Err(RingError::Empty)));
        drop(p);
        prop_assert!(matches!(c.try_read(), Err(RingError::Closed)));
    }
}

/// Records held back are published by `flush`, by a reserve that finds the ring full,
/// and by dropping the producer; never before.
#[test]
fn held_records_appear_at_flush_when_full_and_on_drop() {
    let cfg = RingConfig::new(CAP as usize)
        .unwrap()
        .with_max_record(MAX)
        .unwrap();
    let (mut p, mut c) = heap_pair(cfg).unwrap();
    p.hold();
    p.try_push(&[1; 8]).unwrap();
    p.try_push(&[2; 8]).unwrap();
    assert!(
        matches!(c.try_read(), Err(RingError::Empty)),
        "held record seen"
    );
    p.flush();
    for want in [1u8, 2] {
        let g = c.try_read().unwrap();
        assert_eq!(g.payload(), &[want; 8]);
        g.release();
    }
    // Holding until the ring is full: the failed reserve publishes everything.
    p.hold();
    let mut held = 0usize;
    while p.try_push(&[3; 64]).is_ok() {
        held += 1;
    }
    let mut seen = 0usize;
    while let Ok(g) = c.try_read() {
        g.release();
        seen += 1;
    }
    assert_eq!(seen, held, "a full ring published what it held");
    // Dropped while holding: the consumer drains the held record, then sees the close.
    p.try_push(&[4; 8]).unwrap();
    drop(p);
    assert_eq!(c.try_read().unwrap().payload(), &[4; 8]);
    c.try_read().unwrap().release();
    assert!(matches!(c.try_read(), Err(RingError::Closed)));
}
