//! The DEALER's inbound side: the peer's frames (replies, pongs, the
//! handshake, goodbyes), read by the I/O thread while no reader task of the
//! link reads them, and the monitor's connection events.

use std::sync::Arc;
use std::time::Instant;

use super::{Dealer, State, Teardown};
use crate::error::Error;
use crate::transport::zmq::frames::expects_reply;
use crate::transport::zmq::io_thread::Env;
use crate::transport::zmq::link::ZmqLink;
use crate::transport::zmq::monitor::{self, MonitorEvent, Monitored};
use crate::transport::zmq::reader::{self, Read};
use crate::wire::{self, ErrorCode, FrameRef, Kind, flags};

impl Dealer {
    /// Whether the I/O thread reads this DEALER's input: always before the
    /// link is up and in the shutdown drain, otherwise only while no reader
    /// task does (`reader`).
    pub(crate) fn io_reads(&self, shutting_down: bool) -> bool {
        match &self.state {
            State::Up { link } => shutting_down || !link.rx.task_reads(),
            State::Connecting { .. } => true,
        }
    }

    /// Counts frames another reader took from the peer as signs of life.
    pub(super) fn note_rx(&mut self, now: Instant) {
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

    /// While a reader task reads this DEALER: input that waited a whole tick
    /// unread (its runtime is not running, e.g. a current-thread runtime
    /// between `block_on` calls) is read here, so replies, pongs and
    /// goodbyes are never held hostage by a runtime that sleeps.
    pub(super) fn read_stale_input(&mut self, env: &mut Env, now: Instant) -> Option<Teardown> {
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
}

/// Reads and routes whatever input a lost link still holds (waiting for a
/// reader task that is mid-batch, so the order holds).
pub(super) fn drain_input(link: &ZmqLink, sockets: &Monitored, env: &Env) {
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
