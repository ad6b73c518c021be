//! The ROUTER's side of authentication: what happens to frames from a
//! routing id whose connection has not authenticated (see [`super::auth`]).
//!
//! Such a frame reaches no handler. A hello gets a challenge, a correct proof
//! admits the connection (the caller then makes its reverse link), anything
//! else is refused: answered with an `Error` frame of code `Refused` when it
//! expects an answer (invocations and plain probes), dropped otherwise.
//! Half-done handshakes are bounded in number and expire.
//!
//! An admitted connection stays admitted, under its routing id, until its
//! client says goodbye, the routing id shows up on another connection, or,
//! beyond [`MAX_ADMITTED`] connections, it is the one unused the longest.
//! It outlives the reverse link, which the ROUTER drops after a heartbeat
//! timeout of silence: an idle authenticated client need not authenticate
//! again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::auth::{self, AuthSecret, Ids, Nonces, Role};
use super::conn::{ConnId, ConnRef};
use super::frames::{Control, expects_reply};
use crate::ids::{InstanceId, MessageId};
use crate::wire::{ErrorCode, FrameRef, Kind, flags};

/// Most handshakes in progress at once; the oldest is forgotten beyond that.
const MAX_PENDING: usize = 1024;
/// Most admitted connections remembered; the least recently used is
/// forgotten beyond that (its client must authenticate again).
const MAX_ADMITTED: usize = 4096;

/// A handshake waiting for the client's proof.
struct Pending {
    conn: ConnId,
    nonces: Nonces,
    client: InstanceId,
    challenge: MessageId,
    limit: usize,
    since: Instant,
}

/// A connection that authenticated.
struct Admitted {
    conn: ConnId,
    peer: InstanceId,
    limit: usize,
    last_used: Instant,
}

/// Whether a frame's connection may reach the handlers.
pub(crate) enum Admission {
    /// It authenticated as `peer`, who accepts frames up to `limit`.
    Admitted { peer: InstanceId, limit: usize },
    /// It did not: the frame goes to [`Gate::screen`].
    Unknown,
}

/// What the ROUTER does with a frame from an unauthenticated connection.
pub(crate) enum Screen {
    /// Send this frame back (a challenge).
    Reply(zmq::Message),
    /// The connection authenticated: make its reverse link, send `welcome`.
    Admit {
        peer: InstanceId,
        limit: usize,
        welcome: zmq::Message,
    },
    /// Refused (counted): send the `Error` answer, if any.
    Refuse(Option<zmq::Message>),
    /// Not worth an answer or a count (a pong, a goodbye).
    Ignore,
}

/// Authentication state of the ROUTER.
pub(crate) struct Gate {
    secret: AuthSecret,
    /// How long a client may take between its hello and its proof.
    expiry: Duration,
    pending: HashMap<Box<[u8]>, Pending>,
    admitted: HashMap<Box<[u8]>, Admitted>,
}

impl Gate {
    /// A gate admitting connections that know `secret`.
    pub(crate) fn new(secret: AuthSecret, expiry: Duration) -> Self {
        Self {
            secret,
            expiry,
            pending: HashMap::new(),
            admitted: HashMap::new(),
        }
    }

    /// Whether routing id `identity` authenticated on connection `conn`.
    /// The flag is true when it had authenticated on another connection,
    /// which is forgotten now.
    pub(crate) fn check(
        &mut self,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        now: Instant,
    ) -> (Admission, bool) {
        let Some(admitted) = self.admitted.get_mut(identity) else {
            return (Admission::Unknown, false);
        };
        if conn.is_some_and(|conn| conn.is(&admitted.conn)) {
            admitted.last_used = now;
            let (peer, limit) = (admitted.peer, admitted.limit);
            return (Admission::Admitted { peer, limit }, false);
        }
        tracing::warn!(peer = %admitted.peer, "zmq: an authenticated routing id arrived on another connection");
        self.admitted.remove(identity);
        (Admission::Unknown, true)
    }

    /// Forgets the connection of `identity` (its client said goodbye).
    pub(crate) fn forget(&mut self, identity: &[u8]) {
        self.admitted.remove(identity);
    }

