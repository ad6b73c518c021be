//! Operations across ranks. Every rank's call runs at once, each with its
//! own deadline; outcomes come back in rank order, one per rank, and the
//! failure policy decides what a lost rank does to the operation.

mod stream;

pub use stream::RankItems;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use super::Rank;
use super::config::FailurePolicy;
use super::error::{CohortError, RankError};
use super::leader::LeaderWorkerCohort;
use super::members::Holder;
use crate::client::NetworkClient;
use crate::codec::{Decode, Payload};
use crate::error::Error;
use crate::ids::InstanceId;

/// Budget of the stop messages `TerminateAll` sends.
const TERMINATE_DEADLINE: Duration = Duration::from_secs(5);

/// One rank as [`LeaderWorkerCohort::par_map`] hands it to its closure.
#[derive(Clone, Debug)]
pub struct RankTarget {
    /// The rank.
    pub rank: Rank,
    /// The worker holding it.
    pub instance: InstanceId,
    /// The leader's client, to call the worker with.
    pub client: Arc<NetworkClient>,
    /// The cohort's per-operation budget.
    pub timeout: Duration,
}

/// Outcomes, one per rank asked, in the order asked.
type Outcomes<R> = Vec<Result<R, RankError>>;

impl LeaderWorkerCohort {
    /// Sends `payload` to `handler` on every rank, fire-and-forget: each
    /// outcome says whether that rank's link took the message.
    pub async fn broadcast<T: Payload>(
        &self,
        handler: &str,
        payload: &T,
    ) -> Result<Outcomes<()>, CohortError> {
        self.on_all(None, |t| async move {
            t.client
                .active_message(handler)?
                .payload(payload)?
                .timeout(t.timeout)
                .target_instance(t.instance)
                .execute()
                .await
        })
        .await
    }

    /// Sends `payload` to `handler` on every rank and waits until each
    /// rank's handler has run it successfully.
    pub async fn broadcast_confirmed<T: Payload>(
        &self,
        handler: &str,
        payload: &T,
    ) -> Result<Outcomes<()>, CohortError> {
        self.on_all(None, |t| async move {
            let msg = t.client.active_message(handler)?.payload(payload)?;
            msg.timeout(t.timeout).send(t.instance).await.map(|_| ())
        })
        .await
    }

    /// Calls `handler` with `payload` on every rank; its typed responses by rank.
    pub async fn gather<T: Payload, R: Decode>(
        &self,
        handler: &str,
        payload: &T,
    ) -> Result<Outcomes<R>, CohortError> {
        self.on_all(None, |t| request(t, handler, payload)).await
    }

    /// As [`gather`](Self::gather), on `target_ranks` only; the outcomes
    /// follow the order of `target_ranks`.
    pub async fn gather_from<T: Payload, R: Decode>(
        &self,
        handler: &str,
        payload: &T,
        target_ranks: &[Rank],
    ) -> Result<Outcomes<R>, CohortError> {
        self.on_ranks(target_ranks, None, |t| request(t, handler, payload))
            .await
    }

    /// As [`gather`](Self::gather), on the one rank `target_rank`.
    pub async fn gather_rank<T: Payload, R: Decode>(
        &self,
        handler: &str,
        payload: &T,
        target_rank: Rank,
    ) -> Result<Result<R, RankError>, CohortError> {
        let mut one = self.gather_from(handler, payload, &[target_rank]).await?;
        Ok(one.pop().unwrap_or(Err(RankError::Cancelled)))
    }

    /// Calls `handler` on every rank with the payload `payload_of(rank)`.
    pub async fn gather_with<T, R, F>(
        &self,
        handler: &str,
        payload_of: F,
    ) -> Result<Outcomes<R>, CohortError>
    where
        T: Payload,
        R: Decode,
        F: Fn(Rank) -> T,
    {
        let payload_of = &payload_of;
        self.on_all(None, |t| async move {
            let payload = payload_of(t.rank);
            request(t, handler, &payload).await
        })
        .await
    }

