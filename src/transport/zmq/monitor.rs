//! libzmq socket monitors: they tell the I/O thread at once when a DEALER's
//! TCP connection is refused or closes, instead of waiting for heartbeats.

use super::shared::SharedSocket;
use crate::error::{Error, Result};

/// What a monitor reported, reduced to what the transport acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MonitorEvent {
    /// The TCP connection (and ZMTP handshake) is up.
    Connected,
    /// The connection failed, closed, or will be retried: the peer is not
    /// (or no longer) reachable there.
    Down(&'static str),
    /// Anything else (ignored).
    Other,
}

/// The events a DEALER's monitor subscribes to.
fn subscribed() -> i32 {
    use zmq::SocketEvent as E;
    [
        E::CONNECTED,
        E::CONNECT_RETRIED,
        E::CLOSED,
        E::DISCONNECTED,
        E::HANDSHAKE_SUCCEEDED,
        E::HANDSHAKE_FAILED_NO_DETAIL,
        E::HANDSHAKE_FAILED_PROTOCOL,
        E::HANDSHAKE_FAILED_AUTH,
    ]
    .iter()
    .fold(0, |mask, event| mask | i32::from(event.to_raw()))
}

/// Reads an event number without `SocketEvent::from_raw`, which panics on
/// values it does not know.
fn classify(raw: u16) -> MonitorEvent {
    use zmq::SocketEvent as E;
    let is = |event: E| raw == event.to_raw();
    if is(E::HANDSHAKE_SUCCEEDED) || is(E::CONNECTED) {
        MonitorEvent::Connected
    } else if is(E::CONNECT_RETRIED) {
        MonitorEvent::Down("connection refused or failed")
    } else if is(E::CLOSED) {
        MonitorEvent::Down("connection closed")
    } else if is(E::DISCONNECTED) {
        MonitorEvent::Down("connection lost")
    } else if is(E::HANDSHAKE_FAILED_NO_DETAIL)
        || is(E::HANDSHAKE_FAILED_PROTOCOL)
        || is(E::HANDSHAKE_FAILED_AUTH)
    {
        MonitorEvent::Down("ZMTP handshake failed")
    } else {
        MonitorEvent::Other
    }
}

/// A socket with a monitor attached, and the PAIR socket reading the monitor.
///
/// libzmq sends monitor events *blocking* (`monitor_event` in
/// `socket_base.cpp`), from whichever thread raises them, often its own I/O
/// thread. An event raised while the socket is being torn down, after the
/// reading PAIR is gone, would block that thread for good and freeze every
/// socket of the context. So dropping this first detaches the monitor:
/// re-registering on a fresh endpoint with no events stops the old monitor
/// (`MONITOR_STOPPED` is not subscribed, so nothing is sent) and leaves one
/// that never emits. Only then are the sockets closed.
pub(crate) struct Monitored {
    /// The monitored socket (shared with the links' direct sends).
    pub(crate) socket: SharedSocket,
    /// Reads the monitor's events.
    pub(crate) events: zmq::Socket,
    name: String,
}

impl Monitored {
    /// Attaches a monitor to `socket`. `name` must be unique within the
    /// context (it names inproc endpoints).
    pub(crate) fn attach(ctx: &zmq::Context, socket: zmq::Socket, name: String) -> Result<Self> {
        let endpoint = format!("inproc://{name}");
        socket
            .monitor(&endpoint, subscribed())
            .map_err(|err| Error::transport(format!("zmq monitor: {err}")))?;
        let monitored = Self {
            socket: SharedSocket::new(socket)?,
            events: ctx
                .socket(zmq::PAIR)
                .map_err(|err| Error::transport(format!("zmq monitor socket: {err}")))?,
            name,
        };
        monitored
            .events
            .set_linger(0)
            .and_then(|()| monitored.events.connect(&endpoint))
            .map_err(|err| Error::transport(format!("zmq monitor connect: {err}")))?;
        Ok(monitored)
    }
}

impl Drop for Monitored {
    fn drop(&mut self) {
        let silent = format!("inproc://{}-detached", self.name);
        if let Err(err) = self.socket.lock().monitor(&silent, 0) {
            tracing::warn!(%err, "zmq: could not detach a socket monitor");
        }
        // Fields drop next: the socket, then the PAIR that read its monitor.
    }
}

/// Reads every event waiting on a monitor's PAIR socket and returns the
/// most important one: `Down` beats `Connected`, which beats `Other`.
pub(crate) fn drain(pair: &zmq::Socket, scratch: &mut zmq::Message) -> Option<MonitorEvent> {
    let mut worst: Option<MonitorEvent> = None;
    loop {
        if pair.recv(scratch, zmq::DONTWAIT).is_err() {
            return worst;
        }
        let raw = match scratch.get(0..2) {
            Some(&[lo, hi]) => u16::from_ne_bytes([lo, hi]),
            _ => 0,
        };
        let event = classify(raw);
        tracing::trace!(
            raw = format_args!("{raw:#06x}"),
            ?event,
            "zmq: monitor event"
        );
        // The second part names the endpoint; skip it (and anything else).
        while scratch.get_more() {
            if pair.recv(scratch, zmq::DONTWAIT).is_err() {
                break;
            }
        }
        worst = match (worst, event) {
            (Some(down @ MonitorEvent::Down(_)), _) => Some(down),
            (_, down @ MonitorEvent::Down(_)) => Some(down),
            (Some(MonitorEvent::Connected), _) | (_, MonitorEvent::Connected) => {
                Some(MonitorEvent::Connected)
            }
            _ => Some(MonitorEvent::Other),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_numbers_do_not_panic() {
        assert_eq!(classify(0x7fff), MonitorEvent::Other);
        assert_eq!(
            classify(zmq::SocketEvent::DISCONNECTED.to_raw()),
            MonitorEvent::Down("connection lost")
        );
    }
}
