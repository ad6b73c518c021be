//! Outbound links: one DEALER per peer, its monitor, the connect handshake
//! and heartbeats. Runs on the I/O thread only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod handshake;

use super::auth::ClientAuth;
use super::frames::expects_reply;
use super::io_thread::Env;
use super::link::ZmqLink;
use super::monitor::{self, MonitorEvent, Monitored};
use super::reader::{self, Read};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::transport::PeerLink;
use crate::wire::{self, ErrorCode, FrameRef, Kind, flags};

/// Who waits for a connect to finish.
pub(crate) type Waiter = oneshot::Sender<Result<Arc<ZmqLink>>>;

/// Why an outbound link is torn down.
#[derive(Debug)]
pub(crate) enum Teardown {
    /// The peer is gone: report `on_link_lost` (when the link was up).
    Lost(&'static str),
    /// Closed on our side (`close`, shutdown): no `on_link_lost`.
    Closed,
    /// The connect failed with this error (the link never came up).
    Failed(Error),
}

enum State {
    /// Probe sent, waiting for the pong.
    Connecting {
        deadline: Instant,
        probe: MessageId,
        waiters: Vec<Waiter>,
        /// Our side of the authentication handshake, with a secret.
        auth: Option<ClientAuth>,
    },
    /// Handshake done; frames flow.
    Up { link: Arc<ZmqLink> },
}

/// Where a link is in the shutdown drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// Not started (or frames still queued).
    Idle,
    /// A probe went out behind the last frame.
    Probed(MessageId),
    /// The peer answered it: it has read everything.
    Done,
}

/// One outbound DEALER and its state.
pub(crate) struct Dealer {
    /// Id of the link this DEALER carries.
    pub(crate) link_id: u64,
    /// The peer we expect at the other end.
    pub(crate) peer: InstanceId,
    endpoint: String,
    /// The DEALER and its monitor (detached before both close).
    pub(crate) sockets: Monitored,
    state: State,
    /// Last sign of life from the peer (a frame from it, or room again in
    /// a full pipe to it), last frame to it, last probe.
    last_rx: Instant,
    last_tx: Instant,
    last_probe: Instant,
    /// A frame the socket had no room for (sent first when it has).
    blocked: Option<zmq::Message>,
    /// Shutdown drain: the probe sent behind the last frame, answered yet?
    drain: Drain,
    /// The link's frame count (`RxShared::frames`) at the last look.
    rx_seen: u64,
    /// Frames sent on the link (by anyone) at the last look: see `note_tx`.
    tx_seen: u64,
    /// A message waited for the reader task at the last tick.
    stale: bool,
}

fn zmq_err(what: &str) -> impl Fn(zmq::Error) -> Error + '_ {
    move |err| Error::transport(format!("{what}: {err}"))
}

impl Dealer {
    /// Creates the DEALER, connects it and sends the handshake probe.
    /// Callers wait for the outcome through [`Self::join_connect`].
    pub(crate) fn open(
        env: &mut Env,
        peer: InstanceId,
        endpoint: &str,
        now: Instant,
    ) -> Result<Self> {
        let link_id = env.new_link_id();
        let socket = env.ctx.socket(zmq::DEALER).map_err(zmq_err("zmq socket"))?;
        env.settings
            .apply(&socket)
            .and_then(|()| socket.set_identity(env.local.as_bytes()))
            .and_then(|()| socket.set_connect_timeout(millis(env.settings.connect_timeout)))
            .map_err(zmq_err("zmq dealer options"))?;
        let sockets = Monitored::attach(&env.ctx, socket, format!("am-zmq-monitor-{link_id}"))?;
        let socket = sockets.socket.lock();
        socket
            .connect(endpoint)
            .map_err(|err| Error::transport(format!("connect to {endpoint:?}: {err}")))?;
        // With a secret the opening probe is a hello (`auth::ClientAuth`).
        let (auth, (probe, msg)) = match &env.settings.secret {
            Some(_) => {
                let (auth, hello) = ClientAuth::start(&env.control)?;
                (Some(auth), hello)
            }
            None => (None, env.control.probe()),
        };
        socket
            .send(msg, zmq::DONTWAIT)
            .map_err(zmq_err("zmq send probe"))?;
        drop(socket);
        tracing::debug!(%peer, endpoint, "zmq: connecting");
        Ok(Self {
            link_id,
            peer,
            endpoint: endpoint.to_owned(),
            sockets,
            state: State::Connecting {
                deadline: now + env.settings.connect_timeout,
                probe,
                waiters: Vec::new(),
                auth,
            },
            last_rx: now,
            last_tx: now,
            last_probe: now,
            blocked: None,
            drain: Drain::Idle,
            rx_seen: 0,
            tx_seen: 0,
            stale: false,
        })
    }

