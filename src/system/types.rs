//! Request and response bodies of the system handlers. They travel as JSON
//! (raw payloads), so tools in any language can call them.

use serde::{Deserialize, Serialize};

use crate::ids::InstanceId;

/// System handler names.
pub(crate) mod names {
    /// Lists the peer's handlers.
    pub(crate) const LIST_HANDLERS: &str = "_list_handlers";
    /// Waits until a handler is registered.
    pub(crate) const WAIT_FOR_HANDLER: &str = "_wait_for_handler";
    /// Liveness and load.
    pub(crate) const HEALTH_CHECK: &str = "_health_check";
    /// The peer's `PeerInfo`.
    pub(crate) const DISCOVER: &str = "_discover";
    /// Asks the peer to connect back to the caller.
    pub(crate) const REGISTER_SERVICE: &str = "_register_service";
    /// Asks the peer to shut down gracefully.
    pub(crate) const REQUEST_SHUTDOWN: &str = "_request_shutdown";
    /// The peer's counters.
    pub(crate) const STATS: &str = "_stats";
}

/// Answer of `_health_check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckResponse {
    /// `"ok"` while serving, `"draining"` once shutdown has begun.
    pub status: String,
    /// The answering manager.
    pub instance_id: InstanceId,
    /// Milliseconds since the manager started.
    pub uptime_ms: u64,
    /// Registered handlers (system ones included).
    pub handlers: usize,
    /// Handlers running now.
    pub handlers_running: usize,
    /// Outbound calls awaiting replies.
    pub calls_in_flight: usize,
}

/// Answer of `_list_handlers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListHandlersResponse {
    /// Registered handler names, sorted.
    pub handlers: Vec<String>,
}

/// Request of `_wait_for_handler`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitForHandlerRequest {
    /// The handler to wait for.
    pub handler_name: String,
    /// How long to wait, in milliseconds (default 30 000).
    pub timeout_ms: Option<u64>,
}

/// Answer of `_wait_for_handler`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitForHandlerResponse {
    /// The handler waited for.
    pub handler_name: String,
    /// Whether it is registered now.
    pub available: bool,
}

/// Answer of `_register_service`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterServiceResponse {
    /// Whether the peer connected back.
    pub registered: bool,
    /// The answering manager.
    pub instance_id: InstanceId,
}

/// Answer of `_request_shutdown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestShutdownResponse {
    /// Whether the shutdown was started.
    pub acknowledged: bool,
}
