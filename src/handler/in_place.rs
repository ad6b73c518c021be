//! Runs an async handler's future in place, in a reused heap slot.
//!
//! Most async handlers finish without ever waiting (they count, store, or
//! send without blocking). Boxing each future for a task costs an allocation
//! per call; instead the future is written into a slot kept from the
//! previous call and polled once right here. If it finishes, the slot goes
//! back for the next call: no allocation. Only a future that really waits
//! is handed out (as a boxed future that owns the slot) for the caller to
//! await; the next call then allocates a fresh slot.
//!
//! A run of one-way calls (see `runtime::run`) borrows a slot for the whole
//! run ([`RunSlot`]) instead of locking the spares once per call: a lock
//! and an unlock are two locked instructions per message, which on x86 wait
//! for the message's own stores to drain.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError, TryLockError};
use std::task::{Context, Poll, Waker};

use crate::transport::BoxFuture;

/// A pinned, reusable home for one future, its type erased so that a run
/// can hold it without knowing the handler's future type. Between calls it
/// holds `None`.
type Slot = Pin<Box<dyn Any + Send>>;

/// Most spare slots a handler keeps: one per reader that runs it at the
/// same moment, for a few readers.
const SPARE_SLOTS: usize = 4;

/// Where finished futures' slots wait for the next call.
pub(crate) struct Spare<Fut> {
    slots: Mutex<Vec<Slot>>,
    _fut: PhantomData<fn() -> Fut>,
}

impl<Fut> Default for Spare<Fut> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(Vec::with_capacity(SPARE_SLOTS)),
            _fut: PhantomData,
        }
    }
}

/// What one in-place poll gave.
pub(crate) enum Ran<T> {
    /// The future finished on its first poll.
    Ready(T),
    /// The future waits: await this to finish it.
    Pending(BoxFuture<'static, T>),
}

/// A slot borrowed from a handler's spares for a run of calls (see the
/// module docs). Opaque; given back with the handler's `end_run`.
#[derive(Default)]
pub struct RunSlot(Option<Slot>);

impl std::fmt::Debug for RunSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RunSlot").field(&self.0.is_some()).finish()
    }
}

impl<Fut> Spare<Fut>
where
    Fut: Future + Send + 'static,
{
    /// Polls `fut` once in a spare slot (a fresh one when none is free).
    ///
    /// The first poll runs with a no-op waker: a future that returns
    /// `Pending` registers the waker of its *latest* poll, so whoever awaits
    /// the returned future registers the real one on the next poll.
    pub(crate) fn run(&self, fut: Fut) -> Ran<Fut::Output> {
        // One lock for the whole call (a lock and an unlock, not two of
        // each): the poll runs with the spares held. A busy lock (a
        // concurrent call, or this handler called again from inside its own
        // future) or a poisoned one only costs a fresh slot.
        let mut slots = match self.slots.try_lock() {
            Ok(slots) => slots,
            // A handler that panicked left a future in its slot: the next
            // call drops it when it writes its own.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return poll_in(fresh::<Fut>(), fut),
        };
        if slots.is_empty() {
            slots.push(fresh::<Fut>());
        }
        let slot = slots
            .last_mut()
            .unwrap_or_else(|| unreachable!("just filled"));
        match poll_slot::<Fut>(slot, fut) {
            Poll::Ready(out) => Ran::Ready(out),
            // The waiting future keeps the slot; the next call makes one.
            Poll::Pending => match slots.pop() {
                Some(slot) => Ran::Pending(Box::pin(Finish::<Fut>::new(slot))),
                None => unreachable!("the slot was just filled"),
            },
        }
    }

    /// [`Spare::run`] in the run's slot, borrowed from the spares at the
    /// run's first call (one lock per run, none per call).
    pub(crate) fn run_in(&self, held: &mut RunSlot, fut: Fut) -> Ran<Fut::Output> {
        let slot = match &mut held.0 {
            Some(slot) if slot.is::<Option<Fut>>() => slot,
            other => other.insert(self.lend()),
        };
        match poll_slot::<Fut>(slot, fut) {
            Poll::Ready(out) => Ran::Ready(out),
            Poll::Pending => match held.0.take() {
                Some(slot) => Ran::Pending(Box::pin(Finish::<Fut>::new(slot))),
                None => unreachable!("the run's slot was just filled"),
            },
        }
    }

    /// Takes back the slot a run borrowed (kept if there is room).
    pub(crate) fn end_run(&self, held: &mut RunSlot) {
        let Some(mut slot) = held.0.take() else {
            return;
        };
        // Empty again, even after a call that panicked in it.
        let Some(mut place) = project::<Fut>(&mut slot) else {
            return;
        };
        place.set(None);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() < SPARE_SLOTS {
            slots.push(slot);
        }
    }

    /// A spare slot, or a fresh one when none is free.
    fn lend(&self) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.pop().unwrap_or_else(fresh::<Fut>)
    }
}

