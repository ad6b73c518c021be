//! The one busy-wait policy of every wait loop on a ring: the blocking and
//! async waits of both handles here, and the runtime's link reader, which
//! spins on its own consumer.
//!
//! A waiter polls its ring, and after each empty poll asks its [`Spinner`]
//! what next: poll again after a pause hint (most of the time), give the
//! thread or task away once (every `yield_every` polls, so an oversubscribed
//! machine still runs the peer it waits for), or park (the policy's spin
//! budget ran out). Between yields nothing but the ring is touched: no
//! scheduler, no clock, no system call, so a reply is seen within one poll.

use std::time::{Duration, Instant};

use crate::sync::spin_hint;
use crate::wait::WaitPolicy;

/// Polls between two looks at the clock (the spin budget).
const CLOCK_EVERY: u32 = 64;

/// What a waiter does after an empty poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinStep {
    /// Poll again (the pause hint was given).
    Poll,
    /// Give the thread (or task) away once, then poll again.
    Yield,
    /// The spin budget is spent: park.
    Park,
}

/// Spin state of one wait.
#[derive(Clone, Debug)]
pub struct Spinner {
    /// `None`: spin for ever (`Spin`); `Some(ZERO)`: park at once.
    budget: Option<Duration>,
    yield_every: u32,
    polls: u32,
    until: Option<Instant>,
}

impl Spinner {
    /// A wait under `policy`'s budget that yields every `yield_every` polls.
    pub fn new(policy: WaitPolicy, yield_every: u32) -> Self {
        let budget = match policy {
            WaitPolicy::Spin => None,
            WaitPolicy::Adaptive { spin } => Some(spin),
            WaitPolicy::Park => Some(Duration::ZERO),
        };
        Self::with_budget(budget, yield_every)
    }

    /// A wait that spins for `budget` (`None`: for ever) before parking.
    pub fn with_budget(budget: Option<Duration>, yield_every: u32) -> Self {
        Self {
            budget,
            yield_every: yield_every.max(1),
            polls: 0,
            until: None,
        }
    }

    /// Whether this wait parks at once, without spinning.
    pub fn parks_at_once(&self) -> bool {
        self.budget == Some(Duration::ZERO)
    }

    /// Polls made so far in this wait.
    pub fn polls(&self) -> u32 {
        self.polls
    }

    /// Starts a new wait with the same policy (after the ring delivered).
    pub fn reset(&mut self) {
        self.polls = 0;
        self.until = None;
    }

    /// Call after each empty poll: what to do next.
    pub fn step(&mut self) -> SpinStep {
        if self.parks_at_once() {
            return SpinStep::Park;
        }
        self.polls = self.polls.wrapping_add(1);
        if let Some(budget) = self.budget
            && self.polls.is_multiple_of(CLOCK_EVERY)
        {
            // The budget runs from the first clock read, so a wait that
            // succeeds within `CLOCK_EVERY` polls reads no clock at all.
            let now = Instant::now();
            if now >= *self.until.get_or_insert(now + budget) {
                return SpinStep::Park;
            }
        }
        if self.polls.is_multiple_of(self.yield_every) {
            return SpinStep::Yield;
        }
        spin_hint();
        SpinStep::Poll
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spin_yields_on_its_cadence_and_never_parks() {
        let mut s = Spinner::new(WaitPolicy::Spin, 8);
        let steps: Vec<SpinStep> = (0..16).map(|_| s.step()).collect();
        assert_eq!(steps[7], SpinStep::Yield);
        assert_eq!(steps[15], SpinStep::Yield);
        assert_eq!(steps.iter().filter(|&&x| x == SpinStep::Yield).count(), 2);
        assert!(!steps.contains(&SpinStep::Park));
    }

    #[test]
    fn park_parks_at_once_and_adaptive_after_its_budget() {
        assert_eq!(Spinner::new(WaitPolicy::Park, 8).step(), SpinStep::Park);
        let spin = Duration::from_millis(1);
        let mut s = Spinner::new(WaitPolicy::Adaptive { spin }, 1 << 20);
        let start = Instant::now();
        while s.step() != SpinStep::Park {}
        assert!(start.elapsed() >= spin);
        s.reset();
        assert_eq!(s.polls(), 0);
        assert_eq!(s.step(), SpinStep::Poll);
    }
}
