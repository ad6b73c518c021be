//! Wakers of tasks waiting for room in a bounded queue, kept in a fixed set
//! of slots inside the queue's own lock: registering allocates nothing (a
//! waker's clone is a reference count), and a look for room made under the
//! same lock as the take that frees it never misses its wake-up. Used by
//! the inbox's queue (`invocations`) and the ZeroMQ link's frame queue.

use std::task::Waker;

/// Tasks that wait at once, each with a slot; a task past them is woken at
/// once by its own registration and polls again after yielding to its
/// scheduler, so the set stays bounded whatever the number of waiters.
pub(crate) const SLOTS: usize = 16;

/// Wakers taken out of the slots, to wake once the lock is released.
pub(crate) type Taken = Option<[Option<Waker>; SLOTS]>;

/// The waiting tasks of one queue (kept under the queue's lock).
#[derive(Default)]
pub(crate) struct WakerSlots {
    slots: [Option<Waker>; SLOTS],
    /// Some slot holds a waker (a take looks no further otherwise).
    any: bool,
}

impl WakerSlots {
    /// Keeps `waker` for the next [`Self::take_all`]; `false` when every
    /// slot is taken (the caller wakes it at once, outside the lock).
    pub(crate) fn register(&mut self, waker: &Waker) -> bool {
        if self.slots.iter().flatten().any(|w| w.will_wake(waker)) {
            return true;
        }
        match self.slots.iter_mut().find(|slot| slot.is_none()) {
            Some(free) => {
                *free = Some(waker.clone());
                self.any = true;
                true
            }
            None => false,
        }
    }

    /// Takes every kept waker out. All, not one: a waker left by a wait
    /// that was dropped since would otherwise swallow the wake-up of a task
    /// still waiting (it costs one spurious wake instead).
    pub(crate) fn take_all(&mut self) -> Taken {
        if !std::mem::take(&mut self.any) {
            return None;
        }
        Some(std::mem::take(&mut self.slots))
    }
}

/// Wakes what [`WakerSlots::take_all`] took (call it outside the lock).
pub(crate) fn wake(taken: Taken) {
    for waker in taken.into_iter().flatten().flatten() {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn each_kept_waker_is_woken_once_and_a_full_set_says_so() {
        let mut set = WakerSlots::default();
        assert!(set.take_all().is_none(), "nothing kept");
        let kept: Vec<_> = (0..SLOTS).map(|_| counter()).collect();
        for (_, waker) in &kept {
            assert!(set.register(waker));
            assert!(set.register(waker), "kept once");
        }
        let (_, late) = counter();
        assert!(!set.register(&late), "no slot left");
        wake(set.take_all());
        assert!(kept.iter().all(|(n, _)| n.0.load(Ordering::Relaxed) == 1));
        assert!(set.take_all().is_none(), "taken out");
    }
}
