//! ZeroMQ over TCP: the remote transport.
//!
//! # Sockets and threads
//! One dedicated I/O thread (a `std::thread`) owns every socket of a
//! transport: it runs handshakes, heartbeats and the monitors, and reads
//! the sockets whose reader task does not (see below). A caller encodes its frame straight into a `zmq::Message` and,
//! for anything that waits for an answer (requests, replies), sends it into
//! the socket itself (a DEALER, or the ROUTER for a reverse link): libzmq
//! sockets may change threads when every use is serialized with a full
//! barrier, so each socket sits behind a mutex (`shared`). Only a frame that
//! finds the socket full (the HWM), frames of its link still queued before
//! it, and one-way frames (batched by the I/O thread) go through the link's
//! bounded, preallocated queue (`queue`) and the eventfd doorbell to the
//! I/O thread, which sends it when there is room. Once an outbound link is
//! up, a reader task on the runtime that connected it reads its DEALER
//! (`reader`): tokio's reactor watches the socket's `ZMQ_FD`, so a reply
//! wakes the runtime straight from libzmq's I/O thread. The ROUTER is read
//! likewise by a reader task on the runtime that bound the transport
//! (`router::task`). The I/O thread polls the sockets' `ZMQ_FD`s and
//! decides by `ZMQ_EVENTS` (see `shared` for why).
//!
//! - **Inbound**: one ROUTER bound on the endpoint (`ROUTER_MANDATORY`,
//!   `ROUTER_HANDOVER`, `MAXMSGSIZE`). Invocations (`OneWay`, `Confirm`,
//!   `Request`, `Cancel`) go to [`Inbox::invocations`] with a reply link that
//!   answers through the ROUTER to that client (one link per routing id).
//!   When the inbox is full the ROUTER is not read until it has room, so
//!   backpressure reaches the sender's socket and its `send().await` waits.
//! - **Outbound**: one DEALER per peer whose routing id is our instance id,
//!   with a socket monitor. Replies arriving there go to
//!   [`LinkEvents::on_reply`] at once.
//!
//! # Liveness
//! `connect` sends a heartbeat probe and waits for the pong: the instance that
//! answers must be the one asked for, and a refused connection fails at once
//! (from the monitor) rather than at the connect timeout. Then each side sends
//! the other a heartbeat whenever it has sent it nothing for one interval (an
//! outbound link probes, the ROUTER answers with a pong and sends unasked
//! pongs to clients it has been quiet towards, also while a full inbox stalls
//! it), and any frame counts as life. An outbound link is lost —
//! `on_link_lost(peer)` once, its DEALER closed so libzmq does not reconnect
//! to a dead instance — when the monitor reports its TCP connection closed (a
//! killed peer is seen at once), when the peer says goodbye, or after the
//! heartbeat timeout without a sign of life. Time during which the I/O thread
//! itself did not run (a starved or stopped process) is not counted as the
//! peer's silence.
//!
//! Reverse (ROUTER-side) links are closed when their client says goodbye, is
//! silent past the heartbeat timeout, or becomes unroutable; they do **not**
//! call `on_link_lost` (the runtime learns of a lost caller from that
//! caller's own outbound link, if it has one). Closing a link yourself
//! (`close`, `shutdown`) does not call it either.
//!
//! # Authentication
//! With [`ZmqConfig::auth_secret`], `connect` opens with a hello instead of
//! a plain probe and both ends prove they know the secret (HMAC-SHA256 over
//! both nonces and both instance ids; see `auth` and `docs/wire.md`,
//! section 14). The ROUTER admits a *connection*, identified by the file
//! descriptor and remote address libzmq attaches to its messages, not a
//! routing id; until then its frames reach no handler (`gate`). Reverse links
//! of admitted connections, and outbound links that authenticated the peer,
//! are trusted ([`PeerLink::is_trusted`](crate::transport::PeerLink::is_trusted)).
//! Binding beyond loopback without a secret logs a warning.
//!
//! # Latency
//! A frame leaves from the caller's own thread, as with raw libzmq, a reply
//! on an outbound link is read on the caller's runtime (its reader task),
//! and an invocation on the server's runtime (the ROUTER's reader task),
//! so no direction of a call crosses our I/O thread; on an authenticated
//! link a synchronous handler runs in place on that task and its reply
//! leaves from the thread that read the request. After the I/O thread
//! itself handed a frame to the application (when it reads for a task that
//! cannot), it keeps polling for [`ZmqConfig::spin`] (50 µs by default,
//! yielding the CPU on every empty pass) until the application answers (a
//! direct send ends the spin), so a frame that follows at once needs no
//! wake-up. Idle links never spin.
//!
//! # Frame limit
//! The largest frame is [`Inbox::max_frame`]. It is set as `ZMQ_MAXMSGSIZE`
//! on every socket (libzmq drops a peer that sends more) and announced in the
//! handshake, so each link refuses, with [`Error::PayloadTooLarge`], frames
//! over the smaller of the two ends' limits before sending them.
//!
//! # Malformed input
//! A frame that `wire::decode` refuses, or a message of the wrong multipart
//! shape, is reported to `on_protocol_error`, dropped, and answered with an
//! `Error` frame (`ErrorCode::Codec`) when its header was readable and it
//! expected a reply. The transport keeps serving everyone else.

