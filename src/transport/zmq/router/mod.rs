//! The inbound side: one ROUTER, a reverse link per client routing id, and
//! the backpressure stall.
//!
//! The ROUTER is read by a reader task on the runtime that bound the
//! transport (`task`), the way an outbound link's reader task reads its
//! DEALER, so a request wakes that runtime straight from libzmq's I/O
//! thread and a handler run in place answers from the thread that read the
//! request. The I/O thread owns the socket and does the rest: heartbeats
//! and silence, replies that found the client's pipe full, the retry of a
//! stalled invocation, goodbyes, and the reading itself before the task
//! starts, once it ended (its runtime shut down), during the shutdown
//! drain, and when input waited a whole heartbeat tick unread (the task's
//! runtime is not running).
//!
//! What both readers share is a [`RouterCore`]: the clients, the gate and
//! the stall behind a short-held mutex, and the read buffers and inbound
//! router behind a reading lock held over a batch, so frames are routed in
//! the order they were read whoever reads them.
//!
//! Reverse links are closed when their client says goodbye, stays silent past
//! the heartbeat timeout, or becomes unroutable; `on_link_lost` is reserved
//! for outbound links, so none of these calls it.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;

mod read;
mod send;
mod task;
mod timers;

pub(crate) use self::task::start;

use super::conn::RawMsg;
use super::frames::Control;
use super::gate::Gate;
use super::io_env::Settings;
use super::link::{IoShared, ZmqLink};
use super::shared::SharedSocket;
use crate::ids::InstanceId;
use crate::runtime::router::Router;
use crate::transport::{Inbound, Inbox};
use crate::wire::Header;

/// One client that called us, keyed by its routing id.
struct Client {
    link: Arc<ZmqLink>,
    /// A reply the client's pipe had no room for.
    blocked: Option<zmq::Message>,
    /// Last frame from the client, and last frame we sent it.
    last_seen: Instant,
    last_sent: Instant,
}

/// A message whose multipart shape was wrong: size of the first part, size
/// of the rest, and the first part's header if it was readable.
type BadShape = (usize, usize, Option<Header>);

/// The clients and what is owed to them; held briefly by either reader.
struct State {
    clients: HashMap<Box<[u8]>, Client>,
    /// Authentication, when a secret is configured.
    gate: Option<Gate>,
    /// An invocation the inbox had no room for; while set the ROUTER is not read.
    pending: Option<Inbound>,
    /// Clients with a blocked reply (retried on a short timer).
    blocked: usize,
}

/// What the reader of a batch uses; held over the batch.
struct Reading {
    identity: zmq::Message,
    body: RawMsg,
    scratch: zmq::Message,
    /// Routes every frame read (the shared inbound router and its arena).
    router: Router,
}

/// What the ROUTER's reader task and the I/O thread share.
pub(crate) struct RouterCore {
    /// The ROUTER, for as long as the I/O thread keeps it open.
    socket: Weak<Mutex<zmq::Socket>>,
    /// Its `ZMQ_FD` (valid while `socket` upgrades).
    fd: RawFd,
    state: Mutex<State>,
    reading: Mutex<Reading>,
    /// Mirrors `state.pending.is_some()`, read once per message.
    stalled: AtomicBool,
    /// Whether a secret is configured (frames carry their connection then).
    gated: bool,
    inbox: Inbox,
    settings: Settings,
    control: Arc<Control>,
    shared: Arc<IoShared>,
}

impl RouterCore {
    /// The shared side of the bound ROUTER `socket`.
    pub(crate) fn new(
        socket: &SharedSocket,
        inbox: Inbox,
        settings: Settings,
        (control, shared): (Arc<Control>, Arc<IoShared>),
    ) -> Arc<Self> {
        // A client gets its connect timeout to finish a handshake it began.
        let gate = settings.secret.clone().map(|secret| {
            Gate::new(
                secret,
                settings.connect_timeout.max(settings.heartbeat_timeout),
            )
        });
        Arc::new(Self {
            socket: socket.weak(),
            fd: socket.fd(),
            gated: gate.is_some(),
            state: Mutex::new(State {
                clients: HashMap::new(),
                gate,
                pending: None,
                blocked: 0,
            }),
            reading: Mutex::new(Reading {
                identity: zmq::Message::new(),
                body: RawMsg::new(),
                scratch: zmq::Message::new(),
                router: Router::new(),
            }),
            stalled: AtomicBool::new(false),
            inbox,
            settings,
            control,
            shared,
        })
    }

    /// Whether an invocation waits for room in the inbox (the ROUTER is
    /// not read meanwhile).
    pub(crate) fn is_stalled(&self) -> bool {
        // Acquire: pairs with the Release in `set_pending`.
        self.stalled.load(Ordering::Acquire)
    }

    /// Sets or clears the stalled invocation (under the state lock).
    fn set_pending(&self, state: &mut State, pending: Option<Inbound>) {
        // Release: pairs with the Acquire in `is_stalled`.
        self.stalled.store(pending.is_some(), Ordering::Release);
        state.pending = pending;
    }

    /// After a call on the ROUTER by a thread other than its reader task:
    /// kicks the task if a message waits (the call may have taken the
    /// signal the task sleeps on; see `task`).
    fn after_call(&self, socket: &zmq::Socket) {
        if self.shared.router_task.reads() {
            let events = socket.get_events().unwrap_or(zmq::POLLIN);
            self.shared.router_task.kick_if_reading(events);
        }
    }
}

/// The I/O thread's side: it owns the socket (dropping it closes it).
pub(crate) struct RouterSide {
    pub(crate) socket: SharedSocket,
    pub(crate) core: Arc<RouterCore>,
    /// Input was seen waiting at the last tick while the task reads.
    stale: bool,
}

impl RouterSide {
    /// The I/O thread's handle on the ROUTER of `core`.
    pub(crate) fn new(socket: SharedSocket, core: Arc<RouterCore>) -> Self {
        Self {
            socket,
            core,
            stale: false,
        }
    }

    /// Whether the I/O thread should read the ROUTER now: no invocation
    /// waits for room, and no reader task reads it (or shutdown drains).
    pub(crate) fn io_reads(&self, stopping: bool) -> bool {
        !self.core.is_stalled() && (stopping || !self.core.shared.router_task.reads())
    }

    /// Whether something must be retried soon (stall or blocked replies).
    pub(crate) fn needs_retry(&self) -> bool {
        self.core.is_stalled() || self.core.state.lock().blocked > 0
    }

    /// Reads up to `budget` messages on the I/O thread; returns whether
    /// one went to the application.
    pub(crate) fn read(&mut self, budget: usize) -> bool {
        let delivered = self.core.read_batch(false, budget).delivered;
        // Our reads may have taken the signal of frames left unread (the
        // budget ran out): the task must not wait for one.
        self.core.after_call(&self.socket.lock());
        delivered
    }
}

/// The instance id a routing id stands for (our DEALERs use the 16 id bytes).
fn instance_of(identity: &[u8]) -> Option<InstanceId> {
    let bytes: [u8; 16] = identity.try_into().ok()?;
    Some(InstanceId::from_bytes(bytes))
}
