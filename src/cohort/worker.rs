//! The worker's side: joining a leader knowing only its address, and the
//! membership handle that reports how the membership ended.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::Rank;
use super::error::CohortError;
use crate::client::NetworkClient;
use crate::error::Error;
use crate::handler::registry::HandlerRegistry;
use crate::ids::InstanceId;
use crate::manager::ActiveMessageManager;
use crate::system::cohort::{
    CohortAck, CohortHandler, JoinCohortRequest, JoinCohortResponse, LeaveCohortRequest, names,
};

/// How a membership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipEnd {
    /// The leader's link broke (its process is gone).
    LeaderLost,
    /// The leader told this worker to stop (cohort shutdown).
    StopRequested,
    /// This worker left.
    Left,
}

/// A worker's place in a cohort. Dropping it leaves the cohort.
pub struct CohortMembership {
    rank: Rank,
    size: u32,
    leader: InstanceId,
    client: Arc<NetworkClient>,
    registry: Arc<HandlerRegistry>,
    end: Arc<watch::Sender<Option<MembershipEnd>>>,
    stop: CancellationToken,
}

/// Joins the cohort led by the manager at `leader_address` (`tcp://...` or
/// `shm://...`), asking for `rank` (or, with `None`, the next rank in join
/// order). The leader connects back, so it can call this worker's handlers
/// from then on. A refused rank (taken, out of range) fails with
/// [`CohortError::JoinRefused`] saying why.
pub async fn join_cohort(
    manager: &ActiveMessageManager,
    leader_address: &str,
    rank: Option<Rank>,
) -> Result<CohortMembership, CohortError> {
    let client = manager.client();
    // Subscribed first: a leader lost during the join is not missed.
    let lost = client.pending.subscribe_lost();
    let end = Arc::new(watch::Sender::new(None));
    let registry = Arc::clone(manager.registry());
    registry.register_system(names::COHORT_STOP, stop_handler(&end))?;
    match join(&client, leader_address, rank).await {
        Ok(joined) => {
            let stop = CancellationToken::new();
            tokio::spawn(watch_leader(
                joined.leader,
                lost,
                Arc::clone(&end),
                stop.clone(),
            ));
            tracing::info!(rank = joined.rank, leader = %joined.leader, "joined the cohort");
            Ok(CohortMembership {
                rank: joined.rank,
                size: joined.size,
                leader: joined.leader,
                client,
                registry,
                end,
                stop,
            })
        }
        Err(err) => {
            registry.deregister_system(names::COHORT_STOP);
            Err(err)
        }
    }
}

async fn join(
    client: &Arc<NetworkClient>,
    leader_address: &str,
    rank: Option<Rank>,
) -> Result<JoinCohortResponse, CohortError> {
    let leader = client.connect_to_address(leader_address).await?;
    let request = JoinCohortRequest {
        worker: client.peer_info(),
        rank,
    };
    let body = serde_json::to_vec(&request).map_err(Error::codec)?;
    let raw = async {
        client
            .system_message(names::JOIN_COHORT)
            .raw_payload(body)
            .expect_response::<()>()
            .send(leader.instance_id)
            .await?
            .await_response_raw()
            .await
    };
    match raw.await {
        Ok(raw) => Ok(serde_json::from_slice(&raw).map_err(Error::codec)?),
        Err(Error::Handler(why)) => Err(CohortError::JoinRefused(why)),
        Err(Error::NoSuchHandler(_)) => Err(CohortError::JoinRefused(format!(
            "{leader_address} leads no cohort"
        ))),
        Err(err) => Err(err.into()),
    }
}

fn stop_handler(
    end: &Arc<watch::Sender<Option<MembershipEnd>>>,
) -> Arc<CohortHandler<(), CohortAck>> {
    let end = Arc::clone(end);
    CohortHandler::new(
        names::COHORT_STOP,
        Arc::new(move |_, ()| {
            finish(&end, MembershipEnd::StopRequested);
            Box::pin(async { Ok(CohortAck { acknowledged: true }) })
        }),
    )
}

/// Records how the membership ended, unless it already had.
fn finish(end: &watch::Sender<Option<MembershipEnd>>, how: MembershipEnd) {
    end.send_if_modified(|now| {
        let first = now.is_none();
        if first {
            *now = Some(how);
        }
        first
    });
}

/// Ends the membership when the leader's link breaks.
async fn watch_leader(
    leader: InstanceId,
    mut lost: broadcast::Receiver<InstanceId>,
    end: Arc<watch::Sender<Option<MembershipEnd>>>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            () = stop.cancelled() => return,
            notice = lost.recv() => notice,
        };
        let gone = match notice {
            Ok(peer) => peer == leader,
            // Notices were missed: the leader's own loss may be one of them.
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if gone {
            tracing::warn!(%leader, "the cohort's leader was lost");
            finish(&end, MembershipEnd::LeaderLost);
            return;
        }
    }
}

impl std::fmt::Debug for CohortMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CohortMembership")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("leader", &self.leader)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl CohortMembership {
    /// This worker's rank.
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// How many ranks the cohort has.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The leader's instance id.
    pub fn leader(&self) -> InstanceId {
        self.leader
    }

    /// How the membership ended, if it has.
    pub fn status(&self) -> Option<MembershipEnd> {
        *self.end.borrow()
    }

    /// Waits until the membership ends (leader lost, stop requested, left).
    pub async fn ended(&self) -> MembershipEnd {
        let mut rx = self.end.subscribe();
        loop {
            if let Some(how) = *rx.borrow_and_update() {
                return how;
            }
            // The sender lives in `self`: it cannot close while we wait.
            if rx.changed().await.is_err() {
                return MembershipEnd::Left;
            }
        }
    }

    /// Leaves the cohort, telling the leader.
    pub async fn leave(self) -> Result<(), CohortError> {
        if self.status().is_some() {
            return Ok(());
        }
        let body =
            serde_json::to_vec(&LeaveCohortRequest { rank: self.rank }).map_err(Error::codec)?;
        finish(&self.end, MembershipEnd::Left);
        self.client
            .system_message(names::LEAVE_COHORT)
            .raw_payload(body)
            .expect_response::<()>()
            .send(self.leader)
            .await?
            .await_response_raw()
            .await?;
        Ok(())
    }
}

impl Drop for CohortMembership {
    fn drop(&mut self) {
        self.stop.cancel();
        self.registry.deregister_system(names::COHORT_STOP);
        if self.status().is_some() {
            return;
        }
        finish(&self.end, MembershipEnd::Left);
        // Best effort: tell the leader, without blocking the drop.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = Arc::clone(&self.client);
        let (leader, rank) = (self.leader, self.rank);
        runtime.spawn(async move {
            let body = serde_json::to_vec(&LeaveCohortRequest { rank }).unwrap_or_default();
            let sent = client
                .system_message(names::LEAVE_COHORT)
                .raw_payload(body)
                .target_instance(leader)
                .execute()
                .await;
            if let Err(err) = sent {
                tracing::debug!(%err, "leaving the cohort: the leader was not told");
            }
        });
    }
}
