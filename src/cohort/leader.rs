//! The leader's side: the cohort, its join handlers, its liveness watcher,
//! its events and its shutdown.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Rank;
use super::config::{CohortConfig, FailurePolicy};
use super::error::{CohortError, RankError};
use super::members::{CohortEvent, Holder, Members};
use crate::client::NetworkClient;
use crate::handler::HandlerError;
use crate::handler::registry::HandlerRegistry;
use crate::ids::InstanceId;
use crate::manager::ActiveMessageManager;
use crate::system::cohort::{
    CohortAck, CohortHandler, JoinCohortRequest, JoinCohortResponse, LeaveCohortRequest, names,
};

/// The leader of a cohort of `size` ranked workers. One per manager at a
/// time; dropping it stops taking joins.
pub struct LeaderWorkerCohort {
    pub(super) inner: Arc<Leader>,
}

pub(super) struct Leader {
    pub(super) config: CohortConfig,
    pub(super) client: Arc<NetworkClient>,
    pub(super) members: Members,
    /// Failure policy and per-operation budget, adjustable between operations.
    pub(super) tuning: parking_lot::Mutex<(FailurePolicy, Duration)>,
    registry: Arc<HandlerRegistry>,
    stop: CancellationToken,
}

impl std::fmt::Debug for LeaderWorkerCohort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderWorkerCohort")
            .field("config", &self.inner.config)
            .field("workers", &self.inner.members.holders())
            .finish()
    }
}

/// What [`LeaderWorkerCohort::shutdown`] found.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Ranks whose worker acknowledged the stop.
    pub acknowledged: Vec<Rank>,
    /// Ranks whose worker did not, and why.
    pub unanswered: Vec<(Rank, RankError)>,
}

impl LeaderWorkerCohort {
    /// Starts leading a cohort on `manager`: workers can join from now on.
    /// Fails if the configuration is invalid or `manager` already leads one.
    pub async fn new(
        manager: &ActiveMessageManager,
        config: CohortConfig,
    ) -> Result<Self, CohortError> {
        config.check()?;
        let inner = Arc::new(Leader {
            members: Members::new(config.size, config.rank_policy),
            tuning: parking_lot::Mutex::new((config.failure_policy, config.operation_timeout)),
            config,
            client: manager.client(),
            registry: Arc::clone(manager.registry()),
            stop: CancellationToken::new(),
        });
        register(&inner)?;
        tokio::spawn(watch(Arc::downgrade(&inner), inner.stop.clone()));
        Ok(Self { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &CohortConfig {
        &self.inner.config
    }

    /// Changes the failure policy for the operations started from now on.
    pub fn set_failure_policy(&self, policy: FailurePolicy) {
        self.inner.tuning.lock().0 = policy;
    }

    /// Changes each rank's budget for the operations started from now on.
    pub fn set_operation_timeout(&self, timeout: Duration) {
        self.inner.tuning.lock().1 = timeout;
    }

    /// How many ranks the cohort has.
    pub fn size(&self) -> u32 {
        self.inner.config.size
    }

    /// The instance holding each rank now (`None`: vacant or lost), by rank.
    pub fn workers(&self) -> Vec<Option<InstanceId>> {
        self.inner.members.holders()
    }

    /// Waits until every rank is held, at most the join timeout; fails with
    /// the ranks still missing.
    pub async fn wait_for_workers(&self) -> Result<(), CohortError> {
        let waited = self.inner.config.join_timeout;
        let deadline = tokio::time::Instant::now() + waited;
        loop {
            let changed = self.inner.members.changed();
            tokio::pin!(changed);
            // Enabled before the check, so a join in between is not missed.
            changed.as_mut().enable();
            let missing = self.inner.members.vacant();
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let missing = self.inner.members.vacant();
                if missing.is_empty() {
                    return Ok(());
                }
                return Err(CohortError::MissingRanks { missing, waited });
            }
        }
    }

    /// Membership events from now on.
    pub fn events(&self) -> CohortEvents {
        CohortEvents(self.inner.members.subscribe())
    }

    /// Tells every worker to stop and waits, at most `deadline`, for their
    /// acknowledgements; the ranks that did not answer are reported.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.stop_all(deadline).await
    }
}

impl Drop for LeaderWorkerCohort {
    fn drop(&mut self) {
        self.inner.stop.cancel();
        self.inner.registry.deregister_system(names::JOIN_COHORT);
        self.inner.registry.deregister_system(names::LEAVE_COHORT);
    }
}

impl Leader {
    /// `_join_cohort`: checks the rank, connects back to the worker so the
    /// leader can call it, then gives it the rank.
    async fn admit(
        &self,
        sender: InstanceId,
        req: JoinCohortRequest,
    ) -> Result<JoinCohortResponse, String> {
        if req.worker.instance_id != sender {
            return Err(format!("sender {sender} may only join as itself"));
        }
        let live = |peer| self.client.link(peer).is_ok();
        self.members.choose(sender, req.rank, &live)?;
        self.client
            .connect_to_peer(req.worker)
            .await
            .map_err(|e| format!("the leader cannot reach the worker: {e}"))?;
        let rank = self.members.join(sender, req.rank, &live)?;
        Ok(JoinCohortResponse {
            rank,
            size: self.config.size,
            leader: self.client.instance_id(),
        })
    }

