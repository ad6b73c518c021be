//! A reusable receive buffer: turns an inbound frame that must outlive the
//! transport's read (an invocation queued for the dispatcher, a payload an
//! async handler keeps) into shared [`Bytes`] without one heap allocation
//! per frame.
//!
//! Frames are copied back to back into one `BytesMut` chunk and split off as
//! frozen `Bytes` (reference counted, no allocation). Once every frame taken
//! from the chunk has been dropped, the chunk is unique again and is
//! reclaimed from its start, so a steady stream of frames that are handled
//! before the chunk runs out reuses the same memory for ever.
//!
//! A chunk that runs out while some of its frames still live (queued in the
//! inbox, or run by the dispatcher on another thread: the ZeroMQ ROUTER's
//! frames always are) is set aside in a short ring of spare chunks rather
//! than dropped; the next chunk is the oldest spare whose frames have all
//! gone, reclaimed in place. Only when every spare is still in use is a
//! chunk allocated (the oldest spare is then let go, freed when its last
//! frame goes), so a steady stream whose frames live less than a few chunks'
//! worth of traffic allocates nothing.
//!
//! The price: a payload a handler keeps for long keeps its whole chunk
//! alive. Chunks are therefore small (a few hundred small frames), and the
//! handler contexts say so (copy a payload you keep). Medium frames (a few
//! KiB up to the largest default ring record) go to a second, larger chunk
//! of their own, so that they neither use up the small one in a few copies
//! nor cost an allocation (and the page faults of fresh memory) each.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::wire::PAYLOAD_ALIGN;

/// Bytes per chunk: several hundred small frames, so a backlog of queued
/// invocations rarely forces a fresh chunk, while a payload kept for long
/// pins at most this much.
const CHUNK: usize = 64 * 1024;

/// Frames above this size go to the medium chunk (they would use up a small
/// chunk in a few copies).
pub(crate) const MAX_POOLED: usize = CHUNK / 8;

/// Filled small chunks kept for reuse while their frames may still live.
const SPARES: usize = 3;

/// Bytes per medium chunk: room for four frames of the largest medium size.
const MEDIUM_CHUNK: usize = 2 << 20;

/// Frames above this size get their own allocation: the largest record of
/// the default ring fits, and larger frames travel in the pooled area, where
/// their handler reads them in place.
const MAX_MEDIUM: usize = MEDIUM_CHUNK / 4;

/// Filled medium chunks kept for reuse (fewer: each pins 2 MiB).
const MEDIUM_SPARES: usize = 1;

/// The receive buffer of one reader (a link's reader task, a ROUTER).
pub(crate) struct RxArena {
    small: Chunks,
    /// Allocated the first time a medium frame arrives.
    medium: Chunks,
}

impl Default for RxArena {
    fn default() -> Self {
        Self::new()
    }
}

impl RxArena {
    /// An empty arena; its chunks are allocated on first use.
    pub(crate) fn new() -> Self {
        Self {
            small: Chunks::new(CHUNK, SPARES),
            medium: Chunks::new(MEDIUM_CHUNK, MEDIUM_SPARES),
        }
    }

    /// A shared copy of `frame`, starting on a [`PAYLOAD_ALIGN`] boundary so
    /// that an archive at an aligned offset inside it stays aligned.
    pub(crate) fn copy(&mut self, frame: &[u8]) -> Bytes {
        match frame.len() {
            n if n <= MAX_POOLED => self.small.copy(frame),
            n if n <= MAX_MEDIUM => self.medium.copy(frame),
            _ => Bytes::copy_from_slice(frame),
        }
    }
}

/// One size of chunk: the one being filled and its spares.
struct Chunks {
    buf: BytesMut,
    /// Filled chunks, oldest first, each reused once its frames are gone.
    spares: VecDeque<BytesMut>,
    /// Bytes per chunk (every frame copied here is at most a quarter of it).
    size: usize,
    /// Most spares kept.
    keep: usize,
    /// Chunks allocated so far.
    allocated: u64,
}

