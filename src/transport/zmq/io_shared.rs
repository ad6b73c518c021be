//! What the I/O thread and every caller share: the doorbell that wakes the
//! I/O thread, the list of links with work for it, and the transport's
//! shutdown and inbound-link bookkeeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Weak};

use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use super::link::ZmqLink;
use super::task::ReaderTask;
use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// State shared by the I/O thread and every caller: the doorbell and the list
/// of links with work for the I/O thread.
#[derive(Debug)]
pub(crate) struct IoShared {
    /// This transport's instance id.
    pub(crate) local: InstanceId,
    /// Doorbell the I/O thread polls (as a raw fd) while it sleeps.
    doorbell: EventFd,
    /// Set by the I/O thread just before it sleeps; whoever clears it rings.
    armed: AtomicBool,
    /// Links with queued frames or a close request. A link is listed at most
    /// once (guarded by its `dirty` flag), so this never outgrows the link count.
    dirty: Mutex<Vec<Arc<ZmqLink>>>,
    /// Set once by `shutdown` (or drop).
    shutdown: AtomicBool,
    /// Outbound links whose peer had not read everything they accepted when
    /// the shutdown drain's deadline passed.
    undrained: std::sync::atomic::AtomicUsize,
    /// Reverse links of the clients the ROUTER knows, by link id (for `stats()`).
    inbound: Mutex<HashMap<u64, Weak<ZmqLink>>>,
    /// A caller sent a frame directly: the application answered, so the I/O
    /// thread stops spinning for it.
    pub(crate) sent: AtomicBool,
    /// The ROUTER's reader task on the runtime that bound the transport.
    pub(crate) router_task: ReaderTask,
    /// The last link id handed out (unique per transport).
    link_ids: AtomicU64,
}

impl IoShared {
    /// New shared state with a non-blocking eventfd doorbell.
    pub(crate) fn new(local: InstanceId) -> Result<Self> {
        let doorbell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|err| Error::transport(format!("eventfd: {err}")))?;
        Ok(Self {
            local,
            doorbell,
            armed: AtomicBool::new(false),
            dirty: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            undrained: std::sync::atomic::AtomicUsize::new(0),
            inbound: Mutex::new(HashMap::new()),
            sent: AtomicBool::new(false),
            router_task: ReaderTask::default(),
            link_ids: AtomicU64::new(0),
        })
    }

    /// A fresh link id (for a DEALER or a ROUTER client).
    pub(crate) fn new_link_id(&self) -> u64 {
        // Relaxed: only uniqueness matters.
        self.link_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Lists a new client's reverse link.
    pub(crate) fn add_inbound(&self, link: &Arc<ZmqLink>) {
        self.inbound.lock().insert(link.id, Arc::downgrade(link));
    }

    /// Unlists a client's reverse link.
    pub(crate) fn remove_inbound(&self, id: u64) {
        self.inbound.lock().remove(&id);
    }

    /// The reverse links of the clients known now.
    pub(crate) fn inbound_links(&self) -> Vec<Arc<ZmqLink>> {
        self.inbound
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The doorbell, for the I/O thread's poll set.
    pub(crate) fn doorbell(&self) -> &EventFd {
        &self.doorbell
    }

    /// Wakes the I/O thread if it is (about to be) asleep.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `arm`: either the I/O thread sees our work
        // when it re-checks after arming, or we see `armed` and ring.
        fence(Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            // The eventfd counter cannot overflow from single increments, and a
            // failed write only leaves the I/O thread to its poll timeout.
            if let Err(err) = self.doorbell.write(1) {
                tracing::warn!(%err, "zmq transport: doorbell write failed");
            }
        }
    }

    /// Called by the I/O thread before sleeping; returns whether work is
    /// already waiting (then it must not sleep).
    pub(crate) fn arm(&self) -> bool {
        self.armed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        !self.dirty.lock().is_empty() || self.is_shut_down()
    }

    /// Called by the I/O thread after its poll returns.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }

    /// Drains the doorbell counter (the I/O thread, after a readable poll).
    pub(crate) fn clear_doorbell(&self) {
        // EAGAIN just means nothing was rung.
        let _ = self.doorbell.read();
    }

    /// Records how many outbound links the shutdown drain left undrained.
    pub(crate) fn set_undrained(&self, links: usize) {
        // Release: pairs with the Acquire in `undrained`, read after the
        // I/O thread signalled it finished.
        self.undrained.store(links, Ordering::Release);
    }

    /// Outbound links the shutdown drain left undrained.
    pub(crate) fn undrained(&self) -> usize {
        self.undrained.load(Ordering::Acquire)
    }

    /// Whether links with work are listed.
    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.lock().is_empty()
    }

    /// Moves the dirty links into `out` (the I/O thread).
    pub(crate) fn take_dirty(&self, out: &mut Vec<Arc<ZmqLink>>) {
        std::mem::swap(&mut *self.dirty.lock(), out);
    }

    /// Lists `link` as having work, once, and wakes the I/O thread.
    pub(crate) fn mark_dirty(&self, link: &ZmqLink) {
        if self.is_shut_down() {
            // Nobody drains the list any more; keep it empty (no Arc cycle).
            return;
        }
        if !link.dirty.swap(true, Ordering::AcqRel) {
            // The link is alive (we were called through it), so this upgrades.
            if let Some(link) = link.me.upgrade() {
                self.dirty.lock().push(link);
            }
            self.wake();
        }
    }

    /// Whether a caller sent directly since the last call (the I/O thread).
    pub(crate) fn take_sent(&self) -> bool {
        // Relaxed: only ends a spin early; nothing is read through it.
        self.sent.swap(false, Ordering::Relaxed)
    }

    /// Asks the I/O thread to shut down.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        // The I/O thread reads the ROUTER for the shutdown drain.
        self.router_task.stop();
        self.wake();
    }

    /// Whether shutdown was requested.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}
