//! A handler name held by a message builder: short names (the usual case)
//! are kept inline, so starting a message allocates nothing; longer ones
//! share one heap copy between the builder's clones.

use std::fmt;
use std::sync::Arc;

/// Names up to this many bytes are stored inline.
const INLINE: usize = 46;

/// An owned handler name.
#[derive(Clone)]
pub(crate) enum HandlerName {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Arc<str>),
}

impl HandlerName {
    /// Copies `name` (inline when it is short).
    pub(crate) fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(Arc::from(name)),
        }
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                // SAFETY: `new` copied a whole `&str` into `bytes[..len]`
                // and nothing writes them afterwards, so they are valid
                // UTF-8. (Checking again cost as much as the rest of
                // starting a message.)
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Self::Heap(name) => name,
        }
    }
}

impl fmt::Debug for HandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay_inline_and_long_ones_round_trip() {
        let short = HandlerName::new("echo");
        assert!(matches!(short, HandlerName::Inline { .. }));
        assert_eq!(short.as_str(), "echo");
        let edge = "é".repeat(INLINE / 2);
        assert_eq!(HandlerName::new(&edge).as_str(), edge);
        let long = "n".repeat(INLINE + 1);
        let heap = HandlerName::new(&long);
        assert!(matches!(heap, HandlerName::Heap(_)));
        assert_eq!(heap.clone().as_str(), long);
    }
}
