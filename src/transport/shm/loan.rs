//! Loans over shared memory: a buffer leased from the link's pooled area
//! ([`super::pool`]) and handed to the caller to fill, then sent in place.
//!
//! The payload starts [`LOAN_HEAD`] bytes into the segment's data area (page
//! aligned for the caller and for the receiving handler). Sending writes the
//! frame's header and name into the room in front of it, so that the frame
//! starts at `LOAN_HEAD - payload_offset(name)` (16-byte aligned), and
//! publishes a reference with that offset: the payload itself is never
//! copied. The receiver checks the reference like any other (bounds,
//! alignment, generation), so the wire is the pooled path's own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::link::ShmLink;
use super::pool::Grow;
use super::pool::{Lease, Segment, TxPool};
use crate::client::loan::Loan;
use crate::error::{Error, Result};
use crate::transport::{OutFrame, PayloadRef};
use crate::wire;

/// Room in front of a loaned payload for the frame header and handler name
/// (a page: the payload stays page aligned; names are at most 256 bytes).
pub(crate) const LOAN_HEAD: usize = 4096;

/// A pooled segment lent to a caller. Returned to the pool when dropped,
/// as sent (the receiver now owns it until it returns this generation) or
/// unsent (free again at once).
pub(crate) struct ShmLoan {
    pool: Arc<TxPool>,
    seg: Arc<Segment>,
    id: u32,
    gen_: u64,
    len: usize,
    /// A send of this loan is under way or done: no second one writes.
    claimed: AtomicBool,
    /// Its reference was committed to the ring.
    published: AtomicBool,
}

impl ShmLoan {
    /// The payload bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `LOAN_HEAD + len` fits the segment (checked when lent).
        // The segment is leased to this loan (the pool's slot is busy until
        // `drop`), so no other writer of this process touches it, and the
        // receiver only reads it after a published reference; a same-uid
        // peer breaking that is inside the trust model (docs/security.md).
        unsafe { std::slice::from_raw_parts(self.seg.data_ptr().add(LOAN_HEAD), self.len) }
    }

    /// The payload bytes, to fill.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only slice of
        // this process into the payload while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.seg.data_ptr().add(LOAN_HEAD), self.len) }
    }

    /// Shortens the payload.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn lent_by(&self, link: &ShmLink) -> bool {
        Arc::ptr_eq(&self.pool, &link.pool)
    }
}

impl Drop for ShmLoan {
    fn drop(&mut self) {
        // Acquire: pairs with the Release store after the commit in `send_loaned`.
        let published = self.published.load(Ordering::Acquire);
        self.pool.give_back(self.id, self.gen_, published);
    }
}

/// Undoes a claim unless the send completed (an error, or the send future
/// dropped half way: the loan may still be sent by copy or dropped).
struct Claim<'a>(&'a ShmLoan);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // Acquire: pairs with the Release store after the commit.
        if !self.0.published.load(Ordering::Acquire) {
            // Release: our header writes happen before a later claim's.
            self.0.claimed.store(false, Ordering::Release);
        }
    }
}

impl ShmLink {
    /// Where a loan of `len` bytes comes from: `Ok(Some(room))` from the
    /// pool, a segment of `room` data bytes; `Ok(None)` the heap (small
    /// enough for a ring record, or larger than the whole area).
    fn loan_room(&self, len: usize) -> Result<Option<usize>> {
        let frame = wire::HEADER_LEN.saturating_add(len);
        if frame > self.peer_max_frame {
            return Err(Error::PayloadTooLarge {
                size: frame,
                max: self.peer_max_frame,
            });
        }
        if crate::transport::PeerLink::is_closed(self) {
            return Err(Error::PeerLost(self.peer));
        }
        let room = LOAN_HEAD.saturating_add(len);
        Ok((frame > self.max_record && self.pool.fits_cap(room)).then_some(room))
    }

    fn lent(&self, lease: Lease<'_>, len: usize) -> Loan {
        let (id, gen_, seg) = lease.detach();
        Loan::shared(ShmLoan {
            pool: Arc::clone(&self.pool),
            seg,
            id,
            gen_,
            len,
            claimed: AtomicBool::new(false),
            published: AtomicBool::new(false),
        })
    }