    /// Runs `f` for every rank at once; its results by rank.
    pub async fn par_map<R, F, Fut>(&self, f: F) -> Result<Outcomes<R>, CohortError>
    where
        F: Fn(RankTarget) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        self.on_all(None, f).await
    }

    /// Calls `handler` on every rank and returns as soon as `k` ranks
    /// answered successfully; the calls still running are cancelled and
    /// reported as [`RankError::Cancelled`].
    pub async fn gather_first_k<T: Payload, R: Decode>(
        &self,
        handler: &str,
        payload: &T,
        k: usize,
    ) -> Result<Outcomes<R>, CohortError> {
        self.on_all(Some(k), |t| request(t, handler, payload)).await
    }

    /// Every rank runs `handler`; only `reply_rank`'s response is awaited.
    /// At `reply_rank` the outcome holds the response; at the others `None`
    /// once their handler has run (confirmed delivery).
    pub async fn gather_one_reply<T: Payload, R: Decode>(
        &self,
        handler: &str,
        payload: &T,
        reply_rank: Rank,
    ) -> Result<Outcomes<Option<R>>, CohortError> {
        self.check_rank(reply_rank)?;
        self.on_all(None, |t| async move {
            if t.rank == reply_rank {
                request(t, handler, payload).await.map(Some)
            } else {
                let msg = t.client.active_message(handler)?.payload(payload)?;
                msg.timeout(t.timeout).send(t.instance).await.map(|_| None)
            }
        })
        .await
    }

    /// Waits (at most the operation timeout) until every rank has `name`;
    /// whether it appeared, by rank.
    pub async fn await_handler_on_all_workers(
        &self,
        name: &str,
    ) -> Result<Outcomes<bool>, CohortError> {
        self.on_all(None, |t| async move {
            t.client
                .await_handler(t.instance, name, Some(t.timeout))
                .await
        })
        .await
    }

    fn check_rank(&self, rank: Rank) -> Result<(), CohortError> {
        let size = self.size();
        if rank >= size {
            return Err(CohortError::NoSuchRank { rank, size });
        }
        Ok(())
    }

    async fn on_all<R, F, Fut>(
        &self,
        need: Option<usize>,
        call: F,
    ) -> Result<Outcomes<R>, CohortError>
    where
        F: Fn(RankTarget) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let ranks: Vec<Rank> = (0..self.size()).collect();
        self.on_ranks(&ranks, need, call).await
    }

    /// The engine: one call per rank in `ranks`, all at once; stops early
    /// on a lost rank (`FailFast`, `TerminateAll`) or once `need` answered.
    async fn on_ranks<R, F, Fut>(
        &self,
        ranks: &[Rank],
        need: Option<usize>,
        call: F,
    ) -> Result<Outcomes<R>, CohortError>
    where
        F: Fn(RankTarget) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let targets = self.inner.members.targets();
        let mut outcomes: Vec<Option<Result<R, RankError>>> = ranks.iter().map(|_| None).collect();
        let running = FuturesUnordered::new();
        for (slot, &rank) in ranks.iter().enumerate() {
            self.check_rank(rank)?;
            match targets[rank as usize] {
                Holder::Active(instance) => {
                    let target = self.target(rank, instance);
                    let call = &call;
                    running.push(async move { (slot, rank, instance, call(target).await) });
                }
                Holder::Lost(instance) => {
                    self.on_lost(rank, instance).await?;
                    outcomes[slot] = Some(Err(RankError::Lost));
                }
                Holder::Vacant => outcomes[slot] = Some(Err(RankError::Vacant)),
            }
        }
        self.collect(running, &mut outcomes, need).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(RankError::Cancelled)))
            .collect())
    }

    async fn collect<R, S>(
        &self,
        mut running: S,
        outcomes: &mut [Option<Result<R, RankError>>],
        need: Option<usize>,
    ) -> Result<(), CohortError>
    where
        S: futures::Stream<Item = (usize, Rank, InstanceId, Result<R, Error>)> + Unpin,
    {
        let mut answered = outcomes.iter().filter(|o| matches!(o, Some(Ok(_)))).count();
        if need.is_some_and(|k| answered >= k) {
            return Ok(());
        }
        while let Some((slot, rank, instance, result)) = running.next().await {
            let outcome = result.map_err(RankError::from);
            if matches!(outcome, Err(RankError::Lost)) {
                // Fenced out at once: later operations do not wait on it.
                self.inner.members.depart(instance, true);
                self.on_lost(rank, instance).await?;
            }
            answered += usize::from(outcome.is_ok());
            outcomes[slot] = Some(outcome);
            if need.is_some_and(|k| answered >= k) {
                break;
            }
        }
        Ok(())
    }

    /// Applies the failure policy to a lost rank.
    async fn on_lost(&self, rank: Rank, instance: InstanceId) -> Result<(), CohortError> {
        let policy = self.inner.tuning.lock().0;
        match policy {
            FailurePolicy::BestEffort => Ok(()),
            FailurePolicy::FailFast => Err(CohortError::RankLost { rank, instance }),
            FailurePolicy::TerminateAll => {
                tracing::warn!(rank, %instance, "rank lost: terminating the cohort");
                let report = self.inner.stop_all(TERMINATE_DEADLINE).await;
                if !report.unanswered.is_empty() {
                    tracing::warn!(unanswered = ?report.unanswered, "workers did not acknowledge the stop");
                }
                Err(CohortError::Terminated { rank })
            }
        }
    }

    fn target(&self, rank: Rank, instance: InstanceId) -> RankTarget {
        RankTarget {
            rank,
            instance,
            client: Arc::clone(&self.inner.client),
            timeout: self.inner.tuning.lock().1,
        }
    }
}

async fn request<T: Payload, R: Decode>(
    t: RankTarget,
    handler: &str,
    payload: &T,
) -> Result<R, Error> {
    t.client
        .active_message(handler)?
        .payload(payload)?
        .timeout(t.timeout)
        .expect_response::<R>()
        .send(t.instance)
        .await?
        .await_response()
        .await
}
