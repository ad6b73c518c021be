//! Outbound links: one DEALER per peer, its monitor, the connect handshake
//! and heartbeats. Runs on the I/O thread only.
//!
//! Here: the DEALER's state and its opening. `send`: queued frames into
//! the socket and the shutdown drain; `read`: the peer's frames and the
//! monitor's events; `handshake`: the end of a connect; `life`: heartbeats,
//! deadlines and the teardown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod handshake;
mod life;
mod read;
mod send;

pub(crate) use read::skip_rest;

use super::auth::ClientAuth;
use super::io_thread::Env;
use super::link::ZmqLink;
use super::monitor::Monitored;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::transport::PeerLink;

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

/// A duration as libzmq milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
