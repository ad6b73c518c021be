//! Frames made of a head encoded ahead ([`EncodedHead`]): a prepared
//! sender's messages. The head is copied into the ring record and patched
//! (message id, flags, deadline, payload length), the payload is copied or
//! archived right behind it, and the record is committed: no header encoded
//! field by field, no `OutFrame` built and copied from call to call.
//!
//! Everything but the fast case goes the regular way ([`ShmLink::try_write`]
//! through `PeerLink::try_send`): a loan, a frame too large for a record.

use shm_ring::RingError;

use super::link::{ShmLink, Tx, Wrote, next_guess};
use crate::codec::DoesNotFit;
use crate::error::{Error, Result};
use crate::ids::MessageId;
use crate::runtime::deadline;
use crate::transport::{OutFrame, PayloadRef, PeerLink};
use crate::wire::{EncodedHead, flags};

/// The flags (but `RAW`) and the deadline or budget of the frames of one
/// head written at one moment.
#[derive(Clone, Copy)]
pub(super) struct Stamp {
    flags: u16,
    timeout_us: u64,
}

impl Stamp {
    /// Both ends share this host's clock (see `runtime::deadline`): the
    /// budget travels as an absolute deadline, as `try_send` writes it. The
    /// clock is read once, for every frame stamped with the result.
    pub(super) fn now(head: &EncodedHead) -> Self {
        let mut header = *head.header();
        deadline::to_monotonic(&mut header);
        Self {
            flags: header.flags,
            timeout_us: header.timeout_us,
        }
    }
}

/// Where the frame's payload comes from, once loans are sent elsewhere.
#[derive(Clone, Copy)]
pub(super) enum Body<'a> {
    Raw(&'a [u8]),
    Archive(&'a dyn crate::codec::Payload),
}

impl ShmLink {
    /// See [`PeerLink::try_send_encoded`]: the frame of `head`, message id
    /// `id` and `payload`, written now or `Full`.
    pub(crate) fn try_write_encoded(
        &self,
        head: &EncodedHead,
        id: MessageId,
        payload: PayloadRef<'_>,
    ) -> Result<()> {
        let body = match payload {
            PayloadRef::Bytes(b) => Body::Raw(b),
            PayloadRef::Archive(p) => Body::Archive(p),
            PayloadRef::Loan(_) => return self.try_send(Self::frame(head, id, payload)),
        };
        self.check_open()?;
        let wrote = {
            let mut tx = self.tx.try_lock().map_err(|_| Error::Full)?;
            self.write_encoded(&mut tx, head, Stamp::now(head), id, body)?
        };
        match wrote {
            Wrote::Done => Ok(()),
            Wrote::Full => Err(Error::Full),
            // Through the pooled area or a memfd of its own, as any frame.
            Wrote::Large => self.try_send(Self::frame(head, id, payload)),
        }
    }

    /// The frame as the regular path takes it.
    fn frame<'a>(head: &'a EncodedHead, id: MessageId, payload: PayloadRef<'a>) -> OutFrame<'a> {
        let raw = !matches!(payload, PayloadRef::Archive(_));
        OutFrame {
            header: head.header_for(id, raw),
            name: head.name(),
            payload,
        }
    }

    /// Writes one frame of `head` into the ring without waiting, as
    /// [`ShmLink::write_now`] does for an `OutFrame` (same `Full` and
    /// `Large` outcomes, same size checks and archive size guesses).
    pub(super) fn write_encoded(
        &self,
        tx: &mut Tx,
        head: &EncodedHead,
        stamp: Stamp,
        id: MessageId,
        body: Body<'_>,
    ) -> Result<Wrote> {
        let flags = stamp.flags
            | if matches!(body, Body::Raw(_)) {
                flags::RAW
            } else {
                0
            };
        let at = head.len();
        let max = self.max_record;
        match body {
            Body::Raw(bytes) => {
                let len = at + bytes.len();
                if len > max {
                    return Ok(Wrote::Large);
                }
                self.check_size(len)?;
                let mut grant = match tx.producer.try_reserve(len) {
                    Ok(grant) => grant,
                    Err(RingError::Full) => {
                        tx.want = len;
                        return Ok(Wrote::Full);
                    }
                    Err(e) => return Err(self.ring_error(e)),
                };
                head.write(&mut grant, id, flags, stamp.timeout_us, bytes.len());
                grant[at..].copy_from_slice(bytes);
                grant.commit();
                self.counters.record_sent_by_sole_writer(len);
                Ok(Wrote::Done)
            }
            Body::Archive(value) => {
                let mut len = tx.guess.max(at);
                loop {
                    let mut grant = match tx.producer.try_reserve(len) {
                        Ok(grant) => grant,
                        Err(RingError::Full) => {
                            tx.want = len;
                            return Ok(Wrote::Full);
                        }
                        Err(e) => return Err(self.ring_error(e)),
                    };
                    match value.encode_into_with(&mut grant[at..], &mut tx.arena) {
                        Ok(n) => {
                            let written = at + n;
                            // Dropped uncommitted: an archive over the
                            // peer's limit never reaches it.
                            self.check_size(written)?;
                            head.write(&mut grant, id, flags, stamp.timeout_us, n);
                            grant.commit_len(written);
                            self.counters.record_sent_by_sole_writer(written);
                            tx.guess = next_guess(written, max);
                            return Ok(Wrote::Done);
                        }
                        Err(DoesNotFit) if len < max => len = (len * 4).min(max),
                        Err(DoesNotFit) => return Ok(Wrote::Large),
                    }
                }
            }
        }
    }
}

impl ShmLink {
    /// See [`PeerLink::try_send_encoded_batch`]: the frames written back to
    /// back under one lock, with one clock read, published to the reader
    /// together (one store of the ring's tail, at most one doorbell), as
    /// [`ShmLink::write_batch`] does for `OutFrame`s. A frame that does not
    /// fit now (ring full, too large, a loan) ends the batch.
    pub(crate) fn write_encoded_batch<'f>(
        &self,
        head: &EncodedHead,
        next_id: &dyn Fn() -> MessageId,
        payload: &dyn Fn(usize) -> PayloadRef<'f>,
        from: usize,
        to: usize,
    ) -> Result<usize> {
        self.check_open()?;
        // Another sender writes now: the caller's regular send waits its turn.
        let Ok(mut tx) = self.tx.try_lock() else {
            return Ok(0);
        };
        let stamp = Stamp::now(head);
        tx.producer.hold();
        let mut i = from;
        let failed = loop {
            let body = match (i < to).then(|| payload(i)) {
                Some(PayloadRef::Bytes(b)) => Body::Raw(b),
                Some(PayloadRef::Archive(p)) => Body::Archive(p),
                // The end, or a loan (sent in place, one by one).
                Some(PayloadRef::Loan(_)) | None => break None,
            };
            match self.write_encoded(&mut tx, head, stamp, next_id(), body) {
                Ok(Wrote::Done) => i += 1,
                Ok(Wrote::Full | Wrote::Large) => break None,
                Err(e) => break Some(e),
            }
        };
        tx.producer.flush();
        super::batch::batch_outcome(failed, i - from)
    }
}