/// An empty slot for futures of type `Fut`.
fn fresh<Fut: Send + 'static>() -> Slot {
    Box::pin(None::<Fut>)
}

/// The slot's future, if the slot is one for `Fut`.
fn project<Fut: 'static>(slot: &mut Slot) -> Option<Pin<&mut Option<Fut>>> {
    if !slot.is::<Option<Fut>>() {
        return None;
    }
    // SAFETY: `downcast_mut` returns a reference to the very value the pin
    // points at (it checked the type above), so the pinned value is
    // neither moved nor replaced: the projection keeps the pin's promise.
    Some(unsafe {
        slot.as_mut()
            .map_unchecked_mut(|any| any.downcast_mut::<Option<Fut>>().unwrap_unchecked())
    })
}

/// Writes `fut` into `slot` (one for `Fut`) and polls it once with a no-op
/// waker; a finished future is cleared from the slot.
fn poll_slot<Fut: Future + 'static>(slot: &mut Slot, fut: Fut) -> Poll<Fut::Output> {
    let Some(mut place) = project::<Fut>(slot) else {
        unreachable!("a slot is only ever used for its own future type")
    };
    place.set(Some(fut));
    let mut cx = Context::from_waker(Waker::noop());
    let polled = place
        .as_mut()
        .as_pin_mut()
        .map(|fut| fut.poll(&mut cx))
        .unwrap_or_else(|| unreachable!("the slot was just filled"));
    if polled.is_ready() {
        place.set(None);
    }
    polled
}

/// Runs `fut` in `slot`, a slot of its own (no spare was free).
fn poll_in<Fut>(mut slot: Slot, fut: Fut) -> Ran<Fut::Output>
where
    Fut: Future + Send + 'static,
{
    match poll_slot::<Fut>(&mut slot, fut) {
        Poll::Ready(out) => Ran::Ready(out),
        Poll::Pending => Ran::Pending(Box::pin(Finish::<Fut>::new(slot))),
    }
}

/// A slot whose future has been polled once and waits.
struct Finish<Fut> {
    slot: Slot,
    _fut: PhantomData<fn() -> Fut>,
}

impl<Fut> Finish<Fut> {
    fn new(slot: Slot) -> Self {
        Self {
            slot,
            _fut: PhantomData,
        }
    }
}

