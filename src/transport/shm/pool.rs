//! The pooled large-buffer area of one link direction.
//!
//! The sender owns a set of **segments**: sealed memfds (shrink and grow
//! sealed, so a mapping can never SIGBUS), each holding one frame at a time
//! after a one-page control header. A segment is created on first need,
//! passed to the receiver once (its descriptor over the rendezvous socket,
//! announced by a ring record), then reused for every later frame that fits.
//! A frame travels as a small ring record (segment id, generation, offset,
//! length), so its order with small frames holds and nothing but that record
//! crosses per message.
//!
//! Ownership of a segment alternates: the sender writes a frame and publishes
//! generation `g`; the receiver reads it in place and, when the last view is
//! dropped, stores `g` in the segment's `released` word. The sender reuses a
//! segment only when `released` equals the generation it last sent, so a
//! buffer the receiver still holds is never overwritten. The receiver checks
//! every reference against what it mapped (known id, bounds, alignment, the
//! exact next generation, not already held) before reading a byte.
//!
//! Among free segments the sender takes the one it published last: its
//! lines are the likeliest still in cache, and a sender rotating over more
//! large segments than the cache holds copies at memory speed, not cache
//! speed (measured: docs/performance.md, issue 11). For the same reason it
//! keeps at most [`PIPELINE_LARGE`] segments of 4 MiB and more in flight
//! before waiting a while for one to come back. Pages are never dropped on
//! return: re-faulting a 16 MiB segment costs ten times its copy here.
//!
//! The sender's area grows up to a cap; when the cap is reached, free
//! segments of the wrong size are retired (announced, then unmapped) and a
//! sender that finds nothing free waits (backpressure). When a link ends,
//! both sides drop their mappings; the kernel frees a memfd with its last
//! mapping, so a dead peer's buffers are reclaimed with the link.

mod rx;
mod segment;
mod tx;

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use rx::{Bell, Held, Ref, RxPool};
pub(crate) use segment::{Segment, map_peer_segment};
pub(crate) use tx::{Announce, Grow, Lease, TxPool};

/// Bytes before a segment's data: the control words (one page, so frames
/// start page aligned).
pub(crate) const SEG_HEADER: usize = 4096;
/// Smallest segment data capacity.
const MIN_SEGMENT: usize = 1 << 20;
/// Most segments one receiver maps per link direction.
pub(crate) const MAX_SEGMENTS: usize = 256;
/// Segments of a size that may be in flight (sent, not yet returned) before
/// a sender prefers waiting for a returned one (warm pages) over mapping a
/// fresh one: enough to keep writer and reader both busy.
pub(crate) const PIPELINE: usize = 3;
/// Frames from this size up keep at most [`PIPELINE_LARGE`] segments in
/// flight before a sender waits for a warm one: a larger set of them no
/// longer fits the share of the last-level cache a process gets here.
pub(crate) const LARGE_FRAME: usize = 4 << 20;
/// Segments in flight for frames of [`LARGE_FRAME`] bytes and more: one
/// being read, one being written.
pub(crate) const PIPELINE_LARGE: usize = 2;

/// Segments of a size that may be in flight before a sender prefers a
/// returned one for a frame of `len` bytes.
pub(crate) fn pipeline(len: usize) -> usize {
    if len >= LARGE_FRAME {
        PIPELINE_LARGE
    } else {
        PIPELINE
    }
}

/// Data capacity of a segment made for a frame of `len` bytes: a multiple
/// of an eighth of the next power of two (at most 12.5 % unused), >= 1 MiB.
pub(crate) fn capacity_for(len: usize) -> usize {
    let len = len.max(MIN_SEGMENT);
    let step = (len.next_power_of_two() / 8).max(SEG_HEADER);
    len.next_multiple_of(step)
}

/// Process-wide pool levels (all links, both directions), for tests and
/// monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Segments this process created to send from.
    pub tx_segments: u64,
    /// Bytes of those segments (mapped; pages are touched only as written).
    pub tx_bytes: u64,
    /// Segments of peers this process maps to receive from.
    pub rx_segments: u64,
    /// Bytes of those segments.
    pub rx_bytes: u64,
    /// Received frames whose views are still held here.
    pub rx_held: u64,
}

static TX_SEGMENTS: AtomicU64 = AtomicU64::new(0);
static TX_BYTES: AtomicU64 = AtomicU64::new(0);
static RX_SEGMENTS: AtomicU64 = AtomicU64::new(0);
static RX_BYTES: AtomicU64 = AtomicU64::new(0);
static RX_HELD: AtomicU64 = AtomicU64::new(0);

/// The current pool levels of this process.
pub fn pool_usage() -> PoolUsage {
    // Relaxed: statistics, not synchronisation.
    PoolUsage {
        tx_segments: TX_SEGMENTS.load(Ordering::Relaxed),
        tx_bytes: TX_BYTES.load(Ordering::Relaxed),
        rx_segments: RX_SEGMENTS.load(Ordering::Relaxed),
        rx_bytes: RX_BYTES.load(Ordering::Relaxed),
        rx_held: RX_HELD.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
