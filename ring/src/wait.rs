//! Waiting for data or space: the spin-then-park policy and the Dekker handshake with the
//! doorbells, shared by the blocking and the async methods of both handles.
//!
//! The sleeper (W1/W2): set its waiter flag, `fence(SeqCst)`, re-check the ring, park.
//! The waker (N1/N2): publish its index, `fence(SeqCst)`, ring the doorbell only if the
//! flag is set. Either the waker's fence comes first in the SeqCst order, and then the
//! sleeper's re-check sees the published index; or the sleeper's fence comes first, and
//! then the waker sees the flag and rings. No wake-up is lost, and a busy link makes no
//! syscall.

use std::time::{Duration, Instant};

use crate::core::RingCore;
use crate::counters::HandleCounters;
use crate::doorbell::Doorbell;
use crate::error::{Result, RingError};
use crate::spin::{SpinStep, Spinner};
use crate::sync::{AtomicU32, Ordering::*, fence, yield_cpu};

/// Polls between two OS yields of a blocking wait.
const BLOCKING_YIELD_EVERY: u32 = 1024;
/// Polls between two scheduler yields of an async wait.
const ASYNC_YIELD_EVERY: u32 = 64;

/// How a handle waits, and whether it notifies its peer.
///
/// Both handles of a ring should use `Spin`, or neither: a `Spin` handle never parks and,
/// to keep its hot path free of fences, never rings the doorbell, so a parking peer would
/// only wake on close or on its own timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Busy-poll; lowest latency, burns a core while waiting (it offers the CPU to the
    /// OS scheduler every 1024 polls, so an oversubscribed machine still progresses).
    Spin,
    /// Busy-poll for `spin`, then park on the doorbell.
    Adaptive {
        /// How long to poll before parking.
        spin: Duration,
    },
    /// Park at once (pays the wake-up latency of the OS on every wait).
    Park,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy::Adaptive {
            spin: Duration::from_micros(50),
        }
    }
}

impl WaitPolicy {
    /// Whether this handle must notify a possibly parked peer after publishing.
    #[inline]
    pub(crate) fn notifies(self) -> bool {
        !matches!(self, WaitPolicy::Spin)
    }
}

/// Which waiter flag a handle owns.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    /// Waits for data, on `consumer_waiting` + the data doorbell.
    Consumer,
    /// Waits for space, on `producer_waiting` + the space doorbell.
    Producer,
}

/// What a waiting handle exposes to the wait loops.
pub(crate) trait WaitSide {
    fn core(&self) -> &RingCore;
    fn side(&self) -> Side;
    fn policy(&self) -> WaitPolicy;
    /// The doorbell this side parks on.
    fn bell(&self) -> &Doorbell;
    /// This handle's private wait counters.
    fn wait_counters(&self) -> &HandleCounters;
}

fn flag(core: &RingCore, side: Side) -> &AtomicU32 {
    match side {
        Side::Consumer => &core.ctl().consumer_waiting,
        Side::Producer => &core.ctl().producer_waiting,
    }
}

/// Raised waiter flag; lowered on drop (also when an async wait is cancelled).
pub(crate) struct Raised {
    core: RingCore,
    side: Side,
}

impl Raised {
    /// W1/W2: raise the flag and fence; the caller must re-check the ring before parking.
    pub(crate) fn raise(core: &RingCore, side: Side) -> Self {
        flag(core, side).store(1, Relaxed);
        // SYNC POINT W1/W2 (SeqCst fence) pairs with N1/N2 (the peer's fence after publish).
        fence(SeqCst);
        Raised {
            core: core.clone(),
            side,
        }
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        // A failing loom model unwinds after its execution ended; touching a loom atomic
        // then would abort the test binary instead of reporting the failure.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        flag(&self.core, self.side).store(0, Relaxed);
    }
}

/// N1/N2: after publishing, ring the peer's doorbell if it is (about to be) parked.
#[inline]
pub(crate) fn notify(core: &RingCore, peer: Side, bell: &Doorbell, counters: &HandleCounters) {
    // SYNC POINT N1/N2 (SeqCst fence) pairs with W1/W2.
    fence(SeqCst);
    if flag(core, peer).load(Relaxed) != 0 {
        bell.ring();
        counters.rang();
    }
}

/// Polls until `poll` yields, spinning and parking per policy. `Ok(None)` from `poll`
/// means "not yet" (empty / full); errors end the wait.
pub(crate) fn wait_blocking<W: WaitSide, T>(
    w: &mut W,
    timeout: Option<Duration>,
    mut poll: impl FnMut(&mut W) -> Result<Option<T>>,
) -> Result<T> {
    if let Some(t) = poll(w)? {
        return Ok(t);
    }
    w.wait_counters().waited();
    // The clock is read only every 64 polls (never for `Spin` without a timeout), so a
    // spinning wait that succeeds quickly costs no clock read.
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut spinner = Spinner::new(w.policy(), BLOCKING_YIELD_EVERY);
    while !spinner.parks_at_once() {
        if let Some(t) = poll(w)? {
            return Ok(t);
        }
        let step = spinner.step();
        if spinner.polls().is_multiple_of(64) && deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RingError::Timeout);
        }
        match step {
            SpinStep::Poll => {}
            // Let an oversubscribed machine run the peer we are waiting for.
            SpinStep::Yield => yield_cpu(),
            SpinStep::Park => break,
        }
    }
    loop {
        let raised = Raised::raise(w.core(), w.side());
        if let Some(t) = poll(w)? {
            return Ok(t);
        }
        w.wait_counters().parked();
        let rung = w.bell().wait(deadline)?;
        drop(raised);
        if let Some(t) = poll(w)? {
            return Ok(t);
        }
        if !rung && deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RingError::Timeout);
        }
    }
}

