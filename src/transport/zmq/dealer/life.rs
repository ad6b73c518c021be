//! The DEALER's liveness: heartbeats, the connect deadline, silence, and
//! the teardown that fails the connect's waiters or closes the link and
//! reports its loss.

use std::time::{Duration, Instant};

use super::read::drain_input;
use super::{Dealer, State, Teardown};
use crate::error::Error;
use crate::transport::zmq::io_thread::Env;

impl Dealer {
    /// Counts frames callers sent straight into the socket (requests and
    /// replies do not pass this thread) as traffic the peer hears, so a busy
    /// link is not probed as if it were idle.
    fn note_tx(&mut self, now: Instant) {
        if let State::Up { link } = &self.state {
            let sent = link.counters.values().messages_out;
            if sent != self.tx_seen {
                self.tx_seen = sent;
                self.last_tx = self.last_tx.max(now);
            }
        }
    }

    /// Does not count `paused` (time the I/O thread did not run) as silence.
    pub(crate) fn excuse(&mut self, paused: Duration, now: Instant) {
        self.last_rx = (self.last_rx + paused).min(now);
    }

    /// Heartbeats and deadlines.
    pub(crate) fn tick(&mut self, env: &mut Env, now: Instant) -> Option<Teardown> {
        if let State::Connecting { deadline, .. } = self.state {
            return (now >= deadline).then_some(Teardown::Failed(Error::Timeout(
                env.settings.connect_timeout,
            )));
        }
        if let Some(down) = self.read_stale_input(env, now) {
            return Some(down);
        }
        self.note_rx(now);
        self.note_tx(now);
        let silent = now.saturating_duration_since(self.last_rx);
        if silent >= env.settings.heartbeat_timeout {
            return Some(Teardown::Lost("heartbeat timeout"));
        }
        // Probe when we sent nothing for an interval (the peer hears we live)
        // or heard nothing for one (a peer that only answers probes).
        let interval = env.settings.heartbeat_interval;
        let idle = now.saturating_duration_since(self.last_tx) >= interval;
        if (idle || silent >= interval)
            && now.saturating_duration_since(self.last_probe) >= interval
            && self.blocked.is_none()
            && self.writable()
        {
            let (_, probe) = env.control.probe();
            if self.send_control(probe) {
                self.last_probe = now;
                self.last_tx = now;
            }
        }
        None
    }

    /// Ends this DEALER: fails waiters or closes the link, reports a loss.
    pub(crate) fn teardown(self, env: &Env, why: Teardown) {
        match self.state {
            State::Connecting { waiters, .. } => {
                let err = match why {
                    Teardown::Failed(err) => err,
                    Teardown::Closed => Error::ShuttingDown,
                    Teardown::Lost(reason) => Error::transport(format!(
                        "cannot reach {} at {}: {reason}",
                        self.peer, self.endpoint
                    )),
                };
                tracing::debug!(peer = %self.peer, endpoint = %self.endpoint, %err, "zmq: connect failed");
                let mut waiters = waiters.into_iter();
                if let Some(first) = waiters.next() {
                    for other in waiters {
                        let _ = other.send(Err(clone_err(&err)));
                    }
                    let _ = first.send(Err(err));
                }
            }
            State::Up { link } => {
                if matches!(why, Teardown::Lost(_)) {
                    link.begin_loss_report();
                }
                link.mark_closed();
                link.queue.close();
                link.rx.stop();
                if let Teardown::Lost(reason) = why {
                    // What the peer sent before it went is delivered before
                    // its loss, whether or not the reader task got to it.
                    drain_input(&link, &self.sockets, env);
                    link.loss_reporting_done();
                    tracing::info!(peer = %self.peer, endpoint = %self.endpoint, reason, "zmq: link lost");
                    env.inbox.events.on_link_lost(self.peer);
                } else {
                    tracing::debug!(peer = %self.peer, "zmq: link closed");
                }
            }
        }
        // Dropping the sockets closes them; LINGER is 0 unless a goodbye was sent.
    }
}

/// Copies the errors a connect can end with (each waiter gets its own).
fn clone_err(err: &Error) -> Error {
    match err {
        Error::PeerLost(peer) => Error::PeerLost(*peer),
        Error::Timeout(after) => Error::Timeout(*after),
        Error::ShuttingDown => Error::ShuttingDown,
        Error::Refused(why) => Error::Refused(why.clone()),
        other => Error::transport(other.to_string()),
    }
}