mod auth;
mod config;
mod conn;
mod dealer;
mod endpoint;
mod frames;
mod gate;
mod io_env;
mod io_shared;
mod io_thread;
mod link;
mod monitor;
mod queue;
mod reader;
mod router;
mod scratch;
mod shared;
mod task;

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

pub use self::auth::AuthSecret;
pub use self::config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, DEFAULT_GOODBYE_LINGER,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_MISSES, DEFAULT_HIGH_WATER_MARK,
    DEFAULT_SEND_QUEUE, DEFAULT_SPIN, ZmqConfig,
};
use self::frames::Control;
use self::io_thread::{Command, IoThread, Settings};
use self::link::IoShared;
use self::router::RouterCore;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::transport::{BoxFuture, BoxedLink, Inbox, LinkEvents, ThinTransport, TransportKind};
use crate::wire;

/// Capacity of the queue of connect requests to the I/O thread.
const COMMAND_QUEUE: usize = 64;

/// The ZeroMQ-over-TCP transport (see the [module docs](self)).
///
/// Made by [`ZmqTransport::bind`]; used through [`ThinTransport`].
/// Dropping it shuts it down (blocking until its I/O thread has closed).
pub struct ZmqTransport {
    local: InstanceId,
    bound: String,
    advertised: String,
    shared: Arc<IoShared>,
    /// Where outbound links' reader tasks route what they read.
    events: Arc<dyn LinkEvents>,
    max_frame: usize,
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    finished: watch::Receiver<bool>,
}

impl std::fmt::Debug for ZmqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqTransport")
            .field("local", &self.local)
            .field("endpoint", &self.advertised)
            .finish_non_exhaustive()
    }
}

fn zmq_err(what: &'static str) -> impl Fn(zmq::Error) -> Error {
    move |err| Error::transport(format!("{what}: {err}"))
}