impl Chunks {
    fn new(size: usize, keep: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            spares: VecDeque::with_capacity(keep),
            size,
            keep,
            allocated: 0,
        }
    }

    /// Copies `frame` to the end of the chunk (aligned) and splits it off.
    fn copy(&mut self, frame: &[u8]) -> Bytes {
        let room = frame.len() + PAYLOAD_ALIGN;
        if self.buf.capacity() - self.buf.len() < room {
            self.next_chunk();
        }
        let misaligned = self.buf.as_ptr() as usize % PAYLOAD_ALIGN;
        if misaligned != 0 {
            let pad = PAYLOAD_ALIGN - misaligned;
            self.buf.extend_from_slice(&[0u8; PAYLOAD_ALIGN][..pad]);
            drop(self.buf.split());
        }
        self.buf.extend_from_slice(frame);
        self.buf.split().freeze()
    }

    /// Makes `buf` a chunk with room for `size` bytes: itself or a spare
    /// reclaimed in place when no frame taken from it lives on, else a
    /// fresh one.
    fn next_chunk(&mut self) {
        if self.buf.capacity() == 0 {
            // The first chunk.
            self.buf.reserve(self.size);
            self.allocated += 1;
            return;
        }
        if self.buf.try_reclaim(self.size) {
            return;
        }
        let size = self.size;
        let free = self.spares.iter_mut().position(|c| c.try_reclaim(size));
        let next = match free {
            Some(i) => self.spares.remove(i).unwrap_or_default(),
            None => {
                if self.spares.len() >= self.keep {
                    // Every spare is still in use: let the oldest go.
                    self.spares.pop_front();
                }
                self.allocated += 1;
                BytesMut::with_capacity(size)
            }
        };
        let full = std::mem::replace(&mut self.buf, next);
        self.spares.push_back(full);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn copies_are_exact_and_aligned() {
        let mut arena = RxArena::new();
        for len in [0usize, 1, 15, 16, 17, 100, 4096] {
            let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let copy = arena.copy(&src);
            assert_eq!(&copy[..], &src[..]);
            assert_eq!(copy.as_ptr() as usize % PAYLOAD_ALIGN, 0, "len {len}");
        }
    }

    #[test]
    fn a_released_chunk_is_reused_from_its_start() {
        let mut arena = RxArena::new();
        let first = arena.copy(&[1u8; 64]);
        let start = first.as_ptr();
        drop(first);
        // Enough frames, each dropped at once, to run through several chunks.
        for _ in 0..(4 * CHUNK / 64) {
            drop(arena.copy(&[2u8; 48]));
        }
        let mut seen_start = false;
        for _ in 0..(2 * CHUNK / 64) {
            let f = arena.copy(&[3u8; 48]);
            seen_start |= f.as_ptr() == start;
        }
        assert!(seen_start, "the first chunk was never reclaimed");
    }

    #[test]
    fn frames_living_less_than_the_spares_allocate_no_more_chunks() {
        let mut arena = RxArena::new();
        // Frames dropped a chunk and a half after they were taken, as a
        // backlog queued for the dispatcher is.
        let lag = 3 * CHUNK / 2 / 64;
        let mut live = VecDeque::new();
        let mut warm = 0;
        for i in 0..(40 * CHUNK / 64) {
            if i == 4 * CHUNK / 64 {
                warm = arena.small.allocated;
            }
            live.push_back(arena.copy(&[6u8; 48]));
            if live.len() > lag {
                live.pop_front();
            }
        }
        assert!(warm <= SPARES as u64 + 1, "{warm} chunks while warming up");
        assert_eq!(
            arena.small.allocated, warm,
            "chunks allocated in steady state"
        );
    }

    #[test]
    fn a_held_frame_keeps_its_bytes() {
        let mut arena = RxArena::new();
        let held = arena.copy(&[7u8; 100]);
        for _ in 0..(2 * CHUNK / 100) {
            drop(arena.copy(&[9u8; 100]));
        }
        assert!(held.iter().all(|&b| b == 7));
    }

    #[test]
    fn large_frames_are_copied_whole() {
        let mut arena = RxArena::new();
        for len in [MAX_POOLED + 1, MAX_MEDIUM, MAX_MEDIUM + 1] {
            let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let copy = arena.copy(&big);
            assert_eq!(&copy[..], &big[..]);
            assert_eq!(copy.as_ptr() as usize % PAYLOAD_ALIGN, 0, "len {len}");
        }
    }

    #[test]
    fn medium_frames_reuse_their_chunk_once_released() {
        let mut arena = RxArena::new();
        let first = arena.copy(&[1u8; 64 << 10]);
        let start = first.as_ptr();
        drop(first);
        let mut seen_start = false;
        for _ in 0..(3 * MEDIUM_CHUNK / (64 << 10)) {
            let f = arena.copy(&[2u8; 64 << 10]);
            seen_start |= f.as_ptr() == start;
        }
        assert!(seen_start, "the medium chunk was never reclaimed");
    }

    #[test]
    fn a_held_medium_frame_keeps_its_bytes_and_small_frames_their_chunk() {
        let mut arena = RxArena::new();
        let held = arena.copy(&[7u8; 100 << 10]);
        let small = arena.copy(&[5u8; 100]);
        for _ in 0..(3 * MEDIUM_CHUNK / (100 << 10)) {
            drop(arena.copy(&[9u8; 100 << 10]));
        }
        assert!(held.iter().all(|&b| b == 7));
        assert!(small.iter().all(|&b| b == 5));
    }
}