    /// The live link, if the handshake is done and it is not closed.
    pub(crate) fn live_link(&self) -> Option<&Arc<ZmqLink>> {
        match &self.state {
            State::Up { link, .. } if !link.is_closed() => Some(link),
            _ => None,
        }
    }

    /// Adds a waiter to a connect in progress; gives it back when the link is
    /// already up (or closed).
    pub(crate) fn join_connect(&mut self, waiter: Waiter) -> Option<Waiter> {
        match &mut self.state {
            State::Connecting { waiters, .. } => {
                waiters.push(waiter);
                None
            }
            State::Up { .. } => Some(waiter),
        }
    }

    /// Whether the I/O thread should poll for room to send.
    pub(crate) fn wants_pollout(&self) -> bool {
        self.blocked.is_some()
    }

    /// Connect deadline, while connecting.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Up { .. } => None,
        }
    }

    /// The link, once up (its reader task is kicked after our calls).
    fn up_link(&self) -> Option<&ZmqLink> {
        match &self.state {
            State::Up { link } => Some(link),
            State::Connecting { .. } => None,
        }
    }

    /// The socket's `ZMQ_EVENTS` within `wanted` (none when nothing is
    /// wanted, without touching the socket), kicking the reader task as
    /// every call by the I/O thread does.
    pub(crate) fn ready(&self, wanted: zmq::PollEvents) -> zmq::PollEvents {
        if wanted.is_empty() {
            return wanted;
        }
        let socket = self.sockets.socket.lock();
        events_after_call(self.up_link(), &socket) & wanted
    }

    fn writable(&self) -> bool {
        let socket = self.sockets.socket.lock();
        events_after_call(self.up_link(), &socket).contains(zmq::POLLOUT)
    }

    /// Sends one of the transport's own frames if the socket takes it now.
    fn send_control(&self, msg: zmq::Message) -> bool {
        let socket = self.sockets.socket.lock();
        let sent = socket.send(msg, zmq::DONTWAIT).is_ok();
        // The send may have taken the reader task's signal.
        events_after_call(self.up_link(), &socket);
        sent
    }

    /// Moves queued frames into the socket while it has room.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<Teardown> {
        let State::Up { link } = &self.state else {
            return None;
        };
        let socket = self.sockets.socket.lock();
        let mut sent_any = false;
        let down = loop {
            let was_blocked = self.blocked.is_some();
            let Some(msg) = self.blocked.take().or_else(|| link.queue.pop()) else {
                break None;
            };
            // `send` consumes the message even when it fails, so look first.
            if !events_after_call(Some(link), &socket).contains(zmq::POLLOUT) {
                self.blocked = Some(msg);
                break None;
            }
            if let Err(err) = socket.send(msg, zmq::DONTWAIT) {
                tracing::warn!(peer = %self.peer, %err, "zmq: send on dealer failed");
                break Some(Teardown::Lost("send failed"));
            }
            sent_any = true;
            // Under the socket's mutex (see `FrameQueue::sent_one`).
            link.queue.sent_one();
            self.last_tx = now;
            if was_blocked {
                // Room came back in a full pipe: the peer reads what we
                // send, a sign of life. A flood keeps the pipe full, and a
                // probe waits behind it, so without this a slow but live
                // peer would be lost to the heartbeat timeout.
                self.last_rx = self.last_rx.max(now);
            }
        };
        if sent_any {
            // The last send may have taken the reader task's signal.
            events_after_call(Some(link), &socket);
        }
        link.rx.set_wants_room(self.blocked.is_some());
        down
    }

    /// One step of the shutdown drain; true once the peer has read every
    /// frame this link accepted. A probe sent behind the last frame is
    /// answered only when the peer's ROUTER reads it, which it does in order
    /// and only with room for what came before (no timer involved).
    pub(crate) fn drain_step(&mut self, env: &mut Env) -> bool {
        if !matches!(self.state, State::Up { .. }) {
            return true;
        }
        if self.has_backlog() {
            return false;
        }
        if let (Drain::Probed(id), State::Up { link }) = (self.drain, &self.state)
            && link.rx.pong_answers(id.0)
        {
            self.drain = Drain::Done;
        }
        match self.drain {
            Drain::Idle if self.writable() => {
                let (id, probe) = env.control.probe();
                if self.send_control(probe) {
                    self.drain = Drain::Probed(id);
                }
                false
            }
            Drain::Idle | Drain::Probed(_) => false,
            Drain::Done => true,
        }
    }

    /// Whether the shutdown drain finished here (or there was nothing to drain).
    pub(crate) fn drained(&self) -> bool {
        !matches!(self.state, State::Up { .. }) || self.drain == Drain::Done
    }

    /// Whether frames accepted for this peer still wait in our queue.
    pub(crate) fn has_backlog(&self) -> bool {
        match &self.state {
            State::Up { link } => self.blocked.is_some() || !link.queue.is_empty(),
            State::Connecting { .. } => false,
        }
    }

    /// Sends the goodbye (best effort) and lets what libzmq still queues
    /// linger on close for at most `linger`.
    pub(crate) fn say_goodbye(&mut self, env: &mut Env, linger: Duration) {
        if !matches!(self.state, State::Up { .. }) {
            return;
        }
        if self.blocked.is_none() && self.writable() {
            let goodbye = env.control.goodbye();
            self.send_control(goodbye);
        }
        let _ = self.sockets.socket.lock().set_linger(millis(linger));
    }

    /// Whether the I/O thread reads this DEALER's input: always before the
    /// link is up and in the shutdown drain, otherwise only while no reader
    /// task does (`reader`).
    pub(crate) fn io_reads(&self, shutting_down: bool) -> bool {
        match &self.state {
            State::Up { link } => shutting_down || !link.rx.task_reads(),
            State::Connecting { .. } => true,
        }
    }

    /// Counts frames callers sent straight into the socket (requests and
    /// replies do not pass this thread) as traffic the peer hears, so a busy
    /// link is not probed as if it were idle.
    fn note_tx(&mut self, now: Instant) {
        if let State::Up { link } = &self.state {
            let sent = link.counters.values().messages_out;
            if sent != self.tx_seen {
                self.tx_seen = sent;
                self.last_tx = self.last_tx.max(now);
            }
        }
    }

    /// Counts frames another reader took from the peer as signs of life.
    fn note_rx(&mut self, now: Instant) {
        if let State::Up { link } = &self.state {
            let frames = link.rx.frames();
            if frames != self.rx_seen {
                self.rx_seen = frames;
                self.last_rx = now;
            }
        }
    }

    /// Reads up to `budget` frames from the peer.
    pub(crate) fn read(
        &mut self,
        env: &mut Env,
        now: Instant,
        body: &mut zmq::Message,
        budget: usize,
    ) -> Option<Teardown> {
        if let State::Up { link } = &self.state {
            // Read exactly as the link's reader task reads.
            let link = Arc::clone(link);
            // Never waits for the task: it is reading then anyway.
            let events = (&*env.inbox.events, env.settings.max_frame, false);
            let mut delivered = false;
            let read = reader::read_up(
                &link,
                self.sockets.socket.mutex(),
                events,
                body,
                &mut delivered,
            );
            env.delivered |= delivered;
            self.note_rx(now);
            return (read == Read::Goodbye).then_some(Teardown::Lost("peer said goodbye"));
        }
        for _ in 0..budget {
            if self
                .sockets
                .socket
                .lock()
                .recv(body, zmq::DONTWAIT)
                .is_err()
            {
                return None;
            }
            if body.get_more() {
                let first = body.len();
                let extra = skip_rest(&self.sockets.socket.lock(), body);
                let err = wire::ProtocolError::LengthMismatch {
                    declared: first as u64,
                    actual: first + extra,
                };
                env.inbox.events.on_protocol_error(Some(self.peer), &err);
                continue;
            }
            match wire::decode(body, env.settings.max_frame) {
                Ok(frame) => {
                    self.last_rx = now;
                    if let Some(down) = self.on_frame(env, &frame) {
                        return Some(down);
                    }
                }
                Err(err) => {
                    tracing::debug!(peer = %self.peer, %err, "zmq: malformed frame on dealer");
                    env.inbox.events.on_protocol_error(Some(self.peer), &err);
                }
            }
        }
        None
    }

    fn on_frame(&mut self, env: &mut Env, frame: &FrameRef<'_>) -> Option<Teardown> {
        let header = &frame.header;
        match (&self.state, header.kind) {
            (State::Connecting { probe, auth, .. }, Kind::Error)
                if header.correlation_id == *probe
                    || auth
                        .as_ref()
                        .is_some_and(|a| a.proof_id == Some(header.correlation_id)) =>
            {
                // The peer refused our handshake (it wants a secret we lack or
                // do not share).
                let why = String::from_utf8_lossy(frame.payload);
                return Some(Teardown::Failed(Error::Refused(format!(
                    "{} at {}: {why}",
                    self.peer, self.endpoint
                ))));
            }
            (_, kind) if kind.is_reply() => {
                env.inbox.events.on_reply(header, frame.payload);
                env.delivered = true;
            }
            (State::Connecting { .. }, Kind::Heartbeat) if header.has(flags::PONG) => {
                return self.handshake(env, frame);
            }
            (_, Kind::Heartbeat) => {}
            (State::Up { .. }, Kind::Goodbye) => return Some(Teardown::Lost("peer said goodbye")),
            (State::Connecting { .. }, Kind::Goodbye) => {
                return Some(Teardown::Failed(Error::ShuttingDown));
            }
            (_, kind) => {
                // Invocations travel on the peer's ROUTER, never back on our DEALER.
                tracing::warn!(peer = %self.peer, ?kind, "zmq: invocation on an outbound link refused");
                if expects_reply(kind) && self.writable() {
                    let msg = env.control.error(
                        header,
                        ErrorCode::Refused,
                        "invocations are not accepted on this link",
                    );
                    let _ = self.sockets.socket.lock().send(msg, zmq::DONTWAIT);
                }
            }
        }
        None
    }

    /// Reacts to the monitor: a refused or closed connection ends the link now.
    pub(crate) fn read_monitor(&mut self, scratch: &mut zmq::Message) -> Option<Teardown> {
        match monitor::drain(&self.sockets.events, scratch)? {
            MonitorEvent::Down(why) => match self.state {
                State::Connecting { .. } => Some(Teardown::Failed(Error::transport(format!(
                    "cannot reach {} at {}: {why}",
                    self.peer, self.endpoint
                )))),
                State::Up { .. } => Some(Teardown::Lost(why)),
            },
            MonitorEvent::Connected | MonitorEvent::Other => None,
        }
    }

    /// Does not count `paused` (time the I/O thread did not run) as silence.
    pub(crate) fn excuse(&mut self, paused: Duration, now: Instant) {
        self.last_rx = (self.last_rx + paused).min(now);
    }

    /// Heartbeats and deadlines.
    pub(crate) fn tick(&mut self, env: &mut Env, now: Instant) -> Option<Teardown> {
        if let State::Connecting { deadline, .. } = self.state {
            return (now >= deadline).then_some(Teardown::Failed(Error::Timeout(
                env.settings.connect_timeout,
            )));
        }
        if let Some(down) = self.read_stale_input(env, now) {
            return Some(down);
        }
        self.note_rx(now);
        self.note_tx(now);
        let silent = now.saturating_duration_since(self.last_rx);
        if silent >= env.settings.heartbeat_timeout {
            return Some(Teardown::Lost("heartbeat timeout"));
        }
        // Probe when we sent nothing for an interval (the peer hears we live)
        // or heard nothing for one (a peer that only answers probes).
        let interval = env.settings.heartbeat_interval;
        let idle = now.saturating_duration_since(self.last_tx) >= interval;
        if (idle || silent >= interval)
            && now.saturating_duration_since(self.last_probe) >= interval
            && self.blocked.is_none()
            && self.writable()
        {
            let (_, probe) = env.control.probe();
            if self.send_control(probe) {
                self.last_probe = now;
                self.last_tx = now;
            }
        }
        None
    }

    /// While a reader task reads this DEALER: input that waited a whole tick
    /// unread (its runtime is not running, e.g. a current-thread runtime
    /// between `block_on` calls) is read here, so replies, pongs and
    /// goodbyes are never held hostage by a runtime that sleeps.
    fn read_stale_input(&mut self, env: &mut Env, now: Instant) -> Option<Teardown> {
        let task_reads = matches!(&self.state, State::Up { link } if link.rx.task_reads());
        if !task_reads {
            self.stale = false;
            return None;
        }
        // Kicks the task if a message waits (see `events_after_call`).
        let waiting = self.ready(zmq::POLLIN).contains(zmq::POLLIN);
        let stale = std::mem::replace(&mut self.stale, waiting);
        if !(waiting && stale) {
            return None;
        }
        tracing::trace!(peer = %self.peer, "zmq: the link's reader task did not run; reading here");
        self.stale = false;
        let mut body = zmq::Message::new();
        self.read(env, now, &mut body, 64)
    }

    /// Ends this DEALER: fails waiters or closes the link, reports a loss.
    pub(crate) fn teardown(self, env: &Env, why: Teardown) {
        match self.state {
            State::Connecting { waiters, .. } => {
                let err = match why {
                    Teardown::Failed(err) => err,
                    Teardown::Closed => Error::ShuttingDown,
                    Teardown::Lost(reason) => Error::transport(format!(
                        "cannot reach {} at {}: {reason}",
                        self.peer, self.endpoint
                    )),
                };
                tracing::debug!(peer = %self.peer, endpoint = %self.endpoint, %err, "zmq: connect failed");
                let mut waiters = waiters.into_iter();
                if let Some(first) = waiters.next() {
                    for other in waiters {
                        let _ = other.send(Err(clone_err(&err)));
                    }
                    let _ = first.send(Err(err));
                }
            }
            State::Up { link } => {
                if matches!(why, Teardown::Lost(_)) {
                    link.begin_loss_report();
                }
                link.mark_closed();
                link.queue.close();
                link.rx.stop();
                if let Teardown::Lost(reason) = why {
                    // What the peer sent before it went is delivered before
                    // its loss, whether or not the reader task got to it.
                    drain_input(&link, &self.sockets, env);
                    link.loss_reporting_done();
                    tracing::info!(peer = %self.peer, endpoint = %self.endpoint, reason, "zmq: link lost");
                    env.inbox.events.on_link_lost(self.peer);
                } else {
                    tracing::debug!(peer = %self.peer, "zmq: link closed");
                }
            }
        }
        // Dropping the sockets closes them; LINGER is 0 unless a goodbye was sent.
    }
}

