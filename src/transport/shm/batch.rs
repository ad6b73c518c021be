//! A batch of frames written into the ring together.
//!
//! A prepared sender's batch ([`crate::OneWaySender::send_batch`]) takes the
//! link's producer once, reads the clock once for every frame's deadline,
//! writes the frames back to back and publishes them to the reader together:
//! the ring holds its commits back ([`shm_ring::Producer::hold`]), so the
//! whole batch costs one store of the ring's tail and at most one doorbell.
//! A reader spinning on the ring meanwhile sees the batch at once, as one run
//! of records. Nothing waits here: a frame that does not fit now (ring full,
//! a large frame, a loan) ends the batch, and the caller sends it the regular
//! way, which waits for room within its deadline.

use super::large::Source;
use super::link::{ShmLink, Wrote};
use crate::error::{Error, Result};
use crate::runtime::deadline;
use crate::transport::OutFrame;

impl ShmLink {
    /// See [`crate::transport::PeerLink::try_send_batch`].
    pub(crate) fn write_batch<'f>(
        &self,
        frame: &dyn Fn(usize) -> OutFrame<'f>,
        from: usize,
        to: usize,
    ) -> Result<usize> {
        self.check_open()?;
        // Another sender writes now: the caller's regular send waits its turn.
        let Ok(mut tx) = self.tx.try_lock() else {
            return Ok(0);
        };
        let mut now_us = None;
        tx.producer.hold();
        let mut i = from;
        let failed = loop {
            if i == to {
                break None;
            }
            let mut f = frame(i);
            if self.lent_here(&f).is_some() {
                // A loan goes out in place, one by one (`PeerLink::send`).
                break None;
            }
            // Both ends share this host's clock (see `runtime::deadline`).
            deadline::to_monotonic_from(&mut f.header, &mut now_us);
            match self.write_now(&mut tx, Source::Frame(&f)) {
                Ok(Wrote::Done) => i += 1,
                Ok(Wrote::Full | Wrote::Large) => break None,
                Err(e) => break Some(e),
            }
        };
        tx.producer.flush();
        batch_outcome(failed, i - from)
    }
}

/// What a batch that wrote `sent` frames reports: an error only when it
/// stopped at its first frame (a later one is reported when the caller
/// retries it as the next batch's first).
pub(super) fn batch_outcome(failed: Option<Error>, sent: usize) -> Result<usize> {
    match failed {
        Some(e) if sent == 0 => Err(e),
        _ => Ok(sent),
    }
}
