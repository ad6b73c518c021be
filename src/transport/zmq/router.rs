//! The inbound side: one ROUTER, a reverse link per client routing id, and
//! the backpressure stall. Runs on the I/O thread only.
//!
//! Reverse links are closed when their client says goodbye, stays silent past
//! the heartbeat timeout, or becomes unroutable; `on_link_lost` is reserved
//! for outbound links, so none of these calls it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::dealer::skip_rest;
use super::frames::{announced_limit, expects_reply};
use super::io_thread::Env;
use super::link::{Route, ZmqLink};
use crate::ids::{InstanceId, MessageId};
use crate::transport::{BoxedLink, Inbound, PeerLink};
use crate::wire::{self, ErrorCode, FrameRef, Header, Kind, ProtocolError, flags};

/// One client that called us, keyed by its routing id.
struct Client {
    link: Arc<ZmqLink>,
    queue: mpsc::Receiver<zmq::Message>,
    /// A reply the client's pipe had no room for.
    blocked: Option<zmq::Message>,
    last_seen: Instant,
}

/// Why a send through the ROUTER did not happen.
enum RouteError {
    /// The client's pipe is full: try again later (the message is returned).
    Full(zmq::Message),
    /// The client is gone (unroutable or the socket failed).
    Gone,
}

/// The ROUTER socket and everything known about its clients.
pub(crate) struct RouterSide {
    pub(crate) socket: zmq::Socket,
    clients: HashMap<Box<[u8]>, Client>,
    /// An invocation the inbox had no room for; while set the ROUTER is not read.
    pending: Option<Inbound>,
    /// When the current stall began, and when we last told clients we live.
    stalled_since: Option<Instant>,
    last_keepalive: Instant,
    /// Clients with a blocked reply (retried on a short timer).
    blocked: usize,
    identity: zmq::Message,
    body: zmq::Message,
}

impl RouterSide {
    /// Wraps the bound ROUTER.
    pub(crate) fn new(socket: zmq::Socket, now: Instant) -> Self {
        Self {
            socket,
            clients: HashMap::new(),
            pending: None,
            stalled_since: None,
            last_keepalive: now,
            blocked: 0,
            identity: zmq::Message::new(),
            body: zmq::Message::new(),
        }
    }

    /// Whether the ROUTER may be read (no invocation waiting for room).
    pub(crate) fn readable(&self) -> bool {
        self.pending.is_none()
    }

    /// Whether something must be retried soon (stall or blocked replies).
    pub(crate) fn needs_retry(&self) -> bool {
        self.pending.is_some() || self.blocked > 0
    }

    /// Reads up to `budget` messages, stopping early when the inbox is full.
    pub(crate) fn read(&mut self, env: &mut Env, now: Instant, budget: usize) -> usize {
        let mut count = 0;
        while count < budget && self.pending.is_none() {
            if self.socket.recv(&mut self.identity, zmq::DONTWAIT).is_err() {
                break;
            }
            count += 1;
            if !self.identity.get_more() {
                continue; // A ROUTER always prefixes the routing id; nothing to answer.
            }
            if self.socket.recv(&mut self.body, zmq::DONTWAIT).is_err() {
                break;
            }
            let shape = if self.body.get_more() {
                let first = self.body.len();
                // Keep what the header says (for an answer) before skipping the rest.
                let header = wire::decode_header(&self.body).ok();
                let extra = skip_rest(&self.socket, &mut self.body);
                Some((first, extra, header))
            } else {
                None
            };
            // Lend the buffers out so handling may borrow `self` mutably.
            let identity = std::mem::replace(&mut self.identity, zmq::Message::new());
            let body = std::mem::replace(&mut self.body, zmq::Message::new());
            self.on_message(env, now, &identity, &body, shape);
            self.identity = identity;
            self.body = body;
        }
        count
    }

