//! The ROUTER's sending side: control frames, queued replies to each
//! client, forgetting clients, and goodbyes at shutdown.
//!
//! Every send here is a call on the ROUTER by a thread that may not be its
//! reader task, so each ends with the `ZMQ_EVENTS` look that kicks the task
//! when a message waits ([`RouterCore::after_call`]).

use std::time::Instant;

use super::{RouterCore, RouterSide, State};
use crate::transport::zmq::dealer::millis;
use crate::transport::zmq::frames::expects_reply;
use crate::transport::zmq::link::{Route, ZmqLink};
use crate::transport::zmq::shared::{RouteError, route};
use crate::transport::{Inbound, OutFrame, PeerLink};
use crate::wire::ErrorCode;

impl RouterCore {
    /// Sends `msg` to the client `identity` without blocking.
    pub(super) fn route_to(&self, identity: &[u8], msg: zmq::Message) -> Result<(), RouteError> {
        let Some(socket) = self.socket.upgrade() else {
            return Err(RouteError::Gone);
        };
        let socket = socket.lock();
        let routed = route(&socket, identity, msg);
        self.after_call(&socket);
        routed
    }

    /// Sends a control frame to a known or unknown client (dropped when its
    /// pipe is full; a known client that is gone is forgotten).
    pub(super) fn send_control(
        &self,
        state: &mut State,
        identity: &[u8],
        msg: zmq::Message,
        now: Instant,
    ) {
        match self.route_to(identity, msg) {
            Ok(()) => {
                if let Some(client) = state.clients.get_mut(identity) {
                    client.last_sent = now;
                }
            }
            Err(RouteError::Full(_)) => {}
            Err(RouteError::Gone) => self.drop_client(state, identity, "unroutable"),
        }
    }

    /// Moves a client's queued replies into the ROUTER while it has room.
    pub(super) fn flush(&self, state: &mut State, identity: &[u8], now: Instant) {
        let Some(client) = state.clients.get_mut(identity) else {
            return;
        };
        let was_blocked = client.blocked.is_some();
        let mut gone = false;
        while let Some(msg) = client.blocked.take().or_else(|| client.link.queue.pop()) {
            let Some(socket) = self.socket.upgrade() else {
                gone = true;
                break;
            };
            let socket = socket.lock();
            let routed = route(&socket, identity, msg);
            if routed.is_ok() {
                // Under the socket's mutex (see `FrameQueue::sent_one`).
                client.link.queue.sent_one();
            }
            self.after_call(&socket);
            drop(socket);
            match routed {
                Ok(()) => client.last_sent = now,
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
        match (was_blocked, client.blocked.is_some()) {
            (false, true) => state.blocked += 1,
            (true, false) => state.blocked -= 1,
            _ => {}
        }
        if gone {
            self.drop_client(state, identity, "unroutable");
        }
    }

    /// Forgets a client and closes its reverse link (no `on_link_lost`).
    pub(super) fn drop_client(&self, state: &mut State, identity: &[u8], why: &str) {
        if let Some(mut client) = state.clients.remove(identity) {
            if client.blocked.take().is_some() {
                state.blocked -= 1;
            }
            client.link.mark_closed();
            client.link.unlist_inbound();
            client.link.queue.close();
            tracing::debug!(peer = %client.link.peer(), why, "zmq: client dropped");
        }
    }

    /// Answers an invocation the dispatcher can no longer take (its inbox is
    /// closed) with `ShuttingDown`, through the invocation's own reply link.
    pub(super) fn refuse_shutting_down(&self, inbound: &Inbound) {
        if !expects_reply(inbound.header.kind) {
            return;
        }
        let header = self
            .control
            .error_header(&inbound.header, ErrorCode::ShuttingDown);
        let answer = OutFrame::bytes(header, "", b"receiver is shutting down");
        if let Err(err) = inbound.reply_link.try_send(answer) {
            tracing::debug!(%err, "zmq: could not refuse an invocation");
        }
    }
}

impl RouterSide {
    /// A reverse link has queued replies or a close request.
    pub(crate) fn on_dirty(&mut self, link: &ZmqLink, now: Instant) {
        let Route::Reverse(identity) = &link.route else {
            return;
        };
        let core = &*self.core;
        let mut state = core.state.lock();
        if state
            .clients
            .get(&**identity)
            .is_none_or(|c| c.link.id != link.id)
        {
            return; // Already dropped; its queue went with it.
        }
        core.flush(&mut state, identity, now);
        if link
            .close_requested
            .load(std::sync::atomic::Ordering::Acquire)
            && state.clients.contains_key(&**identity)
        {
            let _ = core.route_to(identity, core.control.goodbye());
            core.drop_client(&mut state, identity, "closed locally");
        }
    }

    /// Shutdown: flush what fits, say goodbye to every client, close them all.
    pub(crate) fn finish(&mut self) {
        let core = &*self.core;
        let mut state = core.state.lock();
        core.set_pending(&mut state, None);
        let now = Instant::now();
        let identities: Vec<Box<[u8]>> = state.clients.keys().cloned().collect();
        for identity in identities {
            core.flush(&mut state, &identity, now);
            let _ = core.route_to(&identity, core.control.goodbye());
            core.drop_client(&mut state, &identity, "shutdown");
        }
        let _ = self
            .socket
            .lock()
            .set_linger(millis(core.settings.goodbye_linger));
    }
}
