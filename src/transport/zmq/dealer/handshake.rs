//! The end of an outbound connect: checking who answers, the DEALER's side
//! of the authentication handshake, and bringing the link up.

use std::sync::Arc;

use super::{Dealer, State, Teardown};
use crate::error::Error;
use crate::ids::InstanceId;
use crate::transport::zmq::auth::Handshake;
use crate::transport::zmq::frames::announced_limit;
use crate::transport::zmq::io_thread::Env;
use crate::transport::zmq::link::{Route, ZmqLink};
use crate::wire::FrameRef;

impl Dealer {
    /// Takes a pong while connecting: without a secret it completes the
    /// handshake; with one it is a step of the authentication (`super::auth`).
    pub(super) fn handshake(&mut self, env: &mut Env, frame: &FrameRef<'_>) -> Option<Teardown> {
        let State::Connecting { probe, auth, .. } = &mut self.state else {
            return None;
        };
        let corr = frame.header.correlation_id;
        let answers_probe = corr == *probe;
        if !answers_probe && corr.0 != 0 && auth.as_ref().is_none_or(|a| a.proof_id != Some(corr)) {
            return None;
        }
        if self.peer == InstanceId::nil() {
            // Discovery (`connect_to_address`): whoever answers is the peer.
            self.peer = frame.header.sender;
        }
        if frame.header.sender != self.peer {
            tracing::warn!(
                expected = %self.peer,
                found = %frame.header.sender,
                endpoint = %self.endpoint,
                "zmq: another instance answers at this endpoint"
            );
            return Some(Teardown::Failed(Error::PeerLost(self.peer)));
        }
        let Some(secret) = env.settings.secret.clone() else {
            let limit = announced_limit(frame.payload);
            return self.come_up(env, limit, false);
        };
        let auth = auth.as_mut()?;
        match auth.on_pong(&secret, &env.control, self.peer, frame) {
            Ok(Handshake::Wait) => None,
            Ok(Handshake::Send(msg)) => {
                if let Err(err) = self.sockets.socket.lock().send(msg, zmq::DONTWAIT) {
                    return Some(Teardown::Failed(Error::transport(format!(
                        "zmq send proof: {err}"
                    ))));
                }
                None
            }
            Ok(Handshake::Done(limit)) => self.come_up(env, Some(limit), true),
            Err(why) => {
                tracing::warn!(peer = %self.peer, endpoint = %self.endpoint, why, "zmq: peer failed authentication");
                Some(Teardown::Failed(Error::Refused(format!(
                    "{} at {}: {why}",
                    self.peer, self.endpoint
                ))))
            }
        }
    }

    /// The handshake is done: the link comes up and the waiters get it.
    fn come_up(&mut self, env: &Env, theirs: Option<usize>, trusted: bool) -> Option<Teardown> {
        let limit = theirs.map_or(env.settings.max_frame, |theirs| {
            theirs.min(env.settings.max_frame)
        });
        let link = ZmqLink::new(
            self.link_id,
            self.peer,
            Route::Outbound,
            limit,
            env.settings.send_queue,
            (
                (self.sockets.socket.weak(), self.sockets.socket.fd()),
                Arc::clone(&env.shared),
            ),
        );
        link.set_trusted(trusted);
        let old = std::mem::replace(
            &mut self.state,
            State::Up {
                link: Arc::clone(&link),
            },
        );
        if let State::Connecting { waiters, .. } = old {
            for waiter in waiters {
                let _ = waiter.send(Ok(Arc::clone(&link)));
            }
        }
        tracing::debug!(peer = %self.peer, endpoint = %self.endpoint, "zmq: link up");
        None
    }
}
