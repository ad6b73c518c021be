//! The I/O thread's timed work on the ROUTER: the retry of a stalled
//! invocation and of blocked replies, heartbeats and silence, and the
//! reading of input the reader task left waiting a whole tick.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use super::{RouterCore, RouterSide, State};
use crate::ids::MessageId;
use crate::transport::zmq::shared::RouteError;

/// Frames the I/O thread reads when the reader task left input waiting.
const STALE_BUDGET: usize = 64;

impl RouterCore {
    /// Hands the stalled invocation to the inbox if it has room now.
    /// Returns whether the ROUTER may be read again.
    pub(super) fn unstall(&self, state: &mut State, now: Instant) -> bool {
        let Some(inbound) = state.pending.take() else {
            return true;
        };
        let pending = match self.inbox.invocations.try_send(inbound) {
            Ok(()) => {
                // Their frames waited in the socket, not in silence.
                for client in state.clients.values_mut() {
                    client.last_seen = now;
                }
                None
            }
            Err(TrySendError::Full(inbound)) => Some(inbound),
            Err(TrySendError::Closed(inbound)) => {
                self.refuse_shutting_down(&inbound);
                None
            }
        };
        let unstalled = pending.is_none();
        self.set_pending(state, pending);
        unstalled
    }
}

impl RouterSide {
    /// Retries the stalled invocation and the blocked replies.
    pub(crate) fn retry(&mut self, now: Instant) {
        let core = &*self.core;
        let mut state = core.state.lock();
        if state.pending.is_some() && core.unstall(&mut state, now) {
            // The reader task waits for room too; tell it to read on.
            core.shared.router_task.kick.notify_one();
        }
        if state.blocked > 0 {
            let blocked: Vec<Box<[u8]>> = state
                .clients
                .iter()
                .filter(|(_, c)| c.blocked.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for identity in blocked {
                core.flush(&mut state, &identity, now);
            }
        }
    }

    /// Does not count `paused` (time the I/O thread did not run) as silence.
    pub(crate) fn excuse(&mut self, paused: Duration, now: Instant) {
        for client in self.core.state.lock().clients.values_mut() {
            client.last_seen = (client.last_seen + paused).min(now);
        }
    }

    /// Heartbeats: a pong to every client we sent nothing for an interval
    /// while its probes may wait unread behind its other frames: while we
    /// stall on a full inbox, and while we read a stream of its frames (we
    /// heard it within the interval: a stream of one-way messages longer
    /// than we read in a heartbeat timeout holds its probe back that long,
    /// and it would take us for dead). An idle client gets pongs only to its
    /// own probes (docs/wire.md). Then drops clients silent past the
    /// timeout, except while we stall (their frames wait unread in the socket).
    /// Returns whether a frame read here went to the application.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        let delivered = self.read_stale_input();
        let core = &*self.core;
        let mut state = core.state.lock();
        let state = &mut *state;
        if let Some(gate) = &mut state.gate {
            gate.expire(now);
        }
        let interval = core.settings.heartbeat_interval;
        let stalled = state.pending.is_some();
        let mut gone = Vec::new();
        for (identity, client) in &mut state.clients {
            let idle = now.saturating_duration_since(client.last_sent) >= interval;
            let streaming = now.saturating_duration_since(client.last_seen) < interval;
            if (stalled || streaming) && idle && client.blocked.is_none() {
                match core.route_to(identity, core.control.pong(MessageId(0))) {
                    Ok(()) => client.last_sent = now,
                    Err(RouteError::Full(_)) => {}
                    Err(RouteError::Gone) => gone.push(identity.clone()),
                }
            }
        }
        if !stalled {
            let timeout = core.settings.heartbeat_timeout;
            gone.extend(
                state
                    .clients
                    .iter()
                    .filter(|(_, c)| now.saturating_duration_since(c.last_seen) >= timeout)
                    .map(|(id, _)| id.clone()),
            );
        }
        for identity in gone {
            core.drop_client(state, &identity, "silent or unroutable");
        }
        delivered
    }

    /// While the reader task reads: input seen waiting at two ticks in a
    /// row means the task's runtime is not running (a current-thread
    /// runtime between `block_on` calls, a stopped runtime); read it here
    /// so clients' probes are answered and requests are not stranded.
    fn read_stale_input(&mut self) -> bool {
        if !self.core.shared.router_task.reads() || self.core.is_stalled() {
            self.stale = false;
            return false;
        }
        let waiting = {
            let socket = self.socket.lock();
            let events = socket.get_events().unwrap_or(zmq::PollEvents::empty());
            // The look may have taken the task's signal: kick it.
            self.core.shared.router_task.kick_if_reading(events);
            events.contains(zmq::POLLIN)
        };
        let stale = std::mem::replace(&mut self.stale, waiting);
        if !(waiting && stale) {
            return false;
        }
        tracing::trace!("zmq: the ROUTER's reader task did not run; reading here");
        self.stale = false;
        self.read(STALE_BUDGET)
    }
}