impl<Fut: Future + 'static> Future for Finish<Fut> {
    type Output = Fut::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        // `Finish` is `Unpin` (its slot is a pinned box): no pin projection.
        let Some(mut place) = project::<Fut>(&mut self.slot) else {
            return Poll::Pending;
        };
        match place.as_mut().as_pin_mut() {
            Some(fut) => {
                let out = std::task::ready!(fut.poll(cx));
                // A finished future is never polled again.
                place.set(None);
                Poll::Ready(out)
            }
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use super::*;

    /// Where the last spare slot lies, if there is one.
    fn spare_ptr<Fut>(spare: &Spare<Fut>) -> Option<*const ()> {
        let slots = spare.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.last().map(|s| &**s as *const dyn Any as *const ())
    }

    #[test]
    fn a_ready_future_runs_at_once_and_leaves_its_slot() {
        let spare = Spare::default();
        let run = |n: u32| spare.run(async move { n * 2 });
        let Ran::Ready(v) = run(3) else {
            panic!("a future without an await point finishes on its first poll")
        };
        assert_eq!(v, 6);
        let first = spare_ptr(&spare);
        assert!(first.is_some(), "the slot came back");
        let Ran::Ready(v) = run(4) else { panic!() };
        assert_eq!(v, 8);
        let second = spare_ptr(&spare);
        assert_eq!(first, second, "the same slot served both calls");
    }

    #[test]
    fn a_call_from_inside_a_running_future_gets_a_slot_of_its_own() {
        type Fut = BoxFuture<'static, u32>;
        let spare: std::sync::Arc<Spare<Fut>> = std::sync::Arc::default();
        let inner = std::sync::Arc::clone(&spare);
        let outer: Fut = Box::pin(async move {
            // The spare is held by the outer call: this one must not wait for it.
            match inner.run(Box::pin(async { 20 })) {
                Ran::Ready(v) => v + 1,
                Ran::Pending(_) => 0,
            }
        });
        let Ran::Ready(v) = spare.run(outer) else {
            panic!("neither future waits")
        };
        assert_eq!(v, 21);
        assert!(spare_ptr(&spare).is_some(), "the outer slot came back");
    }

    #[tokio::test]
    async fn a_waiting_future_finishes_when_awaited() {
        let spare = Spare::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let ran = spare.run(async move { rx.await.unwrap_or(0) + 1 });
        let Ran::Pending(fut) = ran else {
            panic!("the future waits on the channel")
        };
        let waiter = tokio::spawn(fut);
        tx.send(41).unwrap();
        assert_eq!(waiter.await.unwrap(), 42);
    }

    /// How many spare slots wait.
    fn spares<Fut>(spare: &Spare<Fut>) -> usize {
        spare
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    async fn value(n: u8) -> u8 {
        n
    }

    fn run_slot_ptr(slot: &RunSlot) -> Option<*const ()> {
        slot.0.as_ref().map(|s| &**s as *const dyn Any as *const ())
    }

    #[test]
    fn a_run_keeps_one_slot_for_all_its_calls_and_gives_it_back() {
        let spare = Spare::default();
        let _ = spare.run(value(0));
        let first = spare_ptr(&spare);
        let mut held = RunSlot::default();
        for n in 0..3u8 {
            let Ran::Ready(v) = spare.run_in(&mut held, value(n + 1)) else {
                panic!("no await point")
            };
            assert_eq!(v, n + 1);
            assert_eq!(spares(&spare), 0, "the run holds the only slot");
            assert_eq!(
                run_slot_ptr(&held),
                first,
                "the spare slot, lent to the run"
            );
        }
        spare.end_run(&mut held);
        assert!(held.0.is_none());
        assert_eq!(spare_ptr(&spare), first, "the same slot came back");
    }

    #[test]
    fn runs_at_the_same_moment_get_slots_of_their_own_and_both_come_back() {
        let spare = Spare::default();
        let (mut a, mut b) = (RunSlot::default(), RunSlot::default());
        let _ = spare.run_in(&mut a, value(1));
        let _ = spare.run_in(&mut b, value(2));
        assert_ne!(run_slot_ptr(&a), run_slot_ptr(&b));
        spare.end_run(&mut a);
        spare.end_run(&mut b);
        assert_eq!(spares(&spare), 2);
        let mut c = RunSlot::default();
        let _ = spare.run_in(&mut c, value(3));
        assert_eq!(spares(&spare), 1, "a later run borrows a kept slot");
    }

    #[tokio::test]
    async fn a_waiting_future_in_a_run_takes_the_slot_and_the_next_call_gets_another() {
        let spare = Spare::default();
        let mut held = RunSlot::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let rx = std::sync::Mutex::new(Some(rx));
        let waits = |held: &mut RunSlot| {
            let rx = rx.lock().unwrap().take();
            spare.run_in(held, async move {
                match rx {
                    Some(rx) => rx.await.unwrap_or(0),
                    None => 7,
                }
            })
        };
        let Ran::Pending(fut) = waits(&mut held) else {
            panic!("waits on the channel")
        };
        assert!(held.0.is_none(), "the waiting future owns the run's slot");
        let Ran::Ready(v) = waits(&mut held) else {
            panic!("no await point reached")
        };
        assert_eq!(v, 7);
        assert!(held.0.is_some(), "a fresh slot for the run");
        tx.send(41).unwrap();
        assert_eq!(fut.await, 41);
    }

    #[test]
    fn a_handler_that_panicked_keeps_reusing_its_slot() {
        let spare: Spare<BoxFuture<'static, u32>> = Spare::default();
        let _ = spare.run(Box::pin(async { 1 }));
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            spare.run(Box::pin(async { panic!("handler bug") }))
        }));
        assert!(panicked.is_err());
        assert_eq!(spares(&spare), 1);
        // A waiting future leaves with the slot it ran in: the spare one,
        // not a fresh one made because the spares' lock was poisoned.
        let Ran::Pending(_fut) = spare.run(Box::pin(std::future::pending())) else {
            panic!("never ready")
        };
        assert_eq!(spares(&spare), 0, "the call ran in the spare slot");
    }
}