    pub(super) async fn stop_all(&self, deadline: Duration) -> ShutdownReport {
        let targets = self.members.targets();
        let stops = (0..).zip(targets).map(|(rank, holder)| async move {
            let outcome = match holder {
                Holder::Active(instance) => {
                    let outcome = stop_worker(&self.client, instance, deadline).await;
                    if outcome.is_ok() {
                        self.members.depart(instance, false);
                    }
                    outcome
                }
                Holder::Lost(_) => Err(RankError::Lost),
                Holder::Vacant => Err(RankError::Vacant),
            };
            (rank, outcome)
        });
        let mut report = ShutdownReport::default();
        for (rank, outcome) in join_all(stops).await {
            match outcome {
                Ok(()) => report.acknowledged.push(rank),
                Err(RankError::Vacant) => {}
                Err(err) => report.unanswered.push((rank, err)),
            }
        }
        report
    }
}

async fn stop_worker(
    client: &Arc<NetworkClient>,
    worker: InstanceId,
    deadline: Duration,
) -> Result<(), RankError> {
    let raw = client
        .system_message(names::COHORT_STOP)
        .timeout(deadline)
        .expect_response::<()>()
        .send(worker)
        .await?
        .await_response_raw()
        .await?;
    let ack: CohortAck =
        serde_json::from_slice(&raw).map_err(|e| RankError::Call(crate::Error::codec(e)))?;
    if ack.acknowledged {
        Ok(())
    } else {
        Err(RankError::Refused("the worker did not stop".into()))
    }
}

fn register(leader: &Arc<Leader>) -> Result<(), CohortError> {
    let weak = Arc::downgrade(leader);
    let join = CohortHandler::new(
        names::JOIN_COHORT,
        Arc::new(move |ctx, req: JoinCohortRequest| {
            let leader = weak.upgrade();
            Box::pin(async move {
                let leader = leader.ok_or_else(|| HandlerError::handler("the cohort is gone"))?;
                leader
                    .admit(ctx.sender_id, req)
                    .await
                    .map_err(HandlerError::handler)
            })
        }),
    );
    let weak = Arc::downgrade(leader);
    let leave = CohortHandler::new(
        names::LEAVE_COHORT,
        Arc::new(move |ctx, _: LeaveCohortRequest| {
            let acknowledged = weak
                .upgrade()
                .and_then(|l| l.members.depart(ctx.sender_id, false))
                .is_some();
            Box::pin(async move { Ok(CohortAck { acknowledged }) })
        }),
    );
    leader.registry.register_system(names::JOIN_COHORT, join)?;
    if let Err(err) = leader.registry.register_system(names::LEAVE_COHORT, leave) {
        leader.registry.deregister_system(names::JOIN_COHORT);
        return Err(err.into());
    }
    Ok(())
}

/// Marks ranks lost as their links break (the transport reports it: on
/// shared memory the rendezvous socket's EOF, at once).
async fn watch(leader: Weak<Leader>, stop: CancellationToken) {
    let Some(mut lost) = leader.upgrade().map(|l| l.client.pending.subscribe_lost()) else {
        return;
    };
    loop {
        let notice = tokio::select! {
            () = stop.cancelled() => return,
            notice = lost.recv() => notice,
        };
        let Some(leader) = leader.upgrade() else {
            return;
        };
        match notice {
            Ok(peer) => {
                leader.members.depart(peer, true);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Notices were missed: ask every link directly.
                for instance in leader.members.holders().into_iter().flatten() {
                    if leader.client.link(instance).is_err() {
                        leader.members.depart(instance, true);
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Membership events of a cohort ([`LeaderWorkerCohort::events`]).
#[derive(Debug)]
pub struct CohortEvents(broadcast::Receiver<CohortEvent>);

impl CohortEvents {
    /// The next event; `None` once the cohort is gone. A listener that fell
    /// behind gets [`CohortEvent::Lagged`] rather than silently missing events.
    pub async fn next(&mut self) -> Option<CohortEvent> {
        match self.0.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(CohortEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The events as a `Stream`.
    pub fn into_stream(self) -> impl futures::Stream<Item = CohortEvent> {
        futures::stream::unfold(self, |mut events| async move {
            events.next().await.map(|e| (e, events))
        })
    }
}