    /// Decides about `frame`, from routing id `identity` on connection `conn`.
    pub(crate) fn screen(
        &mut self,
        control: &Control,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        frame: &FrameRef<'_>,
        now: Instant,
    ) -> Screen {
        let header = &frame.header;
        let step = header.kind == Kind::Heartbeat && header.has(flags::AUTH);
        match (header.kind, step, header.has(flags::PONG)) {
            (Kind::Heartbeat, true, false) if header.correlation_id.0 == 0 => {
                self.on_hello(control, identity, conn, frame, now)
            }
            (Kind::Heartbeat, true, false) => self.on_proof(control, identity, conn, frame, now),
            (Kind::Heartbeat, _, true) | (Kind::Goodbye, _, _) => Screen::Ignore,
            (Kind::Heartbeat, false, false) => {
                refuse(control, frame, "authentication required: send a hello")
            }
            (kind, ..) if expects_reply(kind) => refuse(control, frame, "not authenticated"),
            _ => Screen::Refuse(None),
        }
    }

    fn on_hello(
        &mut self,
        control: &Control,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        frame: &FrameRef<'_>,
        now: Instant,
    ) -> Screen {
        let (Some(conn), Some((limit, client_nonce))) = (conn, auth::read_hello(frame.payload))
        else {
            return refuse(control, frame, "malformed hello");
        };
        let Ok(server_nonce) = auth::nonce() else {
            return refuse(control, frame, "no randomness for a nonce");
        };
        let nonces = Nonces {
            client: client_nonce,
            server: server_nonce,
        };
        let client = frame.header.sender;
        let ids = Ids {
            client,
            server: control.local(),
        };
        let proof = self.secret.proof(Role::Server, &nonces, &ids);
        let payload = auth::challenge_payload(control.max_frame(), &server_nonce, &proof);
        let (challenge, msg) = control.auth(true, frame.header.message_id, &payload);
        self.make_room(now);
        self.pending.insert(
            identity.into(),
            Pending {
                conn: conn.to_owned(),
                nonces,
                client,
                challenge,
                limit,
                since: now,
            },
        );
        Screen::Reply(msg)
    }

    fn on_proof(
        &mut self,
        control: &Control,
        identity: &[u8],
        conn: Option<ConnRef<'_>>,
        frame: &FrameRef<'_>,
        now: Instant,
    ) -> Screen {
        let header = &frame.header;
        let valid = self.pending.get(identity).is_some_and(|p| {
            conn.is_some_and(|conn| conn.is(&p.conn))
                && header.correlation_id == p.challenge
                && header.sender == p.client
                && self.secret.verify(
                    Role::Client,
                    &p.nonces,
                    &Ids {
                        client: p.client,
                        server: control.local(),
                    },
                    frame.payload,
                )
        });
        if !valid {
            tracing::warn!(sender = %header.sender, "zmq: authentication failed");
            self.pending.remove(identity);
            return refuse(control, frame, "authentication failed");
        }
        let Some(p) = self.pending.remove(identity) else {
            return refuse(control, frame, "authentication failed");
        };
        let (_, welcome) = control.auth(
            true,
            header.message_id,
            &(control.max_frame() as u64).to_le_bytes(),
        );
        self.admit(identity, p.conn, p.client, p.limit, now);
        Screen::Admit {
            peer: p.client,
            limit: p.limit,
            welcome,
        }
    }

    fn admit(
        &mut self,
        identity: &[u8],
        conn: ConnId,
        peer: InstanceId,
        limit: usize,
        now: Instant,
    ) {
        if self.admitted.len() >= MAX_ADMITTED && !self.admitted.contains_key(identity) {
            let stalest = self
                .admitted
                .iter()
                .min_by_key(|(_, a)| a.last_used)
                .map(|(id, _)| id.clone());
            if let Some(id) = stalest {
                self.admitted.remove(&id);
            }
        }
        let admitted = Admitted {
            conn,
            peer,
            limit,
            last_used: now,
        };
        self.admitted.insert(identity.into(), admitted);
    }

    /// Forgets handshakes older than the expiry; then, if still full, the oldest.
    fn make_room(&mut self, now: Instant) {
        self.expire(now);
        if self.pending.len() >= MAX_PENDING {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.pending.remove(&id);
            }
        }
    }

    /// Forgets handshakes whose client took too long to prove itself.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expiry = self.expiry;
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.since) < expiry);
    }
}

/// A refusal, answered with an `Error` frame when the frame expects one.
fn refuse(control: &Control, frame: &FrameRef<'_>, why: &str) -> Screen {
    let header = &frame.header;
    let answers = expects_reply(header.kind) || header.kind == Kind::Heartbeat;
    Screen::Refuse(answers.then(|| control.error(header, ErrorCode::Refused, why)))
}