/// Async handles: lazily registers the doorbell with the current tokio reactor.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) trait AsyncWaitSide: WaitSide {
    fn async_bell(&mut self) -> Result<&tokio::io::unix::AsyncFd<Doorbell>>;
}

/// Registers `bell` for readability with the current tokio runtime.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) fn register(bell: &Doorbell) -> Result<tokio::io::unix::AsyncFd<Doorbell>> {
    use tokio::io::{Interest, unix::AsyncFd};
    if tokio::runtime::Handle::try_current().is_err() {
        let e = std::io::Error::other("async ring method called outside a tokio runtime");
        return Err(e.into());
    }
    // SAFETY: the `Doorbell` owns (an `Arc` of) its `OwnedFd`, which therefore stays open
    // and refers to the same eventfd for as long as the `AsyncFd` holds it, and
    // `as_raw_fd` always returns that same descriptor.
    let afd = unsafe { AsyncFd::register_with_interest(bell.clone(), Interest::READABLE) };
    afd.map_err(|e| RingError::Io(e.into()))
}

/// Forgets a doorbell's readiness after a wake-up, without reading its counter.
///
/// tokio registers the eventfd edge-triggered, and epoll reports an edge-triggered
/// eventfd on every write, counter zero or not (each write wakes the eventfd's wait
/// queue, which re-queues the descriptor on the ready list; mio's own eventfd
/// waker relies on this and never reads on wake-up). So a waiter that clears the
/// readiness (tokio keeps any event that came after the guard was made) is woken
/// by the next ring as surely as one that read the counter to zero, and saves a
/// system call per wake-up: the wake-up then costs the `epoll_wait` alone, as a raw
/// eventfd ping-pong costs its blocking `read`. The count grows by one per ring;
/// [`Doorbell::ring`] resets it should it ever fill, and a blocking waiter on the
/// same bell returns once spuriously and reads it to zero.
#[cfg(all(feature = "async", not(loom)))]
fn clear_woken(guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, Doorbell>) {
    guard.clear_ready();
}

/// The async twin of [`wait_blocking`]: spins by yielding to the scheduler, then parks
/// on the doorbell's `AsyncFd` (edge-triggered: `clear_ready`, see [`clear_woken`]).
/// Cancel-safe: dropping the future lowers the waiter flag and consumes nothing.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) async fn wait_async<W: AsyncWaitSide, T>(
    w: &mut W,
    mut poll: impl FnMut(&mut W) -> Result<Option<T>>,
) -> Result<T> {
    if let Some(t) = poll(w)? {
        return Ok(t);
    }
    w.wait_counters().waited();
    // Spins on the ring itself; only every `ASYNC_YIELD_EVERY` polls does it
    // yield to the scheduler (so tasks sharing the thread run).
    let mut spinner = Spinner::new(w.policy(), ASYNC_YIELD_EVERY);
    while !spinner.parks_at_once() {
        match spinner.step() {
            SpinStep::Poll => {}
            SpinStep::Yield => tokio::task::yield_now().await,
            SpinStep::Park => break,
        }
        if let Some(t) = poll(w)? {
            return Ok(t);
        }
    }
    loop {
        let raised = Raised::raise(w.core(), w.side());
        if let Some(t) = poll(w)? {
            return Ok(t);
        }
        w.wait_counters().parked();
        let afd = w.async_bell()?;
        let mut guard = afd.readable().await?;
        // No read of the counter: see `clear_woken`.
        clear_woken(&mut guard);
        drop(raised);
        if let Some(t) = poll(w)? {
            return Ok(t);
        }
    }
}

/// The poll twin of [`wait_async`], for a caller that keeps no future of the ring's
/// own (it polls again when woken): `Ready` once `poll` yields (the waiter flag is
/// lowered), else `Pending` with `cx` registered on the doorbell behind a raised
/// waiter flag (W1/W2, then a re-check), so the peer's next release rings it. `Spin`
/// handles never park: their peer never rings, so `cx` is woken at once and the
/// caller polls again after yielding to its scheduler.
#[cfg(all(feature = "async", not(loom)))]
pub(crate) fn poll_wait<W: AsyncWaitSide, T>(
    w: &mut W,
    cx: &mut std::task::Context<'_>,
    mut poll: impl FnMut(&mut W) -> Result<Option<T>>,
) -> std::task::Poll<Result<T>> {
    use std::task::Poll;
    let lowered = |w: &W, t: T| {
        // Raised by an earlier poll that found no room (or a wait dropped since).
        flag(w.core(), w.side()).store(0, Relaxed);
        Poll::Ready(Ok(t))
    };
    if let Some(t) = poll(w)? {
        return lowered(w, t);
    }
    if !w.policy().notifies() {
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    // One wait per episode, however often the caller polls within it (a
    // spurious wake-up, another writer's release): the flag is still
    // raised from this episode's first poll.
    if flag(w.core(), w.side()).load(Relaxed) == 0 {
        w.wait_counters().waited();
    }
    loop {
        flag(w.core(), w.side()).store(1, Relaxed);
        // SYNC POINT W1/W2 (SeqCst fence) pairs with N1/N2 (the peer's fence after publish).
        fence(SeqCst);
        if let Some(t) = poll(w)? {
            return lowered(w, t);
        }
        let afd = w.async_bell()?;
        match afd.poll_read_ready(cx) {
            Poll::Pending => {
                w.wait_counters().parked();
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            Poll::Ready(Ok(mut guard)) => clear_woken(&mut guard),
        }
    }
}