/// The DEALER's `ZMQ_EVENTS` after a call on it by the I/O thread, kicking
/// the link's reader task when a message waits: the call may have taken the
/// signal the task sleeps on (see `reader`).
fn events_after_call(link: Option<&ZmqLink>, socket: &zmq::Socket) -> zmq::PollEvents {
    let events = socket.get_events().unwrap_or(zmq::PollEvents::empty());
    if let Some(link) = link {
        link.rx.kick_if_reading(events);
    }
    events
}

/// Reads and routes whatever input a lost link still holds (waiting for a
/// reader task that is mid-batch, so the order holds).
fn drain_input(link: &ZmqLink, sockets: &Monitored, env: &Env) {
    let events = (&*env.inbox.events, env.settings.max_frame, true);
    let mut body = zmq::Message::new();
    let mut delivered = false;
    while reader::read_up(
        link,
        sockets.socket.mutex(),
        events,
        &mut body,
        &mut delivered,
    ) == Read::Budget
    {}
}

/// Copies the errors a connect can end with (each waiter gets its own).
fn clone_err(err: &Error) -> Error {
    match err {
        Error::PeerLost(peer) => Error::PeerLost(*peer),
        Error::Timeout(after) => Error::Timeout(*after),
        Error::ShuttingDown => Error::ShuttingDown,
        Error::Refused(why) => Error::Refused(why.clone()),
        other => Error::transport(other.to_string()),
    }
}

/// Reads and drops the remaining parts of a multipart message.
pub(crate) fn skip_rest(socket: &zmq::Socket, msg: &mut zmq::Message) -> usize {
    let mut extra = 0;
    let mut more = msg.get_more();
    while more {
        if socket.recv(msg, zmq::DONTWAIT).is_err() {
            break;
        }
        extra += msg.len();
        more = msg.get_more();
    }
    extra
}

/// A duration as libzmq milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
