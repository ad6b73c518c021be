//! The one thread that owns every libzmq socket of a transport.
//!
//! Each turn of its loop: take the links that have queued frames (the dirty
//! list) and move their frames into the sockets, run connect commands, retry a
//! stalled invocation, run heartbeats and deadlines, then sleep in
//! `zmq::poll` on the doorbell eventfd, the ROUTER (unless stalled), and
//! every DEALER and its monitor.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::dealer::{Dealer, Teardown, Waiter, millis};
use super::frames::Control;
pub(crate) use super::io_env::{Env, Settings};
use super::link::{IoShared, Route, ZmqLink};
use super::router::{RouterCore, RouterSide};
use super::shared::SharedSocket;
use crate::error::Error;
use crate::ids::InstanceId;
use crate::transport::Inbox;

/// Frames read from one socket per turn, so no peer starves the others.
const READ_BUDGET: usize = 64;
/// Retry period while an invocation waits for room or a reply for its client.
const RETRY: Duration = Duration::from_millis(1);

/// A request from an async caller to the I/O thread.
pub(crate) enum Command {
    /// Open (or reuse) the outbound link to `peer` at `endpoint`.
    Connect {
        peer: InstanceId,
        endpoint: String,
        reply: Waiter,
    },
}

/// The I/O thread's state.
pub(crate) struct IoThread {
    env: Env,
    router: RouterSide,
    dealers: Vec<Dealer>,
    commands: mpsc::Receiver<Command>,
    next_tick: Instant,
    last_tick: Instant,
    spin_until: Option<Instant>,
    /// Reused buffers (no allocation per turn).
    dirty: Vec<Arc<ZmqLink>>,
    poll_items: Vec<zmq::PollItem<'static>>,
    ready: Vec<zmq::PollEvents>,
    downs: Vec<(usize, Teardown)>,
    body: zmq::Message,
}

impl IoThread {
    /// Takes over the bound ROUTER (shared with its reader task through
    /// `core`) and its context.
    pub(crate) fn new(
        ctx: zmq::Context,
        (router, core): (SharedSocket, Arc<RouterCore>),
        (local, inbox, settings): (InstanceId, Inbox, Settings),
        (control, shared): (Arc<Control>, Arc<IoShared>),
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let now = Instant::now();
        Self {
            env: Env {
                ctx,
                local,
                inbox,
                settings,
                control,
                shared,
                delivered: false,
            },
            router: RouterSide::new(router, core),
            dealers: Vec::new(),
            commands,
            next_tick: now,
            last_tick: now,
            spin_until: None,
            dirty: Vec::new(),
            poll_items: Vec::new(),
            ready: Vec::new(),
            downs: Vec::new(),
            body: zmq::Message::new(),
        }
    }

    /// Runs until shutdown is requested, lets the outbound links drain
    /// what they accepted (within the drain timeout), then says goodbye and
    /// closes.
    pub(crate) fn run(mut self) {
        tracing::debug!(local = %self.env.local, "zmq: I/O thread started");
        while !self.env.shared.is_shut_down() {
            self.turn();
        }
        let deadline = Instant::now() + self.env.settings.drain_timeout;
        while !self.drained() && Instant::now() < deadline {
            self.turn();
        }
        self.finish(deadline);
    }

    /// Whether every outbound link's peer has read all it accepted.
    fn drained(&mut self) -> bool {
        let mut all = !self.env.shared.has_dirty();
        for dealer in &mut self.dealers {
            all &= dealer.drain_step(&mut self.env);
        }
        all
    }

    /// One pass: queued frames out, commands, retries, heartbeats, then poll.
    fn turn(&mut self) {
        {
            let now = Instant::now();
            self.drain_dirty(now);
            self.drain_commands(now);
            self.router.retry(now);
            if now >= self.next_tick {
                self.next_tick = now + self.env.settings.tick();
                self.tick(now);
            }
            let timeout = self.poll_timeout(now);
            if self.poll(timeout) {
                self.handle_ready();
            } else if timeout == 0 && self.spin_until.is_some() {
                // Spin politely: a waking application thread may need this core.
                std::thread::yield_now();
            }
        }
    }

