//! The ROUTER's read path, the same for its reader task and the I/O
//! thread: receive a message, decode it, admit its connection, find or make
//! the client's reverse link, and route the frame with the shared inbound
//! router.
//!
//! Handlers run in place only on the reader task and only for trusted
//! (authenticated) links: a handler run in place is told its caller is
//! trusted, and the I/O thread never runs handlers. The rest goes to the
//! inbox; when it is full the invocation is kept and the ROUTER is not read
//! until it has room, so backpressure reaches the sender's socket.

use std::sync::Arc;
use std::time::Instant;

use super::{BadShape, Reading, RouterCore, State, instance_of};
use crate::runtime::router::{Frame, Inline, Routed};
use crate::transport::zmq::conn::ConnRef;
use crate::transport::zmq::frames::{announced_limit, expects_reply};
use crate::transport::zmq::gate::{Admission, Screen};
use crate::transport::zmq::link::{Route, ZmqLink};
use crate::transport::{BoxedLink, Inbound, OutFrame, PeerLink};
use crate::wire::{self, ErrorCode, FrameRef, Kind, ProtocolError, flags};
use tokio::sync::mpsc::error::TrySendError;

/// An in-place handler's reply that found the client's link full: the
/// reader task queues it (waiting for room) before it reads on.
pub(crate) type Deferred = (Arc<ZmqLink>, zmq::Message);

/// How a batch of reads ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Nothing more to read now (or another reader is at it).
    Drained,
    /// The budget ran out, or a reply must be queued first.
    Budget,
    /// An invocation waits for room in the inbox.
    Stalled,
    /// The socket is closed.
    Gone,
}

/// What a batch did.
pub(crate) struct Batch {
    pub(crate) read: Read,
    /// A frame went to the application.
    pub(crate) delivered: bool,
    pub(crate) deferred: Option<Deferred>,
}

impl RouterCore {
    /// Reads and routes up to `budget` messages. The reader task (`on_task`)
    /// waits for the reading lock; the I/O thread never does (the task is
    /// reading then anyway).
    pub(crate) fn read_batch(&self, on_task: bool, budget: usize) -> Batch {
        let mut batch = Batch {
            read: Read::Drained,
            delivered: false,
            deferred: None,
        };
        let mut reading = match on_task {
            true => self.reading.lock(),
            false => match self.reading.try_lock() {
                Some(guard) => guard,
                None => return batch,
            },
        };
        let Some(socket) = self.socket.upgrade() else {
            batch.read = Read::Gone;
            return batch;
        };
        let now = Instant::now();
        for _ in 0..budget {
            if self.is_stalled() {
                batch.read = Read::Stalled;
                return batch;
            }
            if batch.deferred.is_some() {
                batch.read = Read::Budget;
                return batch;
            }
            let Reading {
                identity,
                body,
                scratch,
                router,
            } = &mut *reading;
            let shape = {
                let mut locked = socket.lock();
                if locked.recv(identity, zmq::DONTWAIT).is_err() {
                    return batch;
                }
                if !identity.get_more() {
                    continue; // A ROUTER always prefixes the routing id; nothing to answer.
                }
                // The body, not the routing id, always carries the connection's
                // properties (libzmq's `router_t::xhas_in` prefetches ids without).
                if body.recv(&mut locked, zmq::DONTWAIT).is_err() {
                    return batch;
                }
                body.more().then(|| {
                    let first = body.bytes().len();
                    // Keep what the header says (for an answer) before skipping the rest.
                    let header = wire::decode_header(body.bytes()).ok();
                    (first, skip_more(&locked, scratch), header)
                })
            };
            let conn = if self.gated { body.conn() } else { None };
            let message = Message {
                identity,
                conn,
                body: body.bytes(),
                shape,
            };
            self.on_message(router, message, now, on_task, &mut batch);
        }
        batch.read = Read::Budget;
        batch
    }

