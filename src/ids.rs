//! Identifiers: process instances, messages, handler names.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identity of one running manager (one process incarnation).
///
/// A fresh random id is drawn every time a manager starts, so a restarted
/// peer is a new instance and stale replies addressed to the old one can be
/// told apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(Uuid);

impl InstanceId {
    /// A new random instance id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id from its 16 wire bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The 16 bytes this id travels as on the wire.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The nil id (all zero), used by anonymous raw peers.
    pub const fn nil() -> Self {
        Self(Uuid::nil())
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for InstanceId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", self.0)
    }
}

/// Identifier of one message, unique per sending manager.
///
/// Replies carry the id of the request they answer as their correlation id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Hands out message ids: a counter, never zero (zero means "none" on the wire).
#[derive(Debug)]
pub struct MessageIdGen(AtomicU64);

impl MessageIdGen {
    /// A generator starting at 1.
    pub const fn new() -> Self {
        Self(AtomicU64::new(1))
    }

    /// The next id.
    pub fn next(&self) -> MessageId {
        // Relaxed: uniqueness only needs atomicity, no ordering with other memory.
        MessageId(self.0.fetch_add(1, Ordering::Relaxed))
    }

    /// `n` consecutive ids at once, for a batch: one atomic add instead of
    /// one per message. Ids of the block left unused are skipped, never
    /// handed out twice.
    pub(crate) fn block(&self, n: usize) -> IdBlock {
        let n = n as u64;
        // Relaxed: as in `next`.
        let start = self.0.fetch_add(n, Ordering::Relaxed);
        IdBlock {
            next: std::cell::Cell::new(start),
            end: start + n,
        }
    }
}

/// Ids taken from [`MessageIdGen::block`], handed out in order.
#[derive(Debug)]
pub(crate) struct IdBlock {
    next: std::cell::Cell<u64>,
    end: u64,
}

impl IdBlock {
    /// The block's next id; `None` once it is used up.
    pub(crate) fn take(&self) -> Option<MessageId> {
        let id = self.next.get();
        (id < self.end).then(|| {
            self.next.set(id + 1);
            MessageId(id)
        })
    }
}

impl Default for MessageIdGen {
    fn default() -> Self {
        Self::new()
    }
}

/// Name of a handler. Names starting with `_` are reserved for system handlers.
pub type HandlerId = String;

/// Prefix of reserved system handler names.
pub(crate) const SYSTEM_PREFIX: char = '_';

/// Longest handler name accepted, in bytes.
pub(crate) const MAX_HANDLER_NAME: usize = 256;

/// Whether `name` is reserved for system handlers.
pub(crate) fn is_system_name(name: &str) -> bool {
    name.starts_with(SYSTEM_PREFIX)
}

/// Checks a handler name a user may register or call: non-empty, at most
/// [`MAX_HANDLER_NAME`] bytes, no control characters, not `_`-prefixed.
pub(crate) fn validate_user_handler_name(name: &str) -> Result<(), crate::Error> {
    validate_handler_name(name)?;
    if is_system_name(name) {
        return Err(crate::Error::InvalidHandlerName(format!(
            "{name:?}: names starting with '_' are reserved for system handlers"
        )));
    }
    Ok(())
}

/// Whether `name` holds a control character. Names of printable ASCII (the
/// usual case) are checked byte by byte; only others are decoded.
fn has_control(name: &str) -> bool {
    let printable = name.bytes().all(|b| matches!(b, b' '..=b'~'));
    !printable && name.chars().any(char::is_control)
}

/// Checks the shape of any handler name (system or user).
pub(crate) fn validate_handler_name(name: &str) -> Result<(), crate::Error> {
    if name.is_empty() || name.len() > MAX_HANDLER_NAME || has_control(name) {
        return Err(crate::Error::InvalidHandlerName(format!(
            "{name:?}: must be 1..={MAX_HANDLER_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_and_non_zero() {
        let ids = MessageIdGen::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_ne!(a.0, 0);
    }

    #[test]
    fn instance_id_round_trips_through_bytes() {
        let id = InstanceId::new_random();
        assert_eq!(InstanceId::from_bytes(*id.as_bytes()), id);
    }

    #[test]
    fn reserved_and_malformed_names_are_refused() {
        assert!(validate_user_handler_name("echo").is_ok());
        assert!(validate_user_handler_name("_health_check").is_err());
        assert!(validate_user_handler_name("").is_err());
        assert!(validate_user_handler_name("a\nb").is_err());
        assert!(validate_user_handler_name(&"x".repeat(MAX_HANDLER_NAME + 1)).is_err());
        assert!(validate_handler_name("_health_check").is_ok());
    }

    #[test]
    fn control_characters_are_refused_in_ascii_and_beyond() {
        for bad in ["a\u{7f}b", "\u{1f}", "tab\t", "c1\u{85}", "é\u{9f}"] {
            assert!(validate_handler_name(bad).is_err(), "{bad:?}");
        }
        for good in ["space ok", "~tilde", "é", "名前", "a\u{a0}b"] {
            assert!(validate_handler_name(good).is_ok(), "{good:?}");
        }
    }
}
