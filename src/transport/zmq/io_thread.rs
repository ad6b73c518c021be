//! The one thread that owns every libzmq socket of a transport.
//!
//! Each turn of its loop: take the links that have queued frames (the dirty
//! list) and move their frames into the sockets, run connect commands, retry a
//! stalled invocation, run heartbeats and deadlines, then sleep in
//! `zmq::poll` on the doorbell eventfd, the ROUTER (unless stalled or read
//! by its reader task on the runtime), and every DEALER and its monitor.

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

mod poll;

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
