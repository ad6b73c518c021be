//! ZeroMQ over TCP (being built).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::transport::{BoxedTransport, Inbox};

/// Binds the TCP transport for a manager.
pub(crate) fn bind_for_manager(
    _endpoint: &str,
    _heartbeat: Duration,
    _id: InstanceId,
    _inbox: Inbox,
) -> Result<BoxedTransport> {
    Err(Error::Config(
        "the TCP transport is not built into this revision".into(),
    ))
}
