//! A link's reader state, and the waiting caller's drive of it.
//!
//! Everything that reads the consumer ring (the ring itself, the router and
//! its arena, the copy scratch, the pooled-segment map, inline replies still
//! owed) lives in one [`ReaderState`], parked in the link's [`ReaderSlot`]
//! whenever its owner awaits. Two owners take turns:
//! - the link's reader task ([`super::pump::read_ring`]), which takes the
//!   state while it polls and puts it back before it yields to the
//!   scheduler (it keeps it only across the rare waits of a record being
//!   handled, and while parked on the doorbell);
//! - a caller waiting for its reply ([`ShmLink::drive`]): when the state is
//!   free it spins on the ring itself under the link's spin policy, routes
//!   every record it finds exactly as the reader would (the same
//!   [`super::inbound::handle`]), and stops as soon as its own outcome is
//!   there: a reply is completed on the caller's own thread, with no wake-up
//!   of the caller and no trip through the scheduler.
//!
//! The caller only handles what needs no waiting: a plain frame record whose
//! invocation (if any) fits the inbox now. Anything else (a pooled or large
//! record, a ring error or a closed ring, a full inbox, an inline reply that
//! did not fit the producer ring) is left to the reader task, which is woken
//! when the state comes back; so the reader still sees every record, reports
//! loss once and alone, and an inline reply never waits on the caller's
//! thread.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use rkyv::util::AlignedVec;
use shm_ring::{Consumer, RingError, SpinStep, Spinner};
use tokio::sync::mpsc;

use super::inbound::{self, Outcome};
use super::link::{FLAG_FRAME, ShmLink};
use super::pool::RxPool;
use super::pooled;
use super::pump;
use crate::runtime::router::Router;
use crate::transport::{BoxedLink, Driven, Inbound, Inbox};
use crate::wire::PAYLOAD_ALIGN;

/// Polls between two yields of a spinning caller (to the scheduler, then to
/// the OS), as the reader task does.
const DRIVE_YIELD_EVERY: u32 = 128;

/// Everything that reads one link's consumer ring.
pub(crate) struct ReaderState {
    pub(crate) rx: Consumer,
    pub(crate) fds: mpsc::Receiver<OwnedFd>,
    pub(crate) inbox: Inbox,
    /// The peer runs as another uid: records are copied before reading.
    pub(crate) copy: bool,
    /// The busy-wait budget (`None`: spin for ever).
    pub(crate) spin: Option<Duration>,
    pub(crate) scratch: AlignedVec<PAYLOAD_ALIGN>,
    /// Inline replies that did not fit the producer ring, in order.
    pub(crate) deferred: Vec<Vec<u8>>,
    /// An invocation routed but not yet queued on the inbox (a caller's
    /// drive found the inbox full, or the reader is about to wait for room).
    pub(crate) queued: Option<Inbound>,
    /// A caller's drive found a protocol violation: the link is ending.
    pub(crate) stopped: bool,
    pub(crate) pool: RxPool,
    pub(crate) router: Router,
    /// The link (weak: the state lives inside it).
    pub(crate) link: Weak<ShmLink>,
}

impl ReaderState {
    /// Whether the reader task owes work that only it can do.
    pub(crate) fn owes(&self) -> bool {
        self.stopped || self.queued.is_some() || !self.deferred.is_empty()
    }
}

/// Where a link's reader state waits while nobody reads the ring.
#[derive(Default)]
pub(crate) struct ReaderSlot {
    state: Mutex<Option<Box<ReaderState>>>,
    /// The reader task, waiting for the state to come back.
    reader: AtomicWaker,
}

impl ReaderSlot {
    /// Takes the state if nobody holds it.
    pub(crate) fn try_take(&self) -> Option<Box<ReaderState>> {
        self.state.try_lock().and_then(|mut s| s.take())
    }

    /// Puts the state back and wakes the reader task if it waits for it.
    pub(crate) fn put(&self, state: Box<ReaderState>) {
        *self.state.lock() = Some(state);
        self.reader.wake();
    }

