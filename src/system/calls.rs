//! Client helpers that call a peer's system handlers.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{
    HealthCheckResponse, ListHandlersResponse, RegisterServiceResponse, RequestShutdownResponse,
    WaitForHandlerRequest, WaitForHandlerResponse, names,
};
use crate::client::NetworkClient;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::peer::PeerInfo;
use crate::stats::StatsSnapshot;

/// Budget added to a remote wait so the reply has time to travel back.
const REPLY_MARGIN: Duration = Duration::from_secs(5);

impl NetworkClient {
    async fn system_call<Req: Serialize, Resp: DeserializeOwned>(
        self: &Arc<Self>,
        peer: InstanceId,
        name: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let body = serde_json::to_vec(request).map_err(Error::codec)?;
        let raw = self
            .system_message(name)
            .raw_payload(body)
            .timeout(timeout)
            .expect_response::<()>()
            .send(peer)
            .await?
            .await_response_raw()
            .await?;
        serde_json::from_slice(&raw).map_err(Error::codec)
    }

    /// Asks `peer` whether it is alive and how loaded it is.
    pub async fn health_check(self: &Arc<Self>, peer: InstanceId) -> Result<HealthCheckResponse> {
        self.system_call(peer, names::HEALTH_CHECK, &(), self.default_timeout())
            .await
    }

    /// The handlers registered on `peer`.
    pub async fn list_handlers(self: &Arc<Self>, peer: InstanceId) -> Result<Vec<String>> {
        let resp: ListHandlersResponse = self
            .system_call(peer, names::LIST_HANDLERS, &(), self.default_timeout())
            .await?;
        Ok(resp.handlers)
    }

    /// Waits until `peer` has a handler `name` (at most `timeout`, default 30 s).
    /// Returns whether it appeared; the peer is woken by the registration itself.
    pub async fn await_handler(
        self: &Arc<Self>,
        peer: InstanceId,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let wait = timeout.unwrap_or(Duration::from_secs(30));
        let request = WaitForHandlerRequest {
            handler_name: name.to_owned(),
            timeout_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        };
        let resp: WaitForHandlerResponse = self
            .system_call(peer, names::WAIT_FOR_HANDLER, &request, wait + REPLY_MARGIN)
            .await?;
        Ok(resp.available)
    }

    /// The `PeerInfo` the peer advertises.
    pub async fn discover(self: &Arc<Self>, peer: InstanceId) -> Result<PeerInfo> {
        self.system_call(peer, names::DISCOVER, &(), self.default_timeout())
            .await
    }

    /// Asks `peer` to connect back to this manager, so it can call us too.
    pub async fn ensure_bidirectional_connection(self: &Arc<Self>, peer: InstanceId) -> Result<()> {
        let resp: RegisterServiceResponse = self
            .system_call(
                peer,
                names::REGISTER_SERVICE,
                &self.peer_info(),
                self.default_timeout(),
            )
            .await?;
        if resp.registered {
            Ok(())
        } else {
            Err(Error::Refused(format!("peer {peer} did not connect back")))
        }
    }

    /// Asks `peer` to shut down gracefully.
    pub async fn request_shutdown(self: &Arc<Self>, peer: InstanceId) -> Result<()> {
        let resp: RequestShutdownResponse = self
            .system_call(peer, names::REQUEST_SHUTDOWN, &(), self.default_timeout())
            .await?;
        if resp.acknowledged {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "peer {peer} does not accept remote shutdown"
            )))
        }
    }

    /// The counters of `peer`.
    pub async fn remote_stats(self: &Arc<Self>, peer: InstanceId) -> Result<StatsSnapshot> {
        self.system_call(peer, names::STATS, &(), self.default_timeout())
            .await
    }
}
