//! A gate that lets a server's handlers run one message at a time, and only
//! while the client's send is blocked, so a link stays full whenever the
//! client writes past it, whatever the machine's speed (for the tests that
//! count allocations while senders wait for room).

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the server's handlers and the controller share.
#[derive(Default)]
pub struct Gate {
    /// Messages the server may still handle.
    tickets: AtomicU64,
    /// A send of the client is blocked (its future returned `Pending`).
    blocked: AtomicBool,
    /// The client sent everything: let the server run free.
    open: AtomicBool,
}

impl Gate {
    /// The handler's side: waits for a ticket (or the open gate).
    pub fn take(&self) {
        loop {
            // Acquire: pairs with the controller's Release stores.
            if self.open.load(Ordering::Acquire) {
                return;
            }
            let t = self.tickets.load(Ordering::Acquire);
            if t > 0
                && (self.tickets)
                    .compare_exchange(t, t - 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// The controller: one ticket at a time, only while the client is
    /// blocked and the last ticket was taken, until the gate opens.
    pub fn control(&self) {
        while !self.open.load(Ordering::Acquire) {
            if self.blocked.load(Ordering::Acquire) && self.tickets.load(Ordering::Acquire) == 0 {
                // Release: pairs with the handler's Acquire load.
                self.tickets.fetch_add(1, Ordering::Release);
            }
            std::thread::yield_now();
        }
    }

    /// Closes (`false`) or opens the gate.
    pub fn set_open(&self, open: bool) {
        // Release: pairs with the handler's and controller's Acquire loads.
        self.open.store(open, Ordering::Release);
    }

    /// Tells the controller whether the client is blocked.
    pub fn set_blocked(&self, blocked: bool) {
        // Release: pairs with the controller's Acquire load.
        self.blocked.store(blocked, Ordering::Release);
    }
}

/// Polls `fut`, telling the gate while it is blocked; counts in `waits`
/// the times it was blocked at its first poll.
pub async fn observed<F: Future>(fut: F, gate: &Gate, waits: &Cell<u64>) -> F::Output {
    let mut fut = pin!(fut);
    let mut first = true;
    poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        let pending = poll.is_pending();
        if pending && first {
            waits.set(waits.get() + 1);
        }
        first = false;
        gate.set_blocked(pending);
        poll
    })
    .await
}

/// Polls `fut`, counting in `waits` whether it was blocked at its first
/// poll (without telling the gate: for futures polled together under one
/// [`observed`]).
pub async fn counted<F: Future>(fut: F, waits: &Cell<u64>) -> F::Output {
    let mut fut = pin!(fut);
    let mut first = true;
    poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if poll.is_pending() && first {
            waits.set(waits.get() + 1);
        }
        first = false;
        poll
    })
    .await
}
