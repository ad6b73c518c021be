//! The cancellation handle a handler gets, and the pool of per-call tokens.
//!
//! Cloning a [`CancellationToken`] takes the mutex of its tree node (and
//! dropping it takes it again); a child token allocates a node. Handlers run
//! in place got a clone of the manager's drain token per message, and every
//! async request a fresh child: both showed in the serving side's profile.
//! A [`HandlerCancel`] shares the drain token behind an `Arc` (a clone is
//! one atomic increment). A call that may wait (an async request) gets a
//! call slot from a pool instead of a child token: the child is made only
//! when the handler looks at its token, and a slot nobody else holds any
//! more goes back to the pool without its child, so a handler that kept a
//! clone or a child of its token never sees a later call's cancel.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

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
    /// A call's slot, its token made on first use.
    Call(Arc<CallCancel>),
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

    /// Cancels this call only (a call slot is flagged without making its
    /// token); a shared token is left alone.
    pub(crate) fn cancel_call(&self) {
        match &self.0 {
            Inner::Shared(_) => {}
            Inner::Own(token) => token.cancel(),
            Inner::Call(call) => call.cancel(),
        }
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
            Inner::Call(call) => call.token(),
        }
    }
}

impl From<CancellationToken> for HandlerCancel {
    fn from(token: CancellationToken) -> Self {
        Self::new(token)
    }
}

/// One call's cancellation: a flag, and a child of the drain token made only
/// if the handler asks for its token.
#[derive(Debug)]
pub(crate) struct CallCancel {
    parent: Arc<CancellationToken>,
    token: OnceLock<CancellationToken>,
    cancelled: AtomicBool,
}

impl CallCancel {
    fn token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(|| self.parent.child_token());
        // SeqCst with `cancel`: a cancel racing the token's creation is
        // seen by one side or the other.
        if self.cancelled.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }
}

/// At most this many spare call slots are kept.
const POOL_CAP: usize = 1024;

/// Call slots for calls that may wait, reused once nobody holds them.
pub(crate) struct CancelPool {
    parent: Arc<CancellationToken>,
    spare: Mutex<Vec<Arc<CallCancel>>>,
}

impl CancelPool {
    /// Slots whose tokens are children of `parent` (the drain token).
    pub(crate) fn new(parent: CancellationToken) -> Self {
        Self {
            parent: Arc::new(parent),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// A fresh call's cancellation (a spare slot when there is one).
    pub(crate) fn take(&self) -> HandlerCancel {
        let call = self.spare.lock().pop().unwrap_or_else(|| {
            Arc::new(CallCancel {
                parent: Arc::clone(&self.parent),
                token: OnceLock::new(),
                cancelled: AtomicBool::new(false),
            })
        });
        HandlerCancel(Inner::Call(call))
    }

    /// Takes a finished call's slot back, if nobody else holds it (the
    /// handler and the table of running calls have dropped theirs). Its
    /// token, if one was made, goes with the old holders; the slot starts
    /// afresh.
    pub(crate) fn give_back(&self, cancel: HandlerCancel) {
        let Inner::Call(mut call) = cancel.0 else {
            return;
        };
        let Some(slot) = Arc::get_mut(&mut call) else {
            return;
        };
        slot.token.take();
        *slot.cancelled.get_mut() = false;
        let mut spare = self.spare.lock();
        if spare.len() < POOL_CAP {
            spare.push(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_cancelled_before_its_token_is_made_sees_it_cancelled() {
        let pool = CancelPool::new(CancellationToken::new());
        let call = pool.take();
        call.cancel_call();
        assert!(call.is_cancelled());
    }

    #[test]
    fn a_cancelled_drain_token_reaches_a_call() {
        let drain = CancellationToken::new();
        let pool = CancelPool::new(drain.clone());
        let call = pool.take();
        assert!(!call.is_cancelled());
        drain.cancel();
        assert!(call.is_cancelled());
    }

    #[test]
    fn a_reused_slot_starts_afresh_and_old_holders_keep_their_token() {
        let pool = CancelPool::new(CancellationToken::new());
        let first = pool.take();
        let kept = first.token();
        let ptr = match &first.0 {
            Inner::Call(call) => Arc::as_ptr(call),
            _ => unreachable!(),
        };
        pool.give_back(first);
        let second = pool.take();
        let reused = matches!(&second.0, Inner::Call(call) if Arc::as_ptr(call) == ptr);
        assert!(reused, "an unshared slot was not reused");
        second.cancel_call();
        assert!(second.is_cancelled());
        assert!(
            !kept.is_cancelled(),
            "a later call's cancel reached an old holder"
        );
    }

    #[test]
    fn a_slot_still_held_is_not_reused() {
        let pool = CancelPool::new(CancellationToken::new());
        let first = pool.take();
        let held = first.clone();
        pool.give_back(first);
        let second = pool.take();
        second.cancel_call();
        assert!(!held.is_cancelled());
    }
}
