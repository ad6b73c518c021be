//! Loans: a writable buffer for a large payload, lent by the link to a peer,
//! that the caller fills in place (a tensor's bytes, by `copy_from_slice` or
//! by a library writing into it) and then sends with no further copy.
//!
//! ```text
//! let mut buf = client.loan(peer, len).await?;   // shared memory on shm links
//! buf.copy_from_slice(tensor_bytes);
//! client.active_message("store")?.loaned(buf).send(peer).await?;
//! ```
//!
//! Over shared memory, a payload too big for a ring record is lent straight
//! from the link's pooled large-buffer area: sending it writes only the frame
//! header in front of it and passes a reference, and the peer's handler reads
//! it in place (page aligned). Everywhere else (TCP, in-process, custom
//! transports, a payload small enough for a ring record, a payload larger
//! than the whole pooled area, or a loan sent to another peer than the one it
//! was lent for) a loan is a private heap buffer, and sending it copies it
//! once, as a raw payload would be.

use std::fmt;
use std::ops::{Deref, DerefMut};

use rkyv::util::AlignedVec;
use tokio::time::Instant;

use crate::client::NetworkClient;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::transport::shm::loan::ShmLoan;

/// Alignment of a loan's first byte: enough for any tensor element type and
/// for SIMD loads (shared loans are page aligned).
pub const LOAN_ALIGN: usize = 64;

/// A writable payload buffer lent for one message (see the module docs).
///
/// Fill it through `DerefMut<Target = [u8]>`, then hand it to
/// [`MessageBuilder::loaned`](crate::MessageBuilder::loaned). The bytes of a
/// shared loan are not zeroed (they may hold an earlier message of this
/// process): write every byte you send. Dropping a loan unsent returns its
/// buffer to the pool. Cloning one copies its bytes into a heap loan.
pub struct Loan {
    buf: Buf,
}

enum Buf {
    /// Private memory, copied when sent.
    Heap(AlignedVec<LOAN_ALIGN>),
    /// A pooled shared-memory buffer of one link.
    Shared(ShmLoan),
}

impl Loan {
    /// A heap loan of `len` zeroed bytes, 64-byte aligned.
    pub fn heap(len: usize) -> Self {
        let mut bytes = AlignedVec::with_capacity(len);
        bytes.resize(len, 0);
        Self {
            buf: Buf::Heap(bytes),
        }
    }

    pub(crate) fn shared(loan: ShmLoan) -> Self {
        Self {
            buf: Buf::Shared(loan),
        }
    }

    /// Whether the buffer lies in a link's shared memory (sent without a
    /// copy to the peer it was lent for).
    pub fn is_shared(&self) -> bool {
        matches!(self.buf, Buf::Shared(_))
    }

    /// The shared-memory buffer, if that is what this loan is.
    pub(crate) fn as_shared(&self) -> Option<&ShmLoan> {
        match &self.buf {
            Buf::Shared(loan) => Some(loan),
            Buf::Heap(_) => None,
        }
    }

    /// Shortens the payload to `len` bytes (no effect if it is not longer):
    /// lend for the most you may write, send what you wrote.
    pub fn truncate(&mut self, len: usize) {
        match &mut self.buf {
            Buf::Heap(bytes) if bytes.len() > len => bytes.resize(len, 0),
            Buf::Heap(_) => {}
            Buf::Shared(loan) => loan.truncate(len),
        }
    }
}

impl Deref for Loan {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.buf {
            Buf::Heap(bytes) => bytes,
            Buf::Shared(loan) => loan.bytes(),
        }
    }
}

impl DerefMut for Loan {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Buf::Heap(bytes) => bytes,
            Buf::Shared(loan) => loan.bytes_mut(),
        }
    }
}

impl Clone for Loan {
    /// A heap loan holding a copy of the bytes.
    fn clone(&self) -> Self {
        let mut copy = Self::heap(self.len());
        copy.copy_from_slice(self);
        copy
    }
}

impl fmt::Debug for Loan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl NetworkClient {
    /// Lends a writable buffer of `len` bytes for a payload to `peer` (see
    /// [`Loan`]): in the link's shared memory when the peer is reached over
    /// shared memory and the payload is too big for a ring record, else on
    /// the heap. Waits, within the client's default timeout, while the
    /// link's pooled area is full and every buffer is still held by the
    /// peer (backpressure), then fails with `Timeout`.
    pub async fn loan(&self, peer: InstanceId, len: usize) -> Result<Loan> {
        if !self.is_admitting() {
            return Err(Error::ShuttingDown);
        }
        if len > self.limits.max_payload {
            return Err(Error::PayloadTooLarge {
                size: len,
                max: self.limits.max_payload,
            });
        }
        let link = self.link(peer)?;
        // Without waiting first: the common case costs no boxed future.
        if let Some(loan) = link.try_loan(len)? {
            return Ok(loan);
        }
        let timeout = self.default_timeout();
        tokio::time::timeout_at(Instant::now() + timeout, link.loan(len))
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }
}

// A loan is filled on one task or thread and sent from another.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Loan>();
};