    fn on_message(
        &mut self,
        env: &mut Env,
        now: Instant,
        identity: &[u8],
        body: &[u8],
        shape: Option<(usize, usize, Option<Header>)>,
    ) {
        let decoded = match shape {
            Some((first, extra, header)) => Err((
                ProtocolError::LengthMismatch {
                    declared: first as u64,
                    actual: first + extra,
                },
                header,
            )),
            None => wire::decode(body, env.settings.max_frame)
                .map_err(|err| (err, wire::decode_header(body).ok())),
        };
        let frame = match decoded {
            Ok(frame) => frame,
            Err((err, header)) => {
                let peer = header.map(|h| h.sender).or_else(|| instance_of(identity));
                tracing::debug!(?peer, %err, "zmq: malformed frame on router");
                env.inbox.events.on_protocol_error(peer, &err);
                if let Some(header) = header.filter(|h| expects_reply(h.kind)) {
                    let answer = env
                        .control
                        .error(&header, ErrorCode::Codec, &err.to_string());
                    let _ = route(&self.socket, identity, answer);
                }
                return;
            }
        };
        let link = self.client(env, identity, &frame, now);
        let header = frame.header;
        match header.kind {
            Kind::OneWay | Kind::Confirm | Kind::Request | Kind::Cancel => {
                let inbound =
                    Inbound::from_frame(Bytes::copy_from_slice(body), &frame, link as BoxedLink);
                self.deliver(env, identity, inbound, now);
            }
            Kind::Heartbeat if !header.has(flags::PONG) => {
                let pong = env.control.pong(header.message_id);
                if let Err(RouteError::Gone) = route(&self.socket, identity, pong) {
                    self.drop_client(identity, "unroutable");
                }
            }
            Kind::Heartbeat => {}
            Kind::Goodbye => {
                tracing::debug!(peer = %header.sender, "zmq: client said goodbye");
                self.drop_client(identity, "goodbye");
            }
            Kind::Ack | Kind::Response | Kind::Error | Kind::Receipt => {
                env.inbox.events.on_reply(&header, frame.payload);
            }
        }
    }

    /// The reverse link for `identity`, made on first contact.
    fn client(
        &mut self,
        env: &mut Env,
        identity: &[u8],
        frame: &FrameRef<'_>,
        now: Instant,
    ) -> Arc<ZmqLink> {
        if let Some(client) = self.clients.get_mut(identity) {
            client.last_seen = now;
            return Arc::clone(&client.link);
        }
        let peer = instance_of(identity).unwrap_or(frame.header.sender);
        // A handshake probe announces the client's own frame limit.
        let theirs = (frame.header.kind == Kind::Heartbeat)
            .then(|| announced_limit(frame.payload))
            .flatten();
        let limit = theirs.map_or(env.settings.max_frame, |l| l.min(env.settings.max_frame));
        let (link, queue) = ZmqLink::new(
            env.new_link_id(),
            peer,
            Route::Reverse(identity.into()),
            limit,
            env.settings.send_queue,
            Arc::clone(&env.shared),
        );
        tracing::debug!(%peer, "zmq: new client");
        self.clients.insert(
            identity.into(),
            Client {
                link: Arc::clone(&link),
                queue,
                blocked: None,
                last_seen: now,
            },
        );
        link
    }

    fn deliver(&mut self, env: &mut Env, identity: &[u8], inbound: Inbound, now: Instant) {
        match env.inbox.invocations.try_send(inbound) {
            Ok(()) => {}
            Err(TrySendError::Full(inbound)) => {
                tracing::trace!("zmq: inbox full, pausing the router");
                self.pending = Some(inbound);
                self.stalled_since = Some(now);
            }
            Err(TrySendError::Closed(inbound)) => {
                if expects_reply(inbound.header.kind) {
                    let answer = env.control.error(
                        &inbound.header,
                        ErrorCode::ShuttingDown,
                        "receiver is shutting down",
                    );
                    let _ = route(&self.socket, identity, answer);
                }
            }
        }
    }

