//! The cohort system handlers: `_join_cohort` and `_leave_cohort` on a
//! leader, `_cohort_stop` on a worker that joined one. They are registered
//! while a cohort (or a membership) lives, and their bodies travel as JSON
//! like every system call's.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{request, respond};
use crate::handler::{Handler, HandlerCall, HandlerContext, HandlerError, HandlerKind};
use crate::ids::InstanceId;
use crate::peer::PeerInfo;

/// System handler names of cohorts.
pub(crate) mod names {
    /// A worker asks the leader for a rank.
    pub(crate) const JOIN_COHORT: &str = "_join_cohort";
    /// A worker leaves the cohort.
    pub(crate) const LEAVE_COHORT: &str = "_leave_cohort";
    /// The leader tells a worker to stop.
    pub(crate) const COHORT_STOP: &str = "_cohort_stop";
}

/// Request of `_join_cohort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JoinCohortRequest {
    /// How the leader reaches the worker (it connects back to call it).
    pub worker: PeerInfo,
    /// The rank asked for; `None` lets the leader assign one in join order.
    pub rank: Option<u32>,
}

/// Answer of `_join_cohort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JoinCohortResponse {
    /// The worker's rank.
    pub rank: u32,
    /// How many ranks the cohort has.
    pub size: u32,
    /// The leader.
    pub leader: InstanceId,
}

/// Request of `_leave_cohort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaveCohortRequest {
    /// The rank being given up.
    pub rank: u32,
}

/// Answer of `_leave_cohort` and `_cohort_stop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CohortAck {
    /// Whether the request was carried out.
    pub acknowledged: bool,
}

/// What a cohort system handler does with one decoded request.
pub(crate) type CohortFn<Req, Resp> =
    dyn Fn(HandlerContext, Req) -> BoxFuture<'static, Result<Resp, HandlerError>> + Send + Sync;

/// A JSON system handler around a closure.
pub(crate) struct CohortHandler<Req, Resp> {
    name: &'static str,
    run: Arc<CohortFn<Req, Resp>>,
}

impl<Req, Resp> CohortHandler<Req, Resp> {
    /// A handler named `name` that runs `run`.
    pub(crate) fn new(name: &'static str, run: Arc<CohortFn<Req, Resp>>) -> Arc<Self> {
        Arc::new(Self { name, run })
    }
}

impl<Req, Resp> Handler for CohortHandler<Req, Resp>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> HandlerKind {
        HandlerKind::UnaryBytes
    }
    fn call(&self, ctx: HandlerContext, payload: crate::handler::PayloadBuf) -> HandlerCall {
        let req: Req = match request(&payload) {
            Ok(req) => req,
            Err(e) => return HandlerCall::Ready(Err(e)),
        };
        let fut = (self.run)(ctx, req);
        HandlerCall::Pending(Box::pin(async move { respond(&fut.await?) }))
    }
    // Membership traffic must pass even when user handlers fill the limit.
    fn exempt_from_limit(&self) -> bool {
        true
    }
}
