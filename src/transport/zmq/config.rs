//! Settings of the ZeroMQ transport.

use std::time::Duration;

use super::auth::AuthSecret;
use crate::error::{Error, Result};

/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// Default number of heartbeat intervals without a sign of life before a link is lost.
pub const DEFAULT_HEARTBEAT_MISSES: u32 = 3;
/// Default budget for [`connect`](crate::transport::ThinTransport::connect).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default capacity of each link's send queue, in frames.
pub const DEFAULT_SEND_QUEUE: usize = 1024;
/// Default libzmq high-water mark (`ZMQ_SNDHWM` / `ZMQ_RCVHWM`), in frames.
pub const DEFAULT_HIGH_WATER_MARK: i32 = 1000;
/// Default spin of the I/O thread after it handed a frame to the application.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Default time a goodbye may take to leave when a socket is closed.
pub const DEFAULT_GOODBYE_LINGER: Duration = Duration::from_millis(200);
/// Default [`ZmqConfig::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`ZmqTransport`](super::ZmqTransport).
///
/// Build one with [`ZmqConfig::default`] (or [`ZmqConfig::new`]) and the
/// chained setters; [`ZmqTransport::bind`](super::ZmqTransport::bind) checks
/// it. The largest frame is not set here: it comes from
/// [`Inbox::max_frame`](crate::transport::Inbox::max_frame).
///
/// ```
/// use std::time::Duration;
/// use active_message::transport::zmq::ZmqConfig;
///
/// let config = ZmqConfig::new("tcp://127.0.0.1:0")
///     .heartbeat_interval(Duration::from_millis(100))
///     .connect_timeout(Duration::from_secs(1));
/// assert_eq!(config.effective_heartbeat_timeout(), Duration::from_millis(300));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZmqConfig {
    /// Where the ROUTER listens, e.g. `tcp://0.0.0.0:5555`, or
    /// `tcp://127.0.0.1:0` for a port picked by the system.
    /// Default `tcp://0.0.0.0:0`.
    pub endpoint: String,
    /// An outbound link idle on receive for this long sends a heartbeat probe.
    /// Default 250 ms.
    pub heartbeat_interval: Duration,
    /// A link with no sign of life for this long is lost. `None` means
    /// [`DEFAULT_HEARTBEAT_MISSES`] intervals (750 ms by default).
    pub heartbeat_timeout: Option<Duration>,
    /// How long `connect` waits for the peer's answer. Default 2 s.
    pub connect_timeout: Duration,
    /// Capacity of each link's send queue in frames (backpressure starts when
    /// it and the socket's high-water mark are full). Default 1024.
    pub send_queue: usize,
    /// libzmq high-water mark of every socket (`ZMQ_SNDHWM` and `ZMQ_RCVHWM`),
    /// in frames. Default 1000.
    pub high_water_mark: i32,
    /// Host to advertise instead of the bound one (a name or an address).
    /// Default: the bound host, or for a wildcard the first non-loopback IPv4
    /// address of an up interface, else `127.0.0.1`.
    pub advertise_host: Option<String>,
    /// How long the I/O thread keeps polling instead of sleeping after it
    /// handed a frame to the application (an invocation or a reply), so the
    /// application's immediate answer does not pay a thread wake-up. The spin
    /// yields the CPU between polls and ends as soon as the application sends;
    /// idle links never spin. Default 50 µs; zero disables spinning.
    pub spin: Duration,
    /// How long a goodbye may take to leave when a link or the transport is
    /// closed (the socket's `ZMQ_LINGER` at close). Default 200 ms.
    pub goodbye_linger: Duration,
    /// At shutdown, how long frames already accepted by outbound links may
    /// take to leave (queued frames first, then the goodbye, then libzmq's
    /// own queue as linger). Default 5 s; the manager sets its shutdown
    /// timeout.
    pub drain_timeout: Duration,
    /// Shared secret of the connection handshake (`docs/security.md`).
    /// With one, every connection to our ROUTER must prove it knows it
    /// before any of its frames reaches a handler, and every peer we dial
    /// must prove it too. Default none: anyone reaching the port may call.
    pub auth_secret: Option<AuthSecret>,
}

impl Default for ZmqConfig {
    fn default() -> Self {
        Self {
            endpoint: "tcp://0.0.0.0:0".to_owned(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            send_queue: DEFAULT_SEND_QUEUE,
            high_water_mark: DEFAULT_HIGH_WATER_MARK,
            advertise_host: None,
            spin: DEFAULT_SPIN,
            goodbye_linger: DEFAULT_GOODBYE_LINGER,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            auth_secret: None,
        }
    }
}

impl ZmqConfig {
    /// Default settings listening on `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self::default().endpoint(endpoint)
    }

    /// Sets the endpoint to bind.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the heartbeat timeout (default: three intervals).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the capacity of each link's send queue, in frames.
    pub fn send_queue(mut self, frames: usize) -> Self {
        self.send_queue = frames;
        self
    }

    /// Sets the libzmq high-water mark of every socket, in frames.
    pub fn high_water_mark(mut self, frames: i32) -> Self {
        self.high_water_mark = frames;
        self
    }

    /// Sets the host advertised in [`local_endpoint`](crate::transport::ThinTransport::local_endpoint).
    pub fn advertise_host(mut self, host: impl Into<String>) -> Self {
        self.advertise_host = Some(host.into());
        self
    }

    /// Sets how long the I/O thread spins after handing a frame to the
    /// application (zero: never).
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Sets how long a goodbye may take to leave at close.
    pub fn goodbye_linger(mut self, linger: Duration) -> Self {
        self.goodbye_linger = linger;
        self
    }

    /// Sets [`ZmqConfig::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Requires every connection, both ways, to prove it knows `secret`.
    pub fn auth_secret(mut self, secret: AuthSecret) -> Self {
        self.auth_secret = Some(secret);
        self
    }

    /// The heartbeat timeout in force (set, or three intervals).
    pub fn effective_heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
            .unwrap_or(self.heartbeat_interval * DEFAULT_HEARTBEAT_MISSES)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
        if self.endpoint.is_empty() {
            return bad("zmq endpoint is empty");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("zmq heartbeat interval must be positive");
        }
        if self.effective_heartbeat_timeout() <= self.heartbeat_interval {
            return bad("zmq heartbeat timeout must exceed the heartbeat interval");
        }
        if self.connect_timeout.is_zero() {
            return bad("zmq connect timeout must be positive");
        }
        if self.send_queue == 0 {
            return bad("zmq send queue capacity must be positive");
        }
        if self.high_water_mark < 0 {
            return bad("zmq high-water mark must not be negative");
        }
        if self.advertise_host.as_deref() == Some("") {
            return bad("zmq advertise host is empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_timeout_is_three_intervals() {
        let config = ZmqConfig::default();
        config.validate().unwrap();
        assert_eq!(
            config.effective_heartbeat_timeout(),
            Duration::from_millis(750)
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(ZmqConfig::default().send_queue(0).validate().is_err());
        assert!(
            ZmqConfig::default()
                .heartbeat_timeout(Duration::from_millis(100))
                .validate()
                .is_err()
        );
        assert!(ZmqConfig::new("").validate().is_err());
    }
}