    /// Lends a buffer of `len` payload bytes if one is free now (pooled
    /// shared memory for a payload too big for a ring record that fits the
    /// area, else the heap), or `Ok(None)`.
    pub(crate) fn try_lend(&self, len: usize) -> Result<Option<Loan>> {
        let Some(room) = self.loan_room(len)? else {
            return Ok(Some(Loan::heap(len)));
        };
        let lease = self.pool.try_lease_with(room, Grow::Warm)?;
        Ok(lease.map(|lease| self.lent(lease, len)))
    }

    /// [`Self::try_lend`], waiting while no segment is free.
    pub(crate) async fn lend(&self, len: usize) -> Result<Loan> {
        let Some(room) = self.loan_room(len)? else {
            return Ok(Loan::heap(len));
        };
        let lease = self.lease(room).await?;
        Ok(self.lent(lease, len))
    }

    /// Sends `frame` (its header already made monotonic): a loan this link
    /// lent goes in place, anything else through [`ShmLink::write`].
    pub(crate) async fn write_frame(&self, frame: &OutFrame<'_>) -> Result<()> {
        if let Some(shm) = self.lent_here(frame)
            // Acquire: pairs with the Release store in `Claim::drop`.
            && !shm.claimed.swap(true, Ordering::Acquire)
        {
            return self.send_loaned(frame, shm).await;
        }
        self.write(super::large::Source::Frame(frame)).await
    }

    /// The frame's payload when it is a loan this link can send in place.
    pub(crate) fn lent_here<'f>(&self, frame: &OutFrame<'f>) -> Option<&'f ShmLoan> {
        let PayloadRef::Loan(loan) = frame.payload else {
            return None;
        };
        let shm = loan.as_shared()?;
        let fits = wire::payload_offset(frame.name.len()) <= LOAN_HEAD;
        (shm.lent_by(self) && fits).then_some(shm)
    }

    /// Writes the header in front of the loaned payload and publishes it.
    async fn send_loaned(&self, frame: &OutFrame<'_>, loan: &ShmLoan) -> Result<()> {
        let claim = Claim(loan);
        let (start, len) = self.write_loan_head(frame, loan)?;
        self.publish_ref(loan.id, loan.gen_, start, len).await?;
        // Release: pairs with the Acquire loads in `Drop`s.
        loan.published.store(true, Ordering::Release);
        drop(claim);
        Ok(())
    }

    /// `send_loaned` without waiting: `Ok(false)` (loan untouched) when the
    /// reference cannot go out right now.
    pub(crate) fn try_send_loaned(&self, frame: &OutFrame<'_>, loan: &ShmLoan) -> Result<bool> {
        // Acquire: pairs with the Release store in `Claim::drop`.
        if loan.claimed.swap(true, Ordering::Acquire) {
            return Ok(false);
        }
        let claim = Claim(loan);
        let (start, len) = self.write_loan_head(frame, loan)?;
        if !self.try_publish_ref(loan.id, loan.gen_, start, len)? {
            return Ok(false);
        }
        // Release: pairs with the Acquire loads in `Drop`s.
        loan.published.store(true, Ordering::Release);
        drop(claim);
        Ok(true)
    }

    /// Encodes the frame's header in front of the loaned payload; returns
    /// where the frame starts in the segment and its length.
    fn write_loan_head(&self, frame: &OutFrame<'_>, loan: &ShmLoan) -> Result<(usize, usize)> {
        let offset = wire::payload_offset(frame.name.len());
        let len = offset + loan.len;
        if len > self.peer_max_frame {
            return Err(Error::PayloadTooLarge {
                size: len,
                max: self.peer_max_frame,
            });
        }
        let start = LOAN_HEAD - offset;
        // SAFETY: `[start, LOAN_HEAD)` lies in the leased segment, in front
        // of the payload, and is never handed to the caller; the claim
        // makes this the only writer of it.
        let head =
            unsafe { std::slice::from_raw_parts_mut(loan.seg.data_ptr().add(start), offset) };
        wire::encode_head(&frame.header, frame.name, loan.len, head);
        Ok((start, len))
    }
}
