//! What can go wrong at one rank, and for a cohort as a whole.

use std::time::Duration;

use super::Rank;
use crate::error::Error;
use crate::ids::InstanceId;

/// The outcome of an operation at one rank, when it is not a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RankError {
    /// The rank's handler ran and returned an error (its own text).
    #[error("handler failed: {0}")]
    Handler(String),
    /// The rank's link broke (process gone), or it had been lost before.
    #[error("rank lost")]
    Lost,
    /// The rank was alive but did not answer within the budget.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The rank has no handler of that name.
    #[error("no handler named {0:?} at this rank")]
    NoSuchHandler(String),
    /// The rank refused the call.
    #[error("refused: {0}")]
    Refused(String),
    /// No worker holds this rank (it never joined, or it left).
    #[error("no worker holds this rank")]
    Vacant,
    /// The operation finished without this rank's answer (enough other
    /// ranks answered, or the operation failed elsewhere).
    #[error("cancelled: the operation finished without this rank")]
    Cancelled,
    /// Any other failure of the call.
    #[error(transparent)]
    Call(Error),
}

impl From<Error> for RankError {
    fn from(err: Error) -> Self {
        match err {
            Error::Handler(msg) => Self::Handler(msg),
            Error::PeerLost(_) | Error::UnknownPeer(_) => Self::Lost,
            Error::Timeout(t) => Self::Timeout(t),
            Error::NoSuchHandler(name) => Self::NoSuchHandler(name),
            Error::Refused(msg) => Self::Refused(msg),
            other => Self::Call(other),
        }
    }
}

/// A cohort operation or setup that failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CohortError {
    /// An invalid configuration.
    #[error("invalid cohort configuration: {0}")]
    Config(String),
    /// Not every rank joined within the join timeout.
    #[error("ranks {missing:?} did not join within {waited:?}")]
    MissingRanks {
        /// The ranks still vacant.
        missing: Vec<Rank>,
        /// How long was waited.
        waited: Duration,
    },
    /// A rank was lost and the policy is `FailFast`.
    #[error("rank {rank} (instance {instance}) was lost")]
    RankLost {
        /// The lost rank.
        rank: Rank,
        /// The instance that held it.
        instance: InstanceId,
    },
    /// A rank was lost and the policy is `TerminateAll`: every worker was
    /// told to stop.
    #[error("rank {rank} was lost; the cohort was terminated")]
    Terminated {
        /// The lost rank.
        rank: Rank,
    },
    /// A rank outside `0..size` was named.
    #[error("rank {rank} is out of range 0..{size}")]
    NoSuchRank {
        /// The rank named.
        rank: Rank,
        /// The cohort's size.
        size: u32,
    },
    /// The leader refused the join (its text says why).
    #[error("the leader refused the join: {0}")]
    JoinRefused(String),
    /// A call the cohort needed failed.
    #[error("cohort call failed")]
    Call(#[from] Error),
}
