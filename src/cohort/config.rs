//! How a cohort is set up.

use std::time::Duration;

use super::error::CohortError;

/// How workers get their ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RankPolicy {
    /// Every worker names its rank; it must be in `0..size` and not held.
    #[default]
    Explicit,
    /// Workers that name no rank get the lowest free one, in join order.
    JoinOrder,
}

/// What an operation does when a rank is lost (its link broke).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The operation fails at once, naming the lost rank.
    FailFast,
    /// The lost rank reports [`RankError::Lost`](super::RankError::Lost);
    /// the other ranks' results come back as usual.
    #[default]
    BestEffort,
    /// Every worker is told to stop and the operation fails.
    TerminateAll,
}

/// The leader's settings for a cohort.
#[derive(Clone, Debug)]
pub struct CohortConfig {
    /// How many ranks the cohort has.
    pub size: u32,
    /// How ranks are given out.
    pub rank_policy: RankPolicy,
    /// How long [`wait_for_workers`](super::LeaderWorkerCohort::wait_for_workers) waits.
    pub join_timeout: Duration,
    /// What operations do about a lost rank.
    pub failure_policy: FailurePolicy,
    /// Each rank's budget in an operation (all ranks run concurrently).
    pub operation_timeout: Duration,
}

impl CohortConfig {
    /// A cohort of `size` ranks with explicit ranks, best effort, a 60 s
    /// join timeout and a 30 s budget per operation.
    pub fn new(size: u32) -> Self {
        Self {
            size,
            rank_policy: RankPolicy::Explicit,
            join_timeout: Duration::from_secs(60),
            failure_policy: FailurePolicy::BestEffort,
            operation_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the rank policy.
    pub fn rank_policy(mut self, policy: RankPolicy) -> Self {
        self.rank_policy = policy;
        self
    }

    /// Sets the join timeout.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Sets the failure policy.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Sets each rank's budget per operation.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    pub(crate) fn check(&self) -> Result<(), CohortError> {
        if self.size == 0 {
            return Err(CohortError::Config(
                "a cohort needs at least one rank".into(),
            ));
        }
        if self.operation_timeout.is_zero() || self.join_timeout.is_zero() {
            return Err(CohortError::Config("timeouts must be positive".into()));
        }
        Ok(())
    }
}