    /// Moves frames of every dirty link into its socket; handles close requests.
    fn drain_dirty(&mut self, now: Instant) {
        self.env.shared.take_dirty(&mut self.dirty);
        let mut dirty = std::mem::take(&mut self.dirty);
        if !dirty.is_empty() {
            // The application answered; what comes next is a network round trip away.
            self.spin_until = None;
        }
        for link in dirty.drain(..) {
            // Cleared before draining: a frame queued after this re-lists the link.
            link.dirty.swap(false, std::sync::atomic::Ordering::AcqRel);
            match link.route {
                Route::Reverse(_) => self.router.on_dirty(&link, now),
                Route::Outbound => self.drain_outbound(&link, now),
            }
        }
        self.dirty = dirty;
    }

    fn drain_outbound(&mut self, link: &ZmqLink, now: Instant) {
        let Some(index) = self.dealers.iter().position(|d| d.link_id == link.id) else {
            return;
        };
        let dealer = &mut self.dealers[index];
        // A goodbye read by the link's reader task ends the link here.
        let down = dealer.flush(now).or_else(|| {
            link.rx
                .said_goodbye()
                .then_some(Teardown::Lost("peer said goodbye"))
        });
        if down.is_none()
            && !link
                .close_requested
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let mut dealer = self.dealers.swap_remove(index);
        let why = down.unwrap_or_else(|| {
            let linger = self.env.settings.goodbye_linger;
            dealer.say_goodbye(&mut self.env, linger);
            Teardown::Closed
        });
        dealer.teardown(&self.env, why);
    }

