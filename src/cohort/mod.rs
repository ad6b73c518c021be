//! Leader/worker cohorts: one leader and N ranked worker processes.
//!
//! The leader builds a [`LeaderWorkerCohort`] from a [`CohortConfig`];
//! workers call [`join_cohort`] with the leader's address and (usually) their
//! rank. Every operation runs on all ranks at once and returns one outcome
//! per rank, in rank order (`Vec<Result<T, RankError>>`): a failed rank never
//! disappears from the results. A rank whose link breaks (on shared memory,
//! the rendezvous socket's EOF, within about a millisecond) is fenced out at
//! once, and the [`FailurePolicy`] says what an operation does about it.
//!
//! Nothing here knows the transport: ranks may be local (shared memory),
//! remote (TCP), or a mix.

mod config;
mod error;
mod leader;
mod members;
mod ops;
mod worker;

pub use config::{CohortConfig, FailurePolicy, RankPolicy};
pub use error::{CohortError, RankError};
pub use leader::{CohortEvents, LeaderWorkerCohort, ShutdownReport};
pub use members::CohortEvent;
pub use ops::{RankItems, RankTarget};
pub use worker::{CohortMembership, MembershipEnd, join_cohort};

/// A worker's position in its cohort, `0..size`.
pub type Rank = u32;
