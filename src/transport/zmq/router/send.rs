//! The ROUTER's sending side: control frames, queued replies to each
//! client, forgetting clients, and goodbyes at shutdown.

use std::time::Instant;

use super::RouterSide;
use crate::transport::PeerLink;
use crate::transport::zmq::dealer::millis;
use crate::transport::zmq::io_thread::Env;
use crate::transport::zmq::link::{Route, ZmqLink};
use crate::transport::zmq::shared::{RouteError, route};

impl RouterSide {
    /// Sends a control frame to a known or unknown client (dropped when its
    /// pipe is full; a known client that is gone is forgotten).
    pub(super) fn send_control(&mut self, identity: &[u8], msg: zmq::Message, now: Instant) {
        let routed = route(&self.socket.lock(), identity, msg);
        match routed {
            Ok(()) => {
                if let Some(client) = self.clients.get_mut(identity) {
                    client.last_sent = now;
                }
            }
            Err(RouteError::Full(_)) => {}
            Err(RouteError::Gone) => self.drop_client(identity, "unroutable"),
        }
    }

    /// A reverse link has queued replies or a close request.
    pub(crate) fn on_dirty(&mut self, env: &mut Env, link: &ZmqLink, now: Instant) {
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
        self.flush(identity, now);
        if link
            .close_requested
            .load(std::sync::atomic::Ordering::Acquire)
            && self.clients.contains_key(&**identity)
        {
            let _ = route(&self.socket.lock(), identity, env.control.goodbye());
            self.drop_client(identity, "closed locally");
        }
    }

    /// Moves a client's queued replies into the ROUTER while it has room.
    pub(super) fn flush(&mut self, identity: &[u8], now: Instant) {
        let Some(client) = self.clients.get_mut(identity) else {
            return;
        };
        let was_blocked = client.blocked.is_some();
        let mut gone = false;
        while let Some(msg) = client.blocked.take().or_else(|| client.link.queue.pop()) {
            match route(&self.socket.lock(), identity, msg) {
                Ok(()) => {
                    client.last_sent = now;
                    // Under the socket's mutex (see `FrameQueue::sent_one`).
                    client.link.queue.sent_one();
                }
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
            (false, true) => self.blocked += 1,
            (true, false) => self.blocked -= 1,
            _ => {}
        }
        if gone {
            self.drop_client(identity, "unroutable");
        }
    }

    /// Forgets a client and closes its reverse link (no `on_link_lost`).
    pub(super) fn drop_client(&mut self, identity: &[u8], why: &str) {
        if let Some(mut client) = self.clients.remove(identity) {
            if client.blocked.take().is_some() {
                self.blocked -= 1;
            }
            client.link.mark_closed();
            client.link.unlist_inbound();
            client.link.queue.close();
            tracing::debug!(peer = %client.link.peer(), why, "zmq: client dropped");
        }
    }

    /// Shutdown: flush what fits, say goodbye to every client, close them all.
    pub(crate) fn finish(&mut self, env: &mut Env) {
        self.pending = None;
        let now = Instant::now();
        let identities: Vec<Box<[u8]>> = self.clients.keys().cloned().collect();
        for identity in identities {
            self.flush(&identity, now);
            let _ = route(&self.socket.lock(), &identity, env.control.goodbye());
            self.drop_client(&identity, "shutdown");
        }
        let _ = self
            .socket
            .lock()
            .set_linger(millis(env.settings.goodbye_linger));
    }
}