    fn on_message(
        &self,
        router: &mut crate::runtime::router::Router,
        message: Message<'_>,
        now: Instant,
        on_task: bool,
        batch: &mut Batch,
    ) {
        let Message {
            identity,
            conn,
            body,
            shape,
        } = message;
        let Some(frame) = self.decode(identity, body, shape, now) else {
            return;
        };
        let link = {
            let mut state = self.state.lock();
            match self.admission(&mut state, identity, conn, now) {
                None => self.client(&mut state, identity, &frame, now),
                Some(Admission::Admitted { peer, limit }) => {
                    self.known_or_new(&mut state, identity, (peer, Some(limit), true), now)
                }
                Some(Admission::Unknown) => {
                    self.screen(&mut state, now, identity, conn, &frame);
                    return;
                }
            }
        };
        link.counters.record_received(body.len());
        let reply_link = || Arc::clone(&link) as BoxedLink;
        let mut reply = |answer: OutFrame<'_>| match link.reply_now(answer) {
            Ok(None) => {}
            Ok(Some(msg)) => batch.deferred = Some((Arc::clone(&link), msg)),
            Err(err) => tracing::debug!(%err, "zmq: an in-place reply could not be sent"),
        };
        let inline = if on_task && link.is_trusted() {
            Inline::Handlers(&mut reply)
        } else {
            Inline::CancelOnly
        };
        let routed = router.route(
            &self.inbox,
            &frame,
            Frame::borrowed(body),
            &*link,
            &reply_link,
            inline,
        );
        match routed {
            Routed::Done => batch.delivered = true,
            Routed::Queue(inbound) => batch.delivered |= self.deliver(inbound),
            Routed::Control(header) if header.kind == Kind::Goodbye => {
                tracing::debug!(peer = %header.sender, "zmq: client said goodbye");
                let mut state = self.state.lock();
                self.drop_client(&mut state, identity, "goodbye");
                if let Some(gate) = &mut state.gate {
                    gate.forget(identity);
                }
            }
            Routed::Control(header) if !header.has(flags::PONG) => {
                let pong = self.control.pong(header.message_id);
                self.send_control(&mut self.state.lock(), identity, pong, now);
            }
            Routed::Control(_) => {}
        }
    }

    /// The frame, or `None` when it was malformed (reported, and answered
    /// when its header asked for an answer).
    fn decode<'b>(
        &self,
        identity: &[u8],
        body: &'b [u8],
        shape: Option<BadShape>,
        now: Instant,
    ) -> Option<FrameRef<'b>> {
        let decoded = match shape {
            Some((first, rest, header)) => Err((
                ProtocolError::LengthMismatch {
                    declared: first as u64,
                    actual: first + rest,
                },
                header,
            )),
            None => wire::decode(body, self.settings.max_frame)
                .map_err(|err| (err, wire::decode_header(body).ok())),
        };
        let (err, header) = match decoded {
            Ok(frame) => return Some(frame),
            Err(failed) => failed,
        };
        let peer = header.map(|h| h.sender).or_else(|| instance_of(identity));
        tracing::debug!(?peer, %err, "zmq: malformed frame on router");
        let mut state = self.state.lock();
        if let Some(client) = state.clients.get(identity) {
            client.link.counters.record_protocol_error();
        }
        self.inbox.events.on_protocol_error(peer, &err);
        if let Some(header) = header.filter(|h| expects_reply(h.kind)) {
            let answer = self
                .control
                .error(&header, ErrorCode::Codec, &err.to_string());
            self.send_control(&mut state, identity, answer, now);
        }
        None
    }

    /// The reverse link for `identity`, made on first contact.
    fn client(
        &self,
        state: &mut State,
        identity: &[u8],
        frame: &FrameRef<'_>,
        now: Instant,
    ) -> Arc<ZmqLink> {
        let peer = instance_of(identity).unwrap_or(frame.header.sender);
        // A handshake probe announces the client's own frame limit.
        let theirs = (frame.header.kind == Kind::Heartbeat)
            .then(|| announced_limit(frame.payload))
            .flatten();
        self.known_or_new(state, identity, (peer, theirs, false), now)
    }

    /// The known client's link (it was heard now), or a new client's link
    /// (trusted when its connection authenticated; made again for an
    /// authenticated connection whose client was forgotten for silence).
    fn known_or_new(
        &self,
        state: &mut State,
        identity: &[u8],
        (peer, theirs, trusted): (crate::ids::InstanceId, Option<usize>, bool),
        now: Instant,
    ) -> Arc<ZmqLink> {
        if let Some(client) = state.clients.get_mut(identity) {
            client.last_seen = now;
            return Arc::clone(&client.link);
        }
        self.insert_client(state, identity, (peer, theirs, trusted), now)
    }

    /// Makes the reverse link of a new client.
    fn insert_client(
        &self,
        state: &mut State,
        identity: &[u8],
        (peer, theirs, trusted): (crate::ids::InstanceId, Option<usize>, bool),
        now: Instant,
    ) -> Arc<ZmqLink> {
        let max_frame = self.settings.max_frame;
        let limit = theirs.map_or(max_frame, |l| l.min(max_frame));
        let link = ZmqLink::new(
            self.shared.new_link_id(),
            peer,
            Route::Reverse(identity.into()),
            limit,
            self.settings.send_queue,
            ((self.socket.clone(), self.fd), Arc::clone(&self.shared)),
        );
        link.set_trusted(trusted);
        tracing::debug!(%peer, authenticated = trusted, "zmq: new client");
        self.shared.add_inbound(&link);
        state.clients.insert(
            identity.into(),
            super::Client {
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
        &self,
        state: &mut State,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        now: Instant,
    ) -> Option<Admission> {
        let (admission, replaced) = state.gate.as_mut()?.check(identity, conn, now);
        if replaced {
            self.drop_client(state, identity, "routing id on another connection");
        }
        Some(admission)
    }

    /// Handles a frame from a connection that has not authenticated.
    fn screen(
        &self,
        state: &mut State,
        now: Instant,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        frame: &FrameRef<'_>,
    ) {
        let Some(gate) = state.gate.as_mut() else {
            return;
        };
        match gate.screen(&self.control, identity, conn, frame, now) {
            Screen::Reply(msg) => self.send_control(state, identity, msg, now),
            Screen::Admit {
                peer,
                limit,
                welcome,
            } => {
                // A reverse link from before (same routing id) was not trusted.
                self.drop_client(state, identity, "authenticated anew");
                self.insert_client(state, identity, (peer, Some(limit), true), now);
                self.send_control(state, identity, welcome, now);
            }
            Screen::Refuse(answer) => {
                let sender = frame.header.sender;
                tracing::debug!(%sender, kind = ?frame.header.kind, "zmq: frame from an unauthenticated connection refused");
                self.inbox.events.on_refused(Some(sender));
                if let Some(answer) = answer {
                    self.send_control(state, identity, answer, now);
                }
            }
            Screen::Ignore => {}
        }
    }

    /// Hands an invocation to the inbox; keeps it (stalling the ROUTER)
    /// when the inbox is full. Returns whether it went.
    fn deliver(&self, inbound: Inbound) -> bool {
        match self.inbox.invocations.try_send(inbound) {
            Ok(()) => true,
            Err(TrySendError::Full(inbound)) => {
                tracing::trace!("zmq: inbox full, pausing the router");
                self.set_pending(&mut self.state.lock(), Some(inbound));
                // The I/O thread retries it and times the clients meanwhile.
                self.shared.wake();
                false
            }
            Err(TrySendError::Closed(inbound)) => {
                self.refuse_shutting_down(&inbound);
                false
            }
        }
    }
}

/// One message read from the ROUTER.
struct Message<'m> {
    identity: &'m [u8],
    conn: Option<ConnRef<'m>>,
    body: &'m [u8],
    shape: Option<BadShape>,
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
