//! The inbound side: one ROUTER, a reverse link per client routing id, and
//! the backpressure stall. Runs on the I/O thread only.
//!
//! Reverse links are closed when their client says goodbye, stays silent past
//! the heartbeat timeout, or becomes unroutable; `on_link_lost` is reserved
//! for outbound links, so none of these calls it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

mod send;

use super::conn::{ConnRef, RawMsg};
use super::frames::{announced_limit, expects_reply};
use super::gate::{Admission, Gate, Screen};
use super::io_thread::Env;
use super::link::{Route, ZmqLink};
use super::shared::{RouteError, SharedSocket, route};
use crate::ids::{InstanceId, MessageId};
use crate::runtime::router::{Frame, Inline, Routed, Router};
use crate::transport::{BoxedLink, Inbound, OutFrame};
use crate::wire::{self, ErrorCode, FrameRef, Header, Kind, ProtocolError, flags};

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

/// The ROUTER socket and everything known about its clients.
pub(crate) struct RouterSide {
    pub(crate) socket: SharedSocket,
    clients: HashMap<Box<[u8]>, Client>,
    /// Authentication, when a secret is configured.
    gate: Option<Gate>,
    /// An invocation the inbox had no room for; while set the ROUTER is not read.
    pending: Option<Inbound>,
    /// Clients with a blocked reply (retried on a short timer).
    blocked: usize,
    identity: zmq::Message,
    body: RawMsg,
    /// Routes every frame read (the shared inbound router and its arena).
    router: Router,
}

