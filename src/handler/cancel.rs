//! The cancellation handle a handler gets, and the pool of per-call tokens.
//!
//! Cloning a [`CancellationToken`] takes the mutex of its tree node (and
//! dropping it takes it again); a child token allocates a node. Handlers run
//! in place got a clone of the manager's drain token per message, and every
//! async request a fresh child: both showed in the serving side's profile.
//! A [`HandlerCancel`] shares the drain token behind an `Arc` (a clone is
//! one atomic increment); a call that may wait still gets a child token of
//! its own, held directly (no extra allocation). Per-call tokens are not
//! pooled: a handler may keep a clone or a child of its token, and a later
//! call's cancel must never reach it.

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Cancelled when the caller gives up or the manager shuts down. Derefs to
/// the [`CancellationToken`] (`cancel.cancelled().await`,
/// `cancel.is_cancelled()`); [`HandlerCancel::token`] gives an owned token.
#[derive(Clone, Debug)]
pub struct HandlerCancel(Inner);

#[derive(Clone, Debug)]
enum Inner {
    /// A token shared by many calls (the manager's drain token).
    Shared(Arc<CancellationToken>),
    /// A call's own token.
    Own(CancellationToken),
}

impl HandlerCancel {
    /// Wraps a call's own token.
    pub fn new(token: CancellationToken) -> Self {
        Self(Inner::Own(token))
    }

    /// Shares one token between many calls: cloning the handle costs one
    /// atomic increment, not the token's mutex.
    pub(crate) fn shared(token: CancellationToken) -> Self {
        Self(Inner::Shared(Arc::new(token)))
    }

    /// An owned clone of the token (to keep beyond the call, or to pass on).
    pub fn token(&self) -> CancellationToken {
        (**self).clone()
    }
}

impl Deref for HandlerCancel {
    type Target = CancellationToken;

    fn deref(&self) -> &CancellationToken {
        match &self.0 {
            Inner::Shared(token) => token,
            Inner::Own(token) => token,
        }
    }
}

impl From<CancellationToken> for HandlerCancel {
    fn from(token: CancellationToken) -> Self {
        Self::new(token)
    }
}
