//! A lock-free single-producer single-consumer byte ring in shared memory, woken by
//! eventfd doorbells.
//!
//! # Model
//!
//! A [`Region`] (a sealed `memfd`, or heap memory for tests) holds one or more rings, each
//! a 512-byte header followed by a power-of-two data area ([`layout`]). A ring carries
//! variable-length **records**: a 16-byte header and a payload, every record start 16-byte
//! aligned so archives (e.g. rkyv) can be read in place. When a record does not fit before
//! the end of the buffer, a PAD record fills the rest and the record starts at offset 0.
//!
//! The [`Producer`] reserves a record ([`Producer::try_reserve`] → [`WriteGrant`]),
//! writes it in place, and commits it (possibly shorter than reserved). The [`Consumer`]
//! reads the next record ([`Consumer::try_read`] → [`ReadGrant`]) and releases it. Both
//! also have blocking (`*_blocking`) and async (`reserve`, `read`; feature `async`)
//! variants that wait per a [`WaitPolicy`] and park on [`Doorbell`]s.
//!
//! Positions are free-running `u64` byte counts (`offset = pos & (capacity - 1)`). Each
//! side keeps its own index in private memory and caches the other's, reloading it only
//! when the cached view says full (producer) or empty (consumer).
//!
//! # Orderings
//!
//! | label | where | operation | ordering | pairs with |
//! |---|---|---|---|---|
//! | I1 | [`init_ring`] | store `version` (last) | Release | A1 |
//! | A1 | attach | load `version` (first) | Acquire | I1 |
//! | P1 | producer, looks full | load `head` | Acquire | C3 |
//! | P3 | producer commit | store `tail` | Release | C1 |
//! | C1 | consumer, looks empty | load `tail` | Acquire | P3 |
//! | C3 | consumer publishes its head (lazily) | store `head` | Release | P1 |
//! | X1 | close | store closed flag | Release | X2 |
//! | X2 | consumer, empty | load closed flags, then C1 again | Acquire | X1 |
//! | W1/W2 | before parking | store waiter flag; `fence(SeqCst)`; re-check | SeqCst fence | N1/N2 |
//! | N1/N2 | after P3 / C3 (non-`Spin`) | `fence(SeqCst)`; load peer's waiter flag | SeqCst fence | W1/W2 |
//!
//! Record headers and payloads are plain (or relaxed-atomic) accesses ordered by P3→C1
//! and C3→P1.
//!
//! # Trust model
//!
//! The peer is assumed to be *buggy or hostile in values* but not able to break memory
//! safety through the indices: every value read from shared memory is range-checked
//! (`tail - head <= capacity`, alignment, record length and kind, PAD extent, the record's
//! own position; magic, version and geometry at attach) and a violation is a
//! [`RingError::Corrupt`], never a panic or an out-of-bounds access. Header fields are
//! only ever accessed as atomics. Payload bytes are the exception: [`ReadGrant::payload`]
//! and [`WriteGrant`]'s `DerefMut` are in-place views, sound as long as the peer follows
//! the protocol (it cannot otherwise corrupt *our* indices, but it can change the bytes
//! under the view). For a peer you do not trust that far, copy out with
//! [`ReadGrant::copy_to_slice`] / [`ReadGrant::to_vec`] and validate the copy. memfds are
//! sealed against shrinking and growing, so a peer cannot make the mapping SIGBUS.
//!
//! A process killed with SIGKILL cannot set its closed flag: whoever learns of its death
//! (e.g. a Unix socket reaching EOF) calls [`RingCloser::close`], which wakes any waiter.
//!
//! # Example: two rings (one per direction) in one memfd
//!
//! ```
//! use shm_ring::{Bells, Consumer, Producer, Region, RegionLayout, RingConfig, init_ring};
//!
//! let cfg = RingConfig::new(1 << 16)?;
//! let layout = RegionLayout::new(&[cfg, cfg]);
//! let region = Region::memfd("link", layout.size())?;
//! let (a, b) = (layout.offsets()[0], layout.offsets()[1]);
//! init_ring(&region, a, cfg)?;
//! init_ring(&region, b, cfg)?;
//! // Pass region.fd() and the four eventfds to the peer; it attaches with
//! // Region::from_fd + Bells::from_fds and the same offsets. Here, one process:
//! let (bells_a, bells_b) = (Bells::new()?, Bells::new()?);
//! let mut tx = Producer::attach(&region, a, bells_a.clone())?;
//! let mut rx = Consumer::attach(&region, a, bells_a)?;
//! let _reverse = (Producer::attach(&region, b, bells_b.clone())?, Consumer::attach(&region, b, bells_b)?);
//!
//! let mut g = tx.try_reserve(100)?;
//! g[..5].copy_from_slice(b"hello");
//! g.commit_len(5); // committed shorter than reserved
//! let r = rx.try_read()?;
//! assert_eq!(r.payload(), b"hello");
//! r.release();
//! # Ok::<(), shm_ring::RingError>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

mod consumer;
mod core;
mod counters;
mod doorbell;
mod error;
#[cfg(not(loom))]
pub mod fdpass;
pub mod layout;
mod producer;
mod record;
mod region;
mod spin;
mod sync;
mod wait;

pub use crate::consumer::{Consumer, ReadGrant};
pub use crate::core::{RingCloser, init_ring};
pub use crate::counters::{HandleCounters, HandleStats};
pub use crate::doorbell::{Bells, Doorbell};
pub use crate::error::{Result, RingError};
pub use crate::layout::{RegionLayout, RingConfig, record_footprint};
pub use crate::producer::{Producer, WriteGrant};
pub use crate::region::Region;
pub use crate::spin::{SpinStep, Spinner};
pub use crate::wait::WaitPolicy;

use std::sync::Arc;

/// A single ring in a fresh private heap region, with fresh doorbells: for in-process
/// use and tests.
pub fn heap_pair(config: RingConfig) -> Result<(Producer, Consumer)> {
    let region = Region::heap(RegionLayout::new(&[config]).size())?;
    init_ring(&region, 0, config)?;
    pair_at(&region, 0)
}

/// Attaches both handles of the (initialised) ring at `offset`, sharing fresh doorbells.
pub fn pair_at(region: &Arc<Region>, offset: usize) -> Result<(Producer, Consumer)> {
    let bells = Bells::new()?;
    let producer = Producer::attach(region, offset, bells.clone())?;
    let consumer = Consumer::attach(region, offset, bells)?;
    Ok((producer, consumer))
}
