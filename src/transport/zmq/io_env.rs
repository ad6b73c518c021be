//! What the I/O thread works with: its settings (also the ROUTER's reader
//! task's) and the environment both socket sides get on the I/O thread.

use std::sync::Arc;
use std::time::Duration;

use super::auth::AuthSecret;
use super::config::ZmqConfig;
use super::frames::Control;
use super::link::IoShared;
use crate::ids::InstanceId;
use crate::transport::Inbox;

/// The settings the I/O thread works with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) send_queue: usize,
    pub(crate) high_water_mark: i32,
    pub(crate) max_frame: usize,
    pub(crate) spin: Duration,
    pub(crate) goodbye_linger: Duration,
    pub(crate) drain_timeout: Duration,
    /// The shared secret connections must prove they know, if any.
    pub(crate) secret: Option<AuthSecret>,
}

impl Settings {
    /// From the checked config and the inbox's frame limit.
    pub(crate) fn new(config: &ZmqConfig, max_frame: usize) -> Self {
        Self {
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.effective_heartbeat_timeout(),
            connect_timeout: config.connect_timeout,
            send_queue: config.send_queue,
            high_water_mark: config.high_water_mark,
            max_frame,
            spin: config.spin,
            goodbye_linger: config.goodbye_linger,
            drain_timeout: config.drain_timeout,
            secret: config.auth_secret.clone(),
        }
    }

    /// Options every socket gets: no linger, the frame limit, the HWMs.
    pub(crate) fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()> {
        socket.set_linger(0)?;
        socket.set_maxmsgsize(i64::try_from(self.max_frame).unwrap_or(i64::MAX))?;
        socket.set_sndhwm(self.high_water_mark)?;
        socket.set_rcvhwm(self.high_water_mark)
    }

    /// How often heartbeats and deadlines are checked.
    pub(crate) fn tick(&self) -> Duration {
        (self.heartbeat_interval / 5).max(Duration::from_millis(1))
    }
}

/// What both socket sides need: identity, inbox, settings, control frames.
pub(crate) struct Env {
    pub(crate) ctx: zmq::Context,
    pub(crate) local: InstanceId,
    pub(crate) inbox: Inbox,
    pub(crate) settings: Settings,
    /// Shared with the ROUTER's reader task.
    pub(crate) control: Arc<Control>,
    pub(crate) shared: Arc<IoShared>,
    /// Set when a frame went to the application (an invocation or a reply):
    /// its answer may follow at once, so the I/O thread may spin for it.
    pub(crate) delivered: bool,
}

impl Env {
    /// A fresh link id.
    pub(crate) fn new_link_id(&mut self) -> u64 {
        self.shared.new_link_id()
    }
}
