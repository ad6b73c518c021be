//! Runs an async handler's future in place, in a reused heap slot.
//!
//! Most async handlers finish without ever waiting (they count, store, or
//! send without blocking). Boxing each future for a task costs an allocation
//! per call; instead the future is written into a slot kept from the
//! previous call and polled once right here. If it finishes, the slot goes
//! back for the next call: no allocation. Only a future that really waits
//! is handed out (as a boxed future that owns the slot) for the caller to
//! await; the next call then allocates a fresh slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::transport::BoxFuture;

/// A pinned, reusable home for one future of type `Fut`.
type Slot<Fut> = Pin<Box<Option<Fut>>>;

/// Where a finished future's slot waits for the next call.
pub(crate) struct Spare<Fut>(Mutex<Option<Slot<Fut>>>);

impl<Fut> Default for Spare<Fut> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

/// What one in-place poll gave.
pub(crate) enum Ran<T> {
    /// The future finished on its first poll.
    Ready(T),
    /// The future waits: await this to finish it.
    Pending(BoxFuture<'static, T>),
}

impl<Fut> Spare<Fut>
where
    Fut: Future + Send + 'static,
{
    /// Polls `fut` once in the spare slot (a fresh one when none is free).
    ///
    /// The first poll runs with a no-op waker: a future that returns
    /// `Pending` registers the waker of its *latest* poll, so whoever awaits
    /// the returned future registers the real one on the next poll.
    pub(crate) fn run(&self, fut: Fut) -> Ran<Fut::Output> {
        // One lock for the whole call (a lock and an unlock, not two of
        // each): the poll runs with the spare held. A busy lock (a
        // concurrent call, or this handler called again from inside its own
        // future) or a poisoned one only costs a fresh slot.
        let Ok(mut spare) = self.0.try_lock() else {
            return poll_once(Box::pin(None), fut);
        };
        let slot = spare.get_or_insert_with(|| Box::pin(None));
        slot.set(Some(fut));
        match poll_slot(slot) {
            Poll::Ready(out) => {
                slot.set(None);
                Ran::Ready(out)
            }
            // The waiting future keeps the slot; the next call makes one.
            Poll::Pending => match spare.take() {
                Some(slot) => Ran::Pending(Box::pin(Finish(slot))),
                None => unreachable!("the slot was just filled"),
            },
        }
    }
}

/// Polls the future in `slot` once, with a no-op waker.
fn poll_slot<Fut: Future>(slot: &mut Slot<Fut>) -> Poll<Fut::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    slot.as_mut()
        .as_pin_mut()
        .map(|fut| fut.poll(&mut cx))
        .unwrap_or_else(|| unreachable!("the slot was just filled"))
}

/// Runs `fut` in a slot of its own (no spare was free).
fn poll_once<Fut>(mut slot: Slot<Fut>, fut: Fut) -> Ran<Fut::Output>
where
    Fut: Future + Send + 'static,
{
    slot.set(Some(fut));
    match poll_slot(&mut slot) {
        Poll::Ready(out) => Ran::Ready(out),
        Poll::Pending => Ran::Pending(Box::pin(Finish(slot))),
    }
}

/// A slot whose future has been polled once and waits.
struct Finish<Fut>(Slot<Fut>);

impl<Fut: Future> Future for Finish<Fut> {
    type Output = Fut::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        match self.0.as_mut().as_pin_mut() {
            Some(fut) => {
                let out = std::task::ready!(fut.poll(cx));
                // A finished future is never polled again.
                self.0.set(None);
                Poll::Ready(out)
            }
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_future_runs_at_once_and_leaves_its_slot() {
        let spare = Spare::default();
        let run = |n: u32| spare.run(async move { n * 2 });
        let Ran::Ready(v) = run(3) else {
            panic!("a future without an await point finishes on its first poll")
        };
        assert_eq!(v, 6);
        let first = spare.0.lock().unwrap().as_ref().map(|s| &**s as *const _);
        assert!(first.is_some(), "the slot came back");
        let Ran::Ready(v) = run(4) else { panic!() };
        assert_eq!(v, 8);
        let second = spare.0.lock().unwrap().as_ref().map(|s| &**s as *const _);
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
        assert!(
            spare.0.lock().unwrap().is_some(),
            "the outer slot came back"
        );
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
}
