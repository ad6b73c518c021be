//! The DEALER's outbound side: moving queued frames into the socket, and
//! the shutdown drain (frames first, then a probe the peer answers once it
//! has read them, then the goodbye).

use std::time::{Duration, Instant};

use super::{Dealer, Drain, State, Teardown, events_after_call, millis};
use crate::transport::zmq::io_thread::Env;

impl Dealer {
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
}
