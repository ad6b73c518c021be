//! The senders of one link waiting for room, woken together without
//! allocating: a fixed set of waker slots behind a short lock.
//!
//! A sender that finds the link full registers its task's waker here and
//! polls again when woken (see `room`). Whatever may make room wakes the set:
//! the ring's space doorbell (through [`Waiters::waker`], which the ring's
//! reactor registration holds), the writer that releases the producer ring
//! (`txlock`), a pooled segment coming back, the link going down. Waking
//! takes every registered waker out, so a waker left by a send that was
//! dropped since costs one spurious wake, never a slot for good. A waker
//! already present is not added twice; when every slot is taken, the sender
//! is woken at once and polls again after yielding to its scheduler (the set
//! stays bounded whatever the number of senders).

use std::sync::Arc;
use std::task::{Wake, Waker};

use parking_lot::Mutex;

/// Waker slots per link: senders waiting at once before the rest poll.
const SLOTS: usize = 16;

/// The waiting senders of one link.
#[derive(Default)]
pub(crate) struct Waiters {
    slots: Mutex<[Option<Waker>; SLOTS]>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters").finish_non_exhaustive()
    }
}

impl Waiters {
    /// A new set, with the waker that wakes it (cloning it is a reference
    /// count, not an allocation).
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let set = Arc::new(Self::default());
        let waker = Waker::from(Arc::clone(&set));
        (set, waker)
    }

    /// Registers `waker` to be woken by the next [`Self::wake_all`]. The
    /// caller looks at what it waits for again after this.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut slots = self.slots.lock();
        if slots.iter().flatten().any(|w| w.will_wake(waker)) {
            return;
        }
        match slots.iter_mut().find(|s| s.is_none()) {
            Some(free) => *free = Some(waker.clone()),
            None => {
                drop(slots);
                waker.wake_by_ref();
            }
        }
    }

    /// Wakes every registered sender (outside the lock).
    pub(crate) fn wake_all(&self) {
        let taken = std::mem::take(&mut *self.slots.lock());
        for waker in taken.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        (count, waker)
    }

    #[test]
    fn every_registered_sender_is_woken_once() {
        let (set, set_waker) = Waiters::new();
        let (a, wa) = counter();
        let (b, wb) = counter();
        set.register(&wa);
        set.register(&wa);
        set.register(&wb);
        set_waker.wake_by_ref();
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        // Taken out: the next wake finds nobody.
        set.wake_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_sender_past_the_slots_is_woken_at_once() {
        let (set, _) = Waiters::new();
        let keep: Vec<_> = (0..SLOTS).map(|_| counter()).collect();
        for (_, w) in &keep {
            set.register(w);
        }
        let (late, w) = counter();
        set.register(&w);
        assert_eq!(late.0.load(Ordering::Relaxed), 1);
        set.wake_all();
        assert!(keep.iter().all(|(c, _)| c.0.load(Ordering::Relaxed) == 1));
    }
}