    /// Retries the stalled invocation and blocked replies; while stalled,
    /// tells every client once per interval that we are alive.
    pub(crate) fn retry(&mut self, env: &mut Env, now: Instant) {
        if let Some(inbound) = self.pending.take() {
            match env.inbox.invocations.try_send(inbound) {
                Ok(()) => {
                    self.stalled_since = None;
                    // Their frames waited in the socket, not in silence.
                    for client in self.clients.values_mut() {
                        client.last_seen = now;
                    }
                }
                Err(TrySendError::Full(inbound)) => {
                    self.pending = Some(inbound);
                    if now.saturating_duration_since(self.last_keepalive)
                        >= env.settings.heartbeat_interval
                    {
                        self.keepalive(env, now);
                    }
                }
                Err(TrySendError::Closed(_)) => self.stalled_since = None,
            }
        }
        if self.blocked > 0 {
            let blocked: Vec<Box<[u8]>> = self
                .clients
                .iter()
                .filter(|(_, c)| c.blocked.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for identity in blocked {
                self.flush(&identity);
            }
        }
    }

    fn keepalive(&mut self, env: &mut Env, now: Instant) {
        self.last_keepalive = now;
        for identity in self.clients.keys() {
            let _ = route(&self.socket, identity, env.control.pong(MessageId(0)));
        }
    }

    /// A reverse link has queued replies or a close request.
    pub(crate) fn on_dirty(&mut self, env: &mut Env, link: &ZmqLink) {
        let Route::Reverse(identity) = &link.route else {
            return;
        };
        if self
            .clients
            .get(&**identity)
            .is_none_or(|c| c.link.id != link.id)
        {
            return; // Already dropped; its queue went with it.
        }
        self.flush(identity);
        if link
            .close_requested
            .load(std::sync::atomic::Ordering::Acquire)
            && self.clients.contains_key(&**identity)
        {
            let _ = route(&self.socket, identity, env.control.goodbye());
            self.drop_client(identity, "closed locally");
        }
    }

    /// Moves a client's queued replies into the ROUTER while it has room.
    fn flush(&mut self, identity: &[u8]) {
        let Some(client) = self.clients.get_mut(identity) else {
            return;
        };
        let was_blocked = client.blocked.is_some();
        let mut gone = false;
        while let Some(msg) = client
            .blocked
            .take()
            .or_else(|| client.queue.try_recv().ok())
        {
            match route(&self.socket, identity, msg) {
                Ok(()) => {}
                Err(RouteError::Full(msg)) => {
                    client.blocked = Some(msg);
                    break;
                }
                Err(RouteError::Gone) => {
                    gone = true;
                    break;
                }
            }
        }
        let now_blocked = client.blocked.is_some();
        match (was_blocked, now_blocked) {
            (false, true) => self.blocked += 1,
            (true, false) => self.blocked -= 1,
            _ => {}
        }
        if gone {
            self.drop_client(identity, "unroutable");
        }
    }

    /// Forgets a client and closes its reverse link (no `on_link_lost`).
    fn drop_client(&mut self, identity: &[u8], why: &str) {
        if let Some(mut client) = self.clients.remove(identity) {
            if client.blocked.take().is_some() {
                self.blocked -= 1;
            }
            client.link.mark_closed();
            client.queue.close();
            tracing::debug!(peer = %client.link.peer(), why, "zmq: client dropped");
        }
    }

    /// Drops clients silent past the heartbeat timeout (not while we stall:
    /// then their frames wait unread in the socket).
    pub(crate) fn tick(&mut self, env: &Env, now: Instant) {
        if self.stalled_since.is_some() {
            return;
        }
        let timeout = env.settings.heartbeat_timeout;
        let silent: Vec<Box<[u8]>> = self
            .clients
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_seen) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for identity in silent {
            self.drop_client(&identity, "silent past the heartbeat timeout");
        }
    }

    /// Shutdown: flush what fits, say goodbye to every client, close them all.
    pub(crate) fn finish(&mut self, env: &mut Env) {
        self.pending = None;
        let identities: Vec<Box<[u8]>> = self.clients.keys().cloned().collect();
        for identity in identities {
            self.flush(&identity);
            let _ = route(&self.socket, &identity, env.control.goodbye());
            self.drop_client(&identity, "shutdown");
        }
        let _ = self
            .socket
            .set_linger(super::dealer::millis(env.settings.goodbye_linger));
    }
}

/// The instance id a routing id stands for (our DEALERs use the 16 id bytes).
fn instance_of(identity: &[u8]) -> Option<InstanceId> {
    let bytes: [u8; 16] = identity.try_into().ok()?;
    Some(InstanceId::from_bytes(bytes))
}

/// Sends `msg` to the client `identity` without blocking.
fn route(socket: &zmq::Socket, identity: &[u8], msg: zmq::Message) -> Result<(), RouteError> {
    // With ROUTER_MANDATORY the routing-id part fails (EAGAIN: full,
    // EHOSTUNREACH: unknown) before anything is queued, so `msg` is kept.
    match socket.send(identity, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Err(RouteError::Full(msg)),
        Err(_) => return Err(RouteError::Gone),
    }
    socket.send(msg, zmq::DONTWAIT).map_err(|err| {
        tracing::warn!(%err, "zmq: router send failed after the routing id");
        RouteError::Gone
    })
}
