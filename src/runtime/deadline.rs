//! Deadlines of invocations on the receiving side.
//!
//! A caller's budget travels as `timeout_us`: the remaining budget when the
//! frame was sent, so the receiver's deadline is the moment the frame
//! arrived plus that budget. Between processes of one host the frame can sit
//! in a shared-memory ring for any time (a stopped receiver), so there the
//! sender writes the absolute deadline on the shared `CLOCK_MONOTONIC`
//! instead (flag [`flags::MONOTONIC_DEADLINE`]), and a call whose caller gave
//! up is never run.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};
use tokio::time::Instant;

use crate::wire::{Header, flags};

/// Now on `CLOCK_MONOTONIC`, in microseconds.
fn monotonic_now_us() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        // The monotonic clock never reads negative.
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000)
            .saturating_add(t.tv_nsec() as u64 / 1_000)
    })
}

/// Turns an invocation's budget into an absolute monotonic deadline, for a
/// link whose peer shares this host's clock.
pub(crate) fn to_monotonic(header: &mut Header) {
    if needs_deadline(header) {
        header.timeout_us = monotonic_now_us().saturating_add(header.timeout_us);
        header.flags |= flags::MONOTONIC_DEADLINE;
    }
}

/// [`to_monotonic`] for frames sent together: the clock is read at most once
/// (at the first frame that needs it), and `now_us` keeps the reading.
pub(crate) fn to_monotonic_from(header: &mut Header, now_us: &mut Option<u64>) {
    if needs_deadline(header) {
        let now = *now_us.get_or_insert_with(monotonic_now_us);
        header.timeout_us = now.saturating_add(header.timeout_us);
        header.flags |= flags::MONOTONIC_DEADLINE;
    }
}

/// Whether the header's budget becomes an absolute deadline: a `Confirm` or
/// `Request` with a budget, not made absolute yet. A `OneWay` message never
/// expires (its sender was told it was sent), so its budget travels as it
/// is, and sending one reads no clock.
fn needs_deadline(header: &Header) -> bool {
    header.kind.is_invocation()
        && header.kind != crate::wire::Kind::OneWay
        && header.timeout_us != 0
        && !header.has(flags::MONOTONIC_DEADLINE)
}

/// The deadline of an invocation that arrived at `received`, if it has one.
pub(crate) fn deadline_of(header: &Header, received: Instant) -> Option<Instant> {
    if header.timeout_us == 0 {
        return None;
    }
    if header.has(flags::MONOTONIC_DEADLINE) {
        let left = header.timeout_us.saturating_sub(monotonic_now_us());
        return Some(Instant::now() + Duration::from_micros(left));
    }
    received.checked_add(Duration::from_micros(header.timeout_us))
}

/// Whether the caller of this invocation has certainly given up: its
/// deadline passed before the handler started. One-way messages never
/// expire (their sender was told they were sent).
pub(crate) fn expired(header: &Header, deadline: Option<Instant>) -> bool {
    header.kind != crate::wire::Kind::OneWay && deadline.is_some_and(|d| d <= Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, MessageId};
    use crate::wire::Kind;

    fn request(timeout_us: u64) -> Header {
        let mut h = Header::new(Kind::Request, MessageId(1), InstanceId::new_random());
        h.timeout_us = timeout_us;
        h
    }

    #[test]
    fn budgets_count_from_arrival() {
        let now = Instant::now();
        assert_eq!(deadline_of(&request(0), now), None);
        assert_eq!(
            deadline_of(&request(5_000), now),
            Some(now + Duration::from_millis(5))
        );
    }

    #[test]
    fn monotonic_deadlines_survive_time_in_the_ring() {
        let mut h = request(1);
        to_monotonic(&mut h);
        assert!(h.has(flags::MONOTONIC_DEADLINE));
        std::thread::sleep(Duration::from_millis(2));
        // Arrival "now" does not matter: the deadline is absolute.
        assert!(expired(&h, deadline_of(&h, Instant::now())));
        let mut fresh = request(60_000_000);
        to_monotonic(&mut fresh);
        assert!(!expired(&fresh, deadline_of(&fresh, Instant::now())));
    }

    #[test]
    fn a_one_way_budget_is_sent_as_it_is() {
        let mut h = request(5_000);
        h.kind = Kind::OneWay;
        let before = h;
        to_monotonic(&mut h);
        to_monotonic_from(&mut h, &mut None);
        assert_eq!(h, before, "no clock read, no flag");
    }

    #[test]
    fn one_way_messages_never_expire() {
        let mut h = request(1);
        h.kind = Kind::OneWay;
        assert!(!expired(&h, Some(Instant::now())));
    }
}
