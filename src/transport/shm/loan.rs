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
use super::pool::Segment;
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
    link: Arc<ShmLink>,
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
        std::ptr::eq(Arc::as_ptr(&self.link), link)
    }
}

impl Drop for ShmLoan {
    fn drop(&mut self) {
        // Acquire: pairs with the Release store after the commit in `send_loaned`.
        let published = self.published.load(Ordering::Acquire);
        self.link.pool.give_back(self.id, self.gen_, published);
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
    /// Lends a buffer of `len` payload bytes: pooled shared memory when the
    /// payload is too big for a ring record and fits the area, else the heap.
    pub(crate) async fn lend(self: Arc<Self>, len: usize) -> Result<Loan> {
        let frame = wire::HEADER_LEN.saturating_add(len);
        if frame > self.peer_max_frame {
            return Err(Error::PayloadTooLarge {
                size: frame,
                max: self.peer_max_frame,
            });
        }
        let room = LOAN_HEAD + len;
        if frame <= self.max_record || !self.pool.fits_cap(room) {
            return Ok(Loan::heap(len));
        }
        if crate::transport::PeerLink::is_closed(&*self) {
            return Err(Error::PeerLost(self.peer));
        }
        let (id, gen_, seg) = self.lease(room).await?.detach();
        Ok(Loan::shared(ShmLoan {
            link: self,
            seg,
            id,
            gen_,
            len,
            claimed: AtomicBool::new(false),
            published: AtomicBool::new(false),
        }))
    }

    /// Sends `frame` (its header already made monotonic): a loan this link
    /// lent goes in place, anything else through [`ShmLink::write`].
    pub(crate) async fn write_frame(&self, frame: &OutFrame<'_>) -> Result<()> {
        if let PayloadRef::Loan(loan) = frame.payload
            && let Some(shm) = loan.as_shared()
            && shm.lent_by(self)
            && wire::payload_offset(frame.name.len()) <= LOAN_HEAD
            // Acquire: pairs with the Release store in `Claim::drop`.
            && !shm.claimed.swap(true, Ordering::Acquire)
        {
            return self.send_loaned(frame, shm).await;
        }
        self.write(super::large::Source::Frame(frame)).await
    }

    /// Writes the header in front of the loaned payload and publishes it.
    async fn send_loaned(&self, frame: &OutFrame<'_>, loan: &ShmLoan) -> Result<()> {
        let claim = Claim(loan);
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
        self.publish_ref(loan.id, loan.gen_, start, len).await?;
        // Release: pairs with the Acquire loads in `Drop`s.
        loan.published.store(true, Ordering::Release);
        drop(claim);
        Ok(())
    }
}