impl RouterSide {
    /// Wraps the bound ROUTER.
    pub(crate) fn new(socket: SharedSocket, gate: Option<Gate>) -> Self {
        Self {
            socket,
            clients: HashMap::new(),
            gate,
            pending: None,
            blocked: 0,
            identity: zmq::Message::new(),
            body: RawMsg::new(),
            router: Router::new(),
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
    pub(crate) fn read(&mut self, env: &mut Env, now: Instant, budget: usize) {
        let mut count = 0;
        while count < budget && self.pending.is_none() {
            if self
                .socket
                .lock()
                .recv(&mut self.identity, zmq::DONTWAIT)
                .is_err()
            {
                break;
            }
            count += 1;
            if !self.identity.get_more() {
                continue; // A ROUTER always prefixes the routing id; nothing to answer.
            }
            // The body, not the routing id, always carries the connection's
            // properties (libzmq's `router_t::xhas_in` prefetches ids without).
            if self
                .body
                .recv(&mut self.socket.lock(), zmq::DONTWAIT)
                .is_err()
            {
                break;
            }
            let shape = if self.body.more() {
                let first = self.body.bytes().len();
                // Keep what the header says (for an answer) before skipping the rest.
                let header = wire::decode_header(self.body.bytes()).ok();
                let mut scratch = zmq::Message::new();
                let rest = skip_more(&self.socket.lock(), &mut scratch);
                Some((first, rest, header))
            } else {
                None
            };
            // Lend the buffers out so handling may borrow `self` mutably.
            let identity = std::mem::replace(&mut self.identity, zmq::Message::new());
            let body = std::mem::replace(&mut self.body, RawMsg::new());
            let conn = self.gate.as_ref().and_then(|_| body.conn());
            self.on_message(env, now, (&identity, conn), body.bytes(), shape);
            self.identity = identity;
            self.body = body;
        }
    }

    fn on_message(
        &mut self,
        env: &mut Env,
        now: Instant,
        (identity, conn): (&[u8], Option<ConnRef<'_>>),
        body: &[u8],
        shape: Option<BadShape>,
    ) {
        let decoded = match shape {
            Some((first, rest, header)) => Err((
                ProtocolError::LengthMismatch {
                    declared: first as u64,
                    actual: first + rest,
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
                if let Some(client) = self.clients.get(identity) {
                    client.link.counters.record_protocol_error();
                }
                env.inbox.events.on_protocol_error(peer, &err);
                if let Some(header) = header.filter(|h| expects_reply(h.kind)) {
                    let answer = env
                        .control
                        .error(&header, ErrorCode::Codec, &err.to_string());
                    self.send_control(identity, answer, now);
                }
                return;
            }
        };
        let link = match self.admission(identity, conn, now) {
            None => self.client(env, identity, &frame, now),
            Some(Admission::Admitted { peer, limit }) => {
                self.authenticated_client(env, identity, peer, limit, now)
            }
            Some(Admission::Unknown) => {
                self.screen(env, now, identity, conn, &frame);
                return;
            }
        };
        link.counters.record_received(body.len());
        let reply_link = || Arc::clone(&link) as BoxedLink;
        // Handlers never run on the I/O thread: only cancels are applied here.
        let routed = self.router.route(
            &env.inbox,
            &frame,
            Frame::borrowed(body),
            &*link,
            &reply_link,
            Inline::CancelOnly,
        );
        match routed {
            Routed::Done => env.delivered = true,
            Routed::Queue(inbound) => self.deliver(env, inbound),
            Routed::Control(header) if header.kind == Kind::Goodbye => {
                tracing::debug!(peer = %header.sender, "zmq: client said goodbye");
                self.drop_client(identity, "goodbye");
                if let Some(gate) = &mut self.gate {
                    gate.forget(identity);
                }
            }
            Routed::Control(header) if !header.has(flags::PONG) => {
                let pong = env.control.pong(header.message_id);
                self.send_control(identity, pong, now);
            }
            Routed::Control(_) => {}
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
        self.insert_client(env, identity, peer, theirs, false, now)
    }

    /// The reverse link of an authenticated connection (made again after the
    /// client was forgotten for silence: its connection stays admitted).
    fn authenticated_client(
        &mut self,
        env: &mut Env,
        identity: &[u8],
        peer: InstanceId,
        limit: usize,
        now: Instant,
    ) -> Arc<ZmqLink> {
        match self.clients.get_mut(identity) {
            Some(client) => {
                client.last_seen = now;
                Arc::clone(&client.link)
            }
            None => self.insert_client(env, identity, peer, Some(limit), true, now),
        }
    }

    /// Makes the reverse link of a new client (trusted when its connection
    /// authenticated).
    fn insert_client(
        &mut self,
        env: &mut Env,
        identity: &[u8],
        peer: InstanceId,
        theirs: Option<usize>,
        trusted: bool,
        now: Instant,
    ) -> Arc<ZmqLink> {
        let limit = theirs.map_or(env.settings.max_frame, |l| l.min(env.settings.max_frame));
        let link = ZmqLink::new(
            env.new_link_id(),
            peer,
            Route::Reverse(identity.into()),
            limit,
            env.settings.send_queue,
            (&self.socket, Arc::clone(&env.shared)),
        );
        link.set_trusted(trusted);
        tracing::debug!(%peer, authenticated = trusted, "zmq: new client");
        env.shared.add_inbound(&link);
        self.clients.insert(
            identity.into(),
            Client {
                link: Arc::clone(&link),
                blocked: None,
                last_seen: now,
                last_sent: now,
            },
        );
        link
    }

    /// With a secret, whether the frame's connection is admitted. A routing
    /// id that authenticated on another connection (a handover, or a
    /// stranger presenting it) loses its reverse link and must authenticate
    /// again. `None` without a secret.
    fn admission(
        &mut self,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        now: Instant,
    ) -> Option<Admission> {
        let (admission, replaced) = self.gate.as_mut()?.check(identity, conn, now);
        if replaced {
            self.drop_client(identity, "routing id on another connection");
        }
        Some(admission)
    }

    /// Handles a frame from a connection that has not authenticated.
    fn screen(
        &mut self,
        env: &mut Env,
        now: Instant,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        frame: &FrameRef<'_>,
    ) {
        let Some(gate) = self.gate.as_mut() else {
            return;
        };
        match gate.screen(&mut env.control, identity, conn, frame, now) {
            Screen::Reply(msg) => self.send_control(identity, msg, now),
            Screen::Admit {
                peer,
                limit,
                welcome,
            } => {
                // A reverse link from before (same routing id) was not trusted.
                self.drop_client(identity, "authenticated anew");
                self.insert_client(env, identity, peer, Some(limit), true, now);
                self.send_control(identity, welcome, now);
            }
            Screen::Refuse(answer) => {
                let sender = frame.header.sender;
                tracing::debug!(%sender, kind = ?frame.header.kind, "zmq: frame from an unauthenticated connection refused");
                env.inbox.events.on_refused(Some(sender));
                if let Some(answer) = answer {
                    self.send_control(identity, answer, now);
                }
            }
            Screen::Ignore => {}
        }
    }

    fn deliver(&mut self, env: &mut Env, inbound: Inbound) {
        match env.inbox.invocations.try_send(inbound) {
            Ok(()) => env.delivered = true,
            Err(TrySendError::Full(inbound)) => {
                tracing::trace!("zmq: inbox full, pausing the router");
                self.pending = Some(inbound);
            }
            Err(TrySendError::Closed(inbound)) => refuse_shutting_down(env, &inbound),
        }
    }

    /// Retries the stalled invocation and the blocked replies.
    pub(crate) fn retry(&mut self, env: &mut Env, now: Instant) {
        if let Some(inbound) = self.pending.take() {
            match env.inbox.invocations.try_send(inbound) {
                Ok(()) => {
                    // Their frames waited in the socket, not in silence.
                    for client in self.clients.values_mut() {
                        client.last_seen = now;
                    }
                }
                Err(TrySendError::Full(inbound)) => self.pending = Some(inbound),
                Err(TrySendError::Closed(inbound)) => refuse_shutting_down(env, &inbound),
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
                self.flush(&identity, now);
            }
        }
    }

    /// Does not count `paused` (time the I/O thread did not run) as silence.
    pub(crate) fn excuse(&mut self, paused: Duration, now: Instant) {
        for client in self.clients.values_mut() {
            client.last_seen = (client.last_seen + paused).min(now);
        }
    }

    /// Heartbeats: while we stall on a full inbox (the clients' probes then
    /// wait unread), a pong to every client we sent nothing for an interval,
    /// so it hears we live; an idle client otherwise gets pongs only to its
    /// own probes (docs/wire.md). Then drops clients silent past the
    /// timeout, except while we stall (their frames wait unread in the socket).
    pub(crate) fn tick(&mut self, env: &mut Env, now: Instant) {
        if let Some(gate) = &mut self.gate {
            gate.expire(now);
        }
        let interval = env.settings.heartbeat_interval;
        let stalled = self.pending.is_some();
        let mut gone = Vec::new();
        for (identity, client) in &mut self.clients {
            let idle = now.saturating_duration_since(client.last_sent) >= interval;
            if stalled && idle && client.blocked.is_none() {
                match route(
                    &self.socket.lock(),
                    identity,
                    env.control.pong(MessageId(0)),
                ) {
                    Ok(()) => client.last_sent = now,
                    Err(RouteError::Full(_)) => {}
                    Err(RouteError::Gone) => gone.push(identity.clone()),
                }
            }
        }
        if self.pending.is_none() {
            let timeout = env.settings.heartbeat_timeout;
            gone.extend(
                self.clients
                    .iter()
                    .filter(|(_, c)| now.saturating_duration_since(c.last_seen) >= timeout)
                    .map(|(id, _)| id.clone()),
            );
        }
        for identity in gone {
            self.drop_client(&identity, "silent or unroutable");
        }
    }
}

/// Answers an invocation the dispatcher can no longer take (its inbox is
/// closed) with `ShuttingDown`, through the invocation's own reply link.
fn refuse_shutting_down(env: &mut Env, inbound: &Inbound) {
    if !expects_reply(inbound.header.kind) {
        return;
    }
    let header = env
        .control
        .error_header(&inbound.header, ErrorCode::ShuttingDown);
    let answer = OutFrame::bytes(header, "", b"receiver is shutting down");
    if let Err(err) = inbound.reply_link.try_send(answer) {
        tracing::debug!(%err, "zmq: could not refuse an invocation");
    }
}

/// The instance id a routing id stands for (our DEALERs use the 16 id bytes).
fn instance_of(identity: &[u8]) -> Option<InstanceId> {
    let bytes: [u8; 16] = identity.try_into().ok()?;
    Some(InstanceId::from_bytes(bytes))
}

/// Reads and drops the parts that follow a part flagged "more"; returns
/// their total size.
fn skip_more(socket: &zmq::Socket, scratch: &mut zmq::Message) -> usize {
    let mut extra = 0;
    loop {
        if socket.recv(scratch, zmq::DONTWAIT).is_err() {
            return extra;
        }
        extra += scratch.len();
        if !scratch.get_more() {
            return extra;
        }
    }
}
