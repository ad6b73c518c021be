//! The ring's error type.

/// Everything that can go wrong on a ring.
///
/// `Full`, `Empty` and `Timeout` are flow-control outcomes: retry later (or use a waiting
/// variant). `Closed` is final. `Corrupt`, `VersionMismatch` and `BadLayout` mean the shared
/// memory (or the caller's configuration) is not what the protocol allows: tear the link
/// down. None of them is ever produced by a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// Not enough free space for the requested record (try-variants only).
    #[error("ring is full")]
    Full,
    /// No committed record is available (try-variants only).
    #[error("ring is empty")]
    Empty,
    /// The ring was closed by either side, by a [`RingCloser`](crate::RingCloser), or on
    /// drop of the peer handle. A consumer sees this only after draining every committed
    /// record.
    #[error("ring is closed")]
    Closed,
    /// A blocking wait reached its deadline.
    #[error("timed out waiting on the ring")]
    Timeout,
    /// The record is larger than the ring's configured maximum.
    #[error("record of {len} bytes exceeds the ring's maximum of {max} bytes")]
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// The ring's maximum payload length.
        max: usize,
    },
    /// A value read from shared memory breaks the protocol's invariants.
    #[error("corrupt ring: {field} = {value:#x}")]
    Corrupt {
        /// Which shared field or record-header field was wrong.
        field: &'static str,
        /// The offending value as read.
        value: u64,
    },
    /// The header carries a layout version this build does not speak.
    #[error("ring layout version {found} is not supported (this build speaks {expected})")]
    VersionMismatch {
        /// Version found in the header.
        found: u32,
        /// Version this build writes and accepts.
        expected: u32,
    },
    /// The region, offset or configuration cannot hold a valid ring.
    #[error("bad ring layout: {reason} ({value:#x})")]
    BadLayout {
        /// What is wrong.
        reason: &'static str,
        /// The offending value.
        value: u64,
    },
    /// Another handle already claims this side of the ring.
    #[error("the {side} side of this ring is already attached")]
    AlreadyAttached {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
    },
    /// A system call failed (memfd, mmap, eventfd, poll, tokio registration).
    #[error("ring I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<nix::errno::Errno> for RingError {
    fn from(e: nix::errno::Errno) -> Self {
        RingError::Io(e.into())
    }
}

/// Shorthand for `Result<T, RingError>`.
pub type Result<T, E = RingError> = std::result::Result<T, E>;

/// Shorthand for building a [`RingError::Corrupt`].
pub(crate) fn corrupt<T>(field: &'static str, value: u64) -> Result<T> {
    Err(RingError::Corrupt { field, value })
}

/// Shorthand for building a [`RingError::BadLayout`].
pub(crate) fn bad_layout<T>(reason: &'static str, value: u64) -> Result<T> {
    Err(RingError::BadLayout { reason, value })
}