    fn drain_commands(&mut self, now: Instant) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Connect {
                    peer,
                    endpoint,
                    reply,
                } => self.connect(peer, &endpoint, reply, now),
            }
        }
    }

    /// Reuses a live link or a connect in progress to `peer`, else dials.
    fn connect(&mut self, peer: InstanceId, endpoint: &str, reply: Waiter, now: Instant) {
        let mut reply = Some(reply);
        // A nil peer is a discovery: it never joins another connect.
        let reusable = |d: &Dealer| d.peer == peer && peer != InstanceId::nil();
        if let Some(index) = self.dealers.iter().position(reusable) {
            let dealer = &mut self.dealers[index];
            if let Some(link) = dealer.live_link() {
                let link = Arc::clone(link);
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Ok(link));
                }
                return;
            }
            match reply.take().and_then(|r| dealer.join_connect(r)) {
                None => return,
                Some(back) => {
                    // Up but closed: its close is not processed yet; do it now.
                    reply = Some(back);
                    let mut old = self.dealers.swap_remove(index);
                    let linger = self.env.settings.goodbye_linger;
                    old.say_goodbye(&mut self.env, linger);
                    old.teardown(&self.env, Teardown::Closed);
                }
            }
        }
        let Some(reply) = reply else { return };
        match Dealer::open(&mut self.env, peer, endpoint, now) {
            Ok(mut dealer) => {
                // A fresh dealer is connecting, so it always takes the waiter.
                if let Some(reply) = dealer.join_connect(reply) {
                    let _ = reply.send(Err(Error::transport("connect state lost")));
                }
                self.dealers.push(dealer);
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        // Time this thread did not run (starved, or the process was stopped)
        // is not the peers' silence: their frames wait unread in the sockets.
        let paused = now
            .saturating_duration_since(self.last_tick)
            .saturating_sub(2 * self.env.settings.tick());
        self.last_tick = now;
        if !paused.is_zero() {
            tracing::debug!(?paused, "zmq: the I/O thread did not run for a while");
            for dealer in &mut self.dealers {
                dealer.excuse(paused, now);
            }
            self.router.excuse(paused, now);
        }
        for (index, dealer) in self.dealers.iter_mut().enumerate() {
            if let Some(down) = dealer.tick(&mut self.env, now) {
                self.downs.push((index, down));
            }
        }
        self.remove_downs();
        self.env.delivered |= self.router.tick(now);
    }

    /// Tears down the DEALERs listed in `downs` (highest index first, so
    /// `swap_remove` leaves the other indices valid).
    fn remove_downs(&mut self) {
        self.downs
            .sort_unstable_by_key(|down| std::cmp::Reverse(down.0));
        for (index, why) in self.downs.drain(..) {
            let dealer = self.dealers.swap_remove(index);
            dealer.teardown(&self.env, why);
        }
    }

    /// Milliseconds `zmq::poll` may sleep (0: don't).
    fn poll_timeout(&mut self, now: Instant) -> i64 {
        if self.env.shared.take_sent() {
            // The application answered straight into a socket; what comes
            // next is a network round trip away.
            self.spin_until = None;
        }
        if self.spin_until.is_some_and(|until| now < until) {
            return 0;
        }
        self.spin_until = None;
        let mut wake_at = self.next_tick;
        for deadline in self.dealers.iter().filter_map(Dealer::deadline) {
            wake_at = wake_at.min(deadline);
        }
        if self.router.needs_retry() {
            wake_at = wake_at.min(now + RETRY);
        }
        // Arm the doorbell, then look once more for work queued meanwhile.
        if self.env.shared.arm() || !self.commands.is_empty() {
            return 0;
        }
        let left = wake_at.saturating_duration_since(now);
        if left.is_zero() {
            0
        } else {
            // Round up: a sub-millisecond wait must not become a busy loop.
            i64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
        }
    }

    /// Polls every socket; returns whether anything is ready.
    ///
    /// Sockets are polled by their `ZMQ_FD`, which callers' direct sends may
    /// reset, so `ZMQ_EVENTS` decides: read before sleeping (a message may
    /// already wait without the fd saying so) and after waking (the fd firing
    /// means only that libzmq had commands to process).
    fn poll(&mut self, timeout_ms: i64) -> bool {
        let stopping = self.env.shared.is_shut_down();
        let router_wants = if self.router.io_reads(stopping) {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        };
        let timeout_ms = if timeout_ms != 0 && self.sockets_ready(router_wants) {
            0
        } else {
            timeout_ms
        };
        let mut items: Vec<zmq::PollItem<'_>> = std::mem::take(&mut self.poll_items);
        items.push(zmq::PollItem::from_fd(
            self.env.shared.doorbell().as_raw_fd(),
            zmq::POLLIN,
        ));
        items.push(self.router.socket.poll_item(!router_wants.is_empty()));
        for dealer in &self.dealers {
            let listen = !dealer_wants(dealer, stopping).is_empty();
            items.push(dealer.sockets.socket.poll_item(listen));
            items.push(dealer.sockets.events.as_poll_item(zmq::POLLIN));
        }
        let result = zmq::poll(&mut items, timeout_ms);
        self.env.shared.disarm();
        self.ready.clear();
        self.ready.push(items[0].get_revents());
        self.ready.push(self.router.socket.ready(router_wants));
        for (index, dealer) in self.dealers.iter().enumerate() {
            self.ready
                .push(dealer.ready(dealer_wants(dealer, stopping)));
            self.ready.push(items[3 + 2 * index].get_revents());
        }
        self.poll_items = recycle(items);
        if let Err(err) = result {
            tracing::warn!(%err, "zmq: poll failed");
        }
        self.ready.iter().any(|events| !events.is_empty())
    }

    /// Whether a socket already has what the I/O thread waits for.
    fn sockets_ready(&self, router_wants: zmq::PollEvents) -> bool {
        let stopping = self.env.shared.is_shut_down();
        !self.router.socket.ready(router_wants).is_empty()
            || self
                .dealers
                .iter()
                .any(|dealer| !dealer.ready(dealer_wants(dealer, stopping)).is_empty())
    }

    /// Serves whatever `poll` found ready.
    fn handle_ready(&mut self) {
        let now = Instant::now();
        if self.ready[0].contains(zmq::POLLIN) {
            self.env.shared.clear_doorbell();
        }
        if self.ready[1].contains(zmq::POLLIN) {
            self.env.delivered |= self.router.read(READ_BUDGET);
        }
        for (index, dealer) in self.dealers.iter_mut().enumerate() {
            let (data, monitor) = (self.ready[2 + 2 * index], self.ready[3 + 2 * index]);
            let mut down = None;
            if data.contains(zmq::POLLIN) {
                down = dealer.read(&mut self.env, now, &mut self.body, READ_BUDGET);
            }
            if down.is_none() && data.contains(zmq::POLLOUT) {
                down = dealer.flush(now);
            }
            if down.is_none() && monitor.contains(zmq::POLLIN) {
                down = dealer.read_monitor(&mut self.body);
            }
            if let Some(down) = down {
                self.downs.push((index, down));
            }
        }
        self.remove_downs();
        if std::mem::take(&mut self.env.delivered) && !self.env.settings.spin.is_zero() {
            // A direct send from before this delivery does not answer it.
            self.env.shared.take_sent();
            self.spin_until = Some(now + self.env.settings.spin);
        }
    }

    /// Shutdown: fail queued connects, say goodbye everywhere, close sockets
    /// (lingering until `deadline` at most for what libzmq still queues).
    fn finish(mut self, deadline: Instant) {
        tracing::debug!(local = %self.env.local, "zmq: I/O thread shutting down");
        self.commands.close();
        while let Ok(Command::Connect { reply, .. }) = self.commands.try_recv() {
            let _ = reply.send(Err(Error::ShuttingDown));
        }
        let linger = deadline
            .saturating_duration_since(Instant::now())
            .max(self.env.settings.goodbye_linger);
        let mut undrained = 0;
        for mut dealer in std::mem::take(&mut self.dealers) {
            let _ = dealer.flush(Instant::now());
            if !dealer.drained() {
                undrained += 1;
                tracing::warn!(peer = %dealer.peer, "zmq: drain timeout passed before the peer read everything sent to it");
            }
            dealer.say_goodbye(&mut self.env, linger);
            dealer.teardown(&self.env, Teardown::Closed);
        }
        self.env.shared.set_undrained(undrained);
        self.router.finish();
        // Links listed after this point are never drained: drop them now.
        self.env.shared.take_dirty(&mut self.dirty);
        self.dirty.clear();
        let millis = millis(self.env.settings.goodbye_linger);
        tracing::trace!(millis, "zmq: closing sockets (goodbyes may linger)");
        // Dropping `self` closes the sockets, then the context waits for the
        // goodbyes to leave (at most the linger).
    }
}

/// What the I/O thread waits for on a DEALER: frames unless the link's
/// reader task reads them (`reader`), and room while a frame is blocked.
fn dealer_wants(dealer: &Dealer, stopping: bool) -> zmq::PollEvents {
    let mut wants = zmq::PollEvents::empty();
    if dealer.io_reads(stopping) {
        wants |= zmq::POLLIN;
    }
    if dealer.wants_pollout() {
        wants |= zmq::POLLOUT;
    }
    wants
}

/// Empties a poll list and gives its allocation back for the next turn.
fn recycle(mut items: Vec<zmq::PollItem<'_>>) -> Vec<zmq::PollItem<'static>> {
    items.clear();
    // Collecting an empty `vec::IntoIter` into an element type of the same
    // layout reuses the allocation (in-place iteration).
    items
        .into_iter()
        .map(|_| -> zmq::PollItem<'static> { unreachable!("the list was just cleared") })
        .collect()
}