impl ZmqTransport {
    /// Binds the ROUTER on `config.endpoint` and starts the I/O thread.
    ///
    /// `local` is this manager's instance id (it becomes the routing id of
    /// our DEALERs and the sender of our control frames); `inbox` receives
    /// what arrives, and its `max_frame` caps every frame.
    ///
    /// # Errors
    /// [`Error::Config`] for bad settings, [`Error::Transport`] when the
    /// endpoint cannot be bound, [`Error::Io`] when the thread cannot start.
    pub fn bind(config: ZmqConfig, local: InstanceId, inbox: Inbox) -> Result<Arc<Self>> {
        config.validate()?;
        if inbox.max_frame < wire::HEADER_LEN {
            return Err(Error::Config(format!(
                "max frame of {} bytes is smaller than the {}-byte header",
                inbox.max_frame,
                wire::HEADER_LEN
            )));
        }
        let settings = Settings::new(&config, inbox.max_frame);
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).map_err(zmq_err("zmq socket"))?;
        settings
            .apply(&router)
            .and_then(|()| router.set_router_mandatory(true))
            .and_then(|()| router.set_router_handover(true))
            .map_err(zmq_err("zmq router options"))?;
        router
            .bind(&config.endpoint)
            .map_err(|err| Error::transport(format!("bind {:?}: {err}", config.endpoint)))?;
        let bound = router
            .get_last_endpoint()
            .map_err(zmq_err("zmq last endpoint"))?
            .map_err(|_| Error::transport("zmq last endpoint is not UTF-8"))?;
        let advertised = endpoint::advertised_endpoint(&bound, config.advertise_host.as_deref())?;
        let router = shared::SharedSocket::new(router)?;
        let shared = Arc::new(IoShared::new(local)?);
        let control = Arc::new(Control::new(local, settings.max_frame));
        let both = (Arc::clone(&control), Arc::clone(&shared));
        let core = RouterCore::new(&router, inbox.clone(), settings.clone(), both);
        let (events, max_frame) = (Arc::clone(&inbox.events), inbox.max_frame);
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (done_tx, finished) = watch::channel(false);
        let io_shared = Arc::clone(&shared);
        let io_core = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("am-zmq-io".to_owned())
            .spawn(move || {
                // Built here: its reused poll list borrows sockets and is not `Send`.
                let env = (local, inbox, settings);
                let shared = (control, io_shared);
                IoThread::new(ctx, (router, io_core), env, shared, command_rx).run();
                let _ = done_tx.send(true);
            })?;
        // Requests now reach this runtime without crossing the I/O thread.
        router::start(&core);
        tracing::info!(%local, bound, advertised, "zmq transport listening");
        if config.auth_secret.is_none() && !endpoint::is_local_only(&bound) {
            tracing::warn!(
                bound,
                "zmq: listening beyond loopback without an authentication secret: anyone \
                 who reaches this port can call every handler (set AM_AUTH_SECRET or \
                 auth_secret; the traffic stays plaintext, see docs/security.md)"
            );
        }
        Ok(Arc::new(Self {
            local,
            bound,
            advertised,
            shared,
            events,
            max_frame,
            commands,
            thread: Mutex::new(Some(thread)),
            finished,
        }))
    }

    /// This transport's instance id.
    pub fn instance_id(&self) -> InstanceId {
        self.local
    }

    /// The endpoint as bound (may be a wildcard such as `tcp://0.0.0.0:41234`).
    pub fn bound_endpoint(&self) -> &str {
        &self.bound
    }

    /// The routable endpoint peers should dial (what
    /// [`ThinTransport::local_endpoint`] returns).
    pub fn advertised_endpoint(&self) -> &str {
        &self.advertised
    }

    /// Joins the I/O thread (after shutdown was requested).
    fn join(&self) {
        let handle = self.thread.lock().take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("zmq: the I/O thread panicked");
        }
    }
}

impl ThinTransport for ZmqTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(self.advertised.clone())
    }

    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<BoxedLink>> {
        Box::pin(async move {
            if self.shared.is_shut_down() {
                return Err(Error::ShuttingDown);
            }
            let (reply, answer) = oneshot::channel();
            let command = Command::Connect {
                peer,
                endpoint: endpoint.to_owned(),
                reply,
            };
            self.commands
                .send(command)
                .await
                .map_err(|_| Error::ShuttingDown)?;
            self.shared.wake();
            let link = answer.await.map_err(|_| Error::ShuttingDown)??;
            // Replies now reach this runtime without crossing the I/O thread.
            reader::start(&link, &self.events, self.max_frame);
            Ok(link as BoxedLink)
        })
    }

    fn undelivered(&self) -> usize {
        self.shared.undrained()
    }

    fn inbound_links(&self) -> Vec<BoxedLink> {
        let links = self.shared.inbound_links().into_iter();
        links.map(|link| link as BoxedLink).collect()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shared.request_shutdown();
            let mut finished = self.finished.clone();
            // An error means the thread is gone already; either way it is done.
            let _ = finished.wait_for(|done| *done).await;
            self.join();
        })
    }
}

impl Drop for ZmqTransport {
    fn drop(&mut self) {
        self.shared.request_shutdown();
        self.join();
    }
}