    /// The reader task takes the state, waiting while a caller drives.
    pub(crate) async fn take(&self) -> Box<ReaderState> {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }

    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Box<ReaderState>> {
        if let Some(state) = self.state.lock().take() {
            return Poll::Ready(state);
        }
        self.reader.register(cx.waker());
        // Put back between the look and the registration: seen now.
        match self.state.lock().take() {
            Some(state) => Poll::Ready(state),
            None => Poll::Pending,
        }
    }
}

impl ShmLink {
    /// A waiting caller reads the ring (see the module docs); `until` says
    /// whether its own outcome is there, asked after every reply routed.
    pub(crate) fn drive_ring(&self, until: &mut dyn FnMut() -> bool) -> Driven {
        let Some(mut state) = self.reader.try_take() else {
            return Driven::Idle;
        };
        let driven = if state.owes() {
            Driven::Idle
        } else {
            drive(self, &mut state, until)
        };
        state.router.end_run(&self.counters);
        self.reader.put(state);
        driven
    }
}

/// The drive loop: routes plain frame records until `until` holds, the spin
/// budget is spent, or a record needs the reader task.
fn drive(link: &ShmLink, st: &mut ReaderState, until: &mut dyn FnMut() -> bool) -> Driven {
    let ReaderState {
        rx,
        inbox,
        copy,
        spin,
        scratch,
        deferred,
        queued,
        stopped,
        router,
        link: weak,
        ..
    } = st;
    let reply_link = || upgrade(weak);
    let mut spinner = Spinner::with_budget(*spin, DRIVE_YIELD_EVERY);
    loop {
        let outcome = match rx.try_read() {
            Ok(grant) if grant.flags() == FLAG_FRAME => {
                let bytes = inbound::frame_bytes(&grant, *copy, scratch);
                let outcome =
                    inbound::handle(link, inbox, router, bytes, None, deferred, &reply_link);
                grant.release();
                outcome
            }
            Err(RingError::Empty) => match spinner.step() {
                SpinStep::Poll => continue,
                SpinStep::Yield if spin.is_none() => return Driven::Again,
                SpinStep::Yield => {
                    std::thread::yield_now();
                    continue;
                }
                SpinStep::Park => return Driven::Idle,
            },
            // Pooled and large records, errors and a closed ring: the reader's.
            Ok(_) | Err(_) => return Driven::Idle,
        };
        match outcome {
            Outcome::Done { woke } => {
                if woke && until() {
                    return Driven::Done;
                }
            }
            Outcome::Queue(inbound) => {
                if let Some(back) = try_deliver(inbox, inbound) {
                    *queued = Some(back);
                    return Driven::Idle;
                }
            }
            Outcome::Stop => {
                *stopped = true;
                return Driven::Idle;
            }
        }
        if !deferred.is_empty() {
            return Driven::Idle;
        }
        spinner.reset();
    }
}

/// The handle an invocation's replies go back on.
fn upgrade(link: &Weak<ShmLink>) -> BoxedLink {
    // A caller drives through its own handle on the link: it is alive.
    let link = link.upgrade().expect("a driven link is alive");
    link as BoxedLink
}

/// Queues an invocation if the inbox has room now; gives it back if not.
fn try_deliver(inbox: &Inbox, inbound: Inbound) -> Option<Inbound> {
    match inbox.invocations.try_send(inbound) {
        Ok(()) => None,
        Err(mpsc::error::TrySendError::Full(back)) => Some(back),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::warn!("dispatcher gone: invocation dropped");
            None
        }
    }
}

/// Starts the reader task of a fresh link.
pub(crate) fn spawn(
    link: Arc<ShmLink>,
    rx: Consumer,
    fds: mpsc::Receiver<OwnedFd>,
    inbox: Inbox,
    copy: bool,
    spin: Option<Duration>,
) {
    let pool = RxPool::with_bell(pooled::max_segment(inbox.max_frame), pooled::bell(&link));
    let state = Box::new(ReaderState {
        rx,
        fds,
        inbox,
        copy,
        spin,
        scratch: AlignedVec::new(),
        deferred: Vec::new(),
        queued: None,
        stopped: false,
        pool,
        router: Router::batched(),
        link: Arc::downgrade(&link),
    });
    tokio::spawn(pump::read_ring(link, state));
}
