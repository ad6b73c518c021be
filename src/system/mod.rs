//! Built-in system handlers (`_`-prefixed), registered on every manager.
//! The receiving side enforces the prefix: user messages cannot reach them
//! and users cannot register such names.

pub(crate) mod calls;
pub(crate) mod cohort;
pub(crate) mod types;

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::handler::PayloadBuf;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Body;
use crate::error::Result;
use crate::handler::{
    Handler, HandlerCall, HandlerContext, HandlerError, HandlerKind, HandlerOutcome,
};
use crate::manager::ManagerInner;
use crate::peer::PeerInfo;
use types::{
    ListHandlersResponse, RegisterServiceResponse, RequestShutdownResponse, WaitForHandlerRequest,
    WaitForHandlerResponse, names,
};

type SystemFn = fn(Arc<ManagerInner>, HandlerContext, PayloadBuf) -> HandlerCall;

struct SystemHandler {
    name: &'static str,
    exempt: bool,
    manager: Weak<ManagerInner>,
    run: SystemFn,
}

impl Handler for SystemHandler {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> HandlerKind {
        HandlerKind::UnaryBytes
    }
    fn call(&self, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
        match self.manager.upgrade() {
            Some(manager) => (self.run)(manager, ctx, payload),
            None => HandlerCall::Ready(Err(HandlerError::handler("manager is gone"))),
        }
    }
    fn exempt_from_limit(&self) -> bool {
        self.exempt
    }
}

/// Registers every system handler on `manager`.
pub(crate) fn register_all(manager: &Arc<ManagerInner>) -> Result<()> {
    let table: [(&'static str, bool, SystemFn); 7] = [
        (names::LIST_HANDLERS, false, list_handlers),
        (names::WAIT_FOR_HANDLER, true, wait_for_handler),
        (names::HEALTH_CHECK, false, health_check),
        (names::DISCOVER, false, discover),
        (names::REGISTER_SERVICE, false, register_service),
        (names::REQUEST_SHUTDOWN, false, request_shutdown),
        (names::STATS, false, stats),
    ];
    for (name, exempt, run) in table {
        let handler = SystemHandler {
            name,
            exempt,
            manager: Arc::downgrade(manager),
            run,
        };
        manager.registry.register_system(name, Arc::new(handler))?;
    }
    Ok(())
}

/// Decodes a JSON request; an empty payload reads as JSON `null` (so `()` needs no bytes).
fn request<T: DeserializeOwned>(payload: &[u8]) -> Result<T, HandlerError> {
    let payload = if payload.is_empty() {
        b"null".as_slice()
    } else {
        payload
    };
    serde_json::from_slice(payload).map_err(HandlerError::codec)
}

fn respond<T: Serialize>(value: &T) -> HandlerOutcome {
    serde_json::to_vec(value)
        .map(|v| Body::Bytes(v.into()))
        .map_err(HandlerError::codec)
}

fn ready<T: Serialize>(value: Result<T, HandlerError>) -> HandlerCall {
    HandlerCall::Ready(value.and_then(|v| respond(&v)))
}

fn list_handlers(m: Arc<ManagerInner>, _: HandlerContext, _: PayloadBuf) -> HandlerCall {
    ready(Ok(ListHandlersResponse {
        handlers: m.registry.names(),
    }))
}

fn health_check(m: Arc<ManagerInner>, _: HandlerContext, _: PayloadBuf) -> HandlerCall {
    ready(Ok(m.health()))
}

fn discover(m: Arc<ManagerInner>, _: HandlerContext, _: PayloadBuf) -> HandlerCall {
    ready(Ok(m.client.peer_info()))
}

fn stats(m: Arc<ManagerInner>, _: HandlerContext, _: PayloadBuf) -> HandlerCall {
    ready(Ok(m.stats()))
}

fn wait_for_handler(m: Arc<ManagerInner>, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
    let req: WaitForHandlerRequest = match request(&payload) {
        Ok(req) => req,
        Err(e) => return HandlerCall::Ready(Err(e)),
    };
    HandlerCall::Pending(Box::pin(async move {
        let wait = Duration::from_millis(req.timeout_ms.unwrap_or(30_000));
        let available = tokio::select! {
            found = m.registry.wait_for(&req.handler_name, wait) => found,
            () = ctx.cancel.cancelled() => m.registry.contains(&req.handler_name),
        };
        respond(&WaitForHandlerResponse {
            handler_name: req.handler_name,
            available,
        })
    }))
}

fn register_service(m: Arc<ManagerInner>, ctx: HandlerContext, payload: PayloadBuf) -> HandlerCall {
    let info: PeerInfo = match request(&payload) {
        Ok(info) => info,
        Err(e) => return HandlerCall::Ready(Err(e)),
    };
    if info.instance_id != ctx.sender_id {
        return HandlerCall::Ready(Err(HandlerError::handler(format!(
            "sender {} may only register itself, not {}",
            ctx.sender_id, info.instance_id
        ))));
    }
    HandlerCall::Pending(Box::pin(async move {
        m.client
            .connect_to_peer(info)
            .await
            .map_err(|e| HandlerError::handler(format!("connecting back failed: {e}")))?;
        respond(&RegisterServiceResponse {
            registered: true,
            instance_id: m.client.instance_id(),
        })
    }))
}

fn request_shutdown(m: Arc<ManagerInner>, ctx: HandlerContext, _: PayloadBuf) -> HandlerCall {
    // Unset: trusted callers only (shm, in-process, authenticated TCP).
    let acknowledged = m.allow_remote_shutdown.unwrap_or(ctx.caller_trusted);
    if !acknowledged {
        tracing::warn!(sender = %ctx.sender_id, trusted = ctx.caller_trusted, "remote shutdown refused");
    }
    if acknowledged {
        // Detached: shutdown drains in-flight handlers, this one included, so
        // the acknowledgement goes out before the links close.
        tokio::spawn(async move { m.shutdown().await });
    }
    ready(Ok(RequestShutdownResponse { acknowledged }))
}
