//! Cohorts from Python: a leader's `Cohort` (wait for workers, broadcast and
//! gather by rank) and a worker's `Membership`. Payloads are raw bytes (the
//! Python layer encodes and decodes); every wait releases the GIL.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use active_message::cohort::{
    CohortConfig, CohortError, CohortMembership, FailurePolicy, LeaderWorkerCohort, MembershipEnd,
    RankError, RankPolicy, RankTarget, join_cohort,
};
use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::buffer::Payload;
use crate::cohort_errors::{cohort_to_py, rank_to_py};
use crate::handler::bytes_of;
use crate::manager::Manager;
use crate::options::seconds;
use crate::runtime;

/// Runs `fut` on the runtime with the GIL released.
fn block<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = Result<T, CohortError>> + Send,
) -> PyResult<T> {
    py.allow_threads(|| runtime().block_on(fut))
        .map_err(cohort_to_py)
}

fn rank_policy(name: &str) -> PyResult<RankPolicy> {
    match name {
        "explicit" => Ok(RankPolicy::Explicit),
        "join_order" => Ok(RankPolicy::JoinOrder),
        other => Err(PyValueError::new_err(format!(
            "ranks must be 'explicit' or 'join_order', not {other:?}"
        ))),
    }
}

fn failure_policy(name: &str) -> PyResult<FailurePolicy> {
    match name {
        "best_effort" => Ok(FailurePolicy::BestEffort),
        "fail_fast" => Ok(FailurePolicy::FailFast),
        "terminate_all" => Ok(FailurePolicy::TerminateAll),
        other => Err(PyValueError::new_err(format!(
            "failure_policy must be 'best_effort', 'fail_fast' or 'terminate_all', not {other:?}"
        ))),
    }
}

/// Outcomes by rank as a Python list: each item `ok(value)` or an exception
/// instance carrying its `rank`.
fn outcomes<T>(
    py: Python<'_>,
    results: Vec<Result<T, RankError>>,
    ok: impl Fn(Python<'_>, T) -> PyResult<PyObject>,
) -> PyResult<Vec<PyObject>> {
    (0..)
        .zip(results)
        .map(|(rank, result)| match result {
            Ok(value) => ok(py, value),
            Err(err) => rank_to_py(py, rank, err),
        })
        .collect()
}

/// The payload each rank is sent: one for all, or one per rank.
struct PerRank(Vec<Bytes>);

impl PerRank {
    fn new(data: &[Bound<'_, PyAny>], size: u32) -> PyResult<Self> {
        let all = data.iter().map(bytes_of).collect::<PyResult<Vec<_>>>()?;
        if all.len() != 1 && all.len() != size as usize {
            return Err(PyValueError::new_err(format!(
                "give one payload or one per rank ({size}), not {}",
                all.len()
            )));
        }
        Ok(Self(all))
    }

    fn of(&self, rank: u32) -> Bytes {
        let i = if self.0.len() == 1 { 0 } else { rank as usize };
        self.0[i].clone()
    }
}

/// A leader's cohort (native half; see `active_message.Cohort`).
#[pyclass(module = "active_message._native", frozen)]
pub(crate) struct Cohort {
    inner: Option<LeaderWorkerCohort>,
}

impl Cohort {
    fn cohort(&self) -> &LeaderWorkerCohort {
        // Only `Drop` takes it out.
        self.inner.as_ref().unwrap_or_else(|| unreachable!())
    }
}

#[pymethods]
impl Cohort {
    /// Starts leading a cohort of `size` ranks on `manager`.
    #[new]
    #[pyo3(signature = (manager, size, ranks, failure_policy, timeout, join_timeout))]
    fn new(
        py: Python<'_>,
        manager: &Manager,
        size: u32,
        ranks: &str,
        failure_policy: &str,
        timeout: f64,
        join_timeout: f64,
    ) -> PyResult<Self> {
        let config = CohortConfig::new(size)
            .rank_policy(rank_policy(ranks)?)
            .failure_policy(self::failure_policy(failure_policy)?)
            .operation_timeout(seconds(timeout, "timeout")?)
            .join_timeout(seconds(join_timeout, "join_timeout")?);
        let manager = manager.inner().clone();
        let inner = block(py, async move {
            LeaderWorkerCohort::new(&manager, config).await
        })?;
        Ok(Self { inner: Some(inner) })
    }

    /// How many ranks the cohort has.
    fn size(&self) -> u32 {
        self.cohort().size()
    }

    /// The instance id holding each rank, `None` where vacant.
    fn workers(&self) -> Vec<Option<String>> {
        let holders = self.cohort().workers();
        holders.iter().map(|h| h.map(|id| id.to_string())).collect()
    }

    /// Waits (GIL released) until every rank is held, or the join timeout.
    fn wait_for_workers(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.cohort().wait_for_workers())
    }

    /// Sends `data` (one payload, or one per rank) to `name` on every rank:
    /// fire-and-forget, or `confirmed` (each handler ran it). `None` per rank
    /// where it went through, else the rank's exception instance.
    fn broadcast(
        &self,
        py: Python<'_>,
        name: String,
        data: Vec<Bound<'_, PyAny>>,
        confirmed: bool,
    ) -> PyResult<Vec<PyObject>> {
        let data = PerRank::new(&data, self.cohort().size())?;
        let send = |t: RankTarget| {
            let (name, body) = (name.clone(), data.of(t.rank));
            async move {
                let msg = t.client.active_message(&name)?.raw_payload(body);
                let msg = msg.timeout(t.timeout).target_instance(t.instance);
                if confirmed {
                    msg.send(t.instance).await.map(|_| ())
                } else {
                    msg.execute().await
                }
            }
        };
        let results = block(py, self.cohort().par_map(send))?;
        outcomes(py, results, |py, ()| Ok(py.None()))
    }

    /// Calls `name` with `data` (one payload, or one per rank) on every rank;
    /// each rank's response `Payload`, or its exception instance, by rank.
    fn gather(
        &self,
        py: Python<'_>,
        name: String,
        data: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Vec<PyObject>> {
        let data = PerRank::new(&data, self.cohort().size())?;
        let request = |t: RankTarget| {
            let (name, body) = (name.clone(), data.of(t.rank));
            async move {
                let msg = t.client.active_message(&name)?.raw_payload(body);
                let msg = msg.timeout(t.timeout).target_instance(t.instance);
                let status = msg.expect_response::<()>().execute().await?;
                status.await_response_raw().await
            }
        };
        let results = block(py, self.cohort().par_map(request))?;
        outcomes(py, results, |py, bytes| {
            Ok(Py::new(py, Payload::new(bytes))?.into_any())
        })
    }

    /// Tells every worker to stop and waits up to `deadline` seconds for
    /// their acknowledgements; returns the ranks that acknowledged.
    fn shutdown(&self, py: Python<'_>, deadline: f64) -> PyResult<Vec<u32>> {
        let deadline = seconds(deadline, "deadline")?;
        let cohort = self.cohort();
        let report = py.allow_threads(|| runtime().block_on(cohort.shutdown(deadline)));
        for (rank, err) in &report.unanswered {
            tracing::warn!(rank, %err, "cohort shutdown: a rank did not acknowledge");
        }
        Ok(report.acknowledged)
    }
}

impl Drop for Cohort {
    fn drop(&mut self) {
        // The cohort's drop stops its tasks: it needs the runtime's context.
        let _context = runtime().enter();
        drop(self.inner.take());
    }
}

/// A worker's membership (native half; see `active_message.Membership`).
#[pyclass(module = "active_message._native", frozen)]
pub(crate) struct Membership {
    rank: u32,
    size: u32,
    leader: String,
    /// `None` once left: `leave` consumes the Rust membership.
    inner: Mutex<Option<Arc<CohortMembership>>>,
}

fn end_name(end: MembershipEnd) -> &'static str {
    match end {
        MembershipEnd::LeaderLost => "leader_lost",
        MembershipEnd::StopRequested => "stop_requested",
        MembershipEnd::Left => "left",
    }
}

impl Membership {
    fn current(&self) -> Option<Arc<CohortMembership>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[pymethods]
impl Membership {
    /// Joins the cohort led at `address` (`tcp://...` or an shm rendezvous
    /// path) as `rank`, or the next free rank in join order with `None`.
    #[staticmethod]
    #[pyo3(signature = (manager, address, rank=None))]
    fn join(
        py: Python<'_>,
        manager: &Manager,
        address: String,
        rank: Option<u32>,
    ) -> PyResult<Self> {
        let manager = manager.inner().clone();
        let joined = block(
            py,
            async move { join_cohort(&manager, &address, rank).await },
        )?;
        Ok(Self {
            rank: joined.rank(),
            size: joined.size(),
            leader: joined.leader().to_string(),
            inner: Mutex::new(Some(Arc::new(joined))),
        })
    }

    /// This worker's rank.
    #[getter]
    fn rank(&self) -> u32 {
        self.rank
    }

    /// How many ranks the cohort has.
    #[getter]
    fn size(&self) -> u32 {
        self.size
    }

    /// The leader's instance id.
    #[getter]
    fn leader(&self) -> String {
        self.leader.clone()
    }

    /// `None` while a member, else how it ended: `"leader_lost"`,
    /// `"stop_requested"` or `"left"`.
    fn status(&self) -> Option<&'static str> {
        match self.current() {
            Some(m) => m.status().map(end_name),
            None => Some(end_name(MembershipEnd::Left)),
        }
    }

    /// Waits up to `timeout` seconds (GIL released) for the membership to
    /// end; its status then, `None` if still a member.
    fn wait_ended(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<&'static str>> {
        let budget = seconds(timeout, "timeout")?;
        let Some(m) = self.current() else {
            return Ok(Some(end_name(MembershipEnd::Left)));
        };
        let ended = py.allow_threads(|| {
            runtime().block_on(async { tokio::time::timeout(budget, m.ended()).await })
        });
        Ok(ended.ok().map(end_name))
    }

    /// Leaves the cohort, telling the leader (waits, GIL released); a no-op
    /// once the membership has ended.
    fn leave(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(shared) = taken else { return Ok(()) };
        let _context = runtime().enter();
        // A concurrent `wait_ended` holds a clone; it ends as `Left` when it
        // drops, and the leave is then the drop's best-effort notice.
        match Arc::try_unwrap(shared) {
            Ok(m) => block(py, m.leave()),
            Err(shared) => {
                drop(shared);
                Ok(())
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // The membership's drop tells the leader on a spawned task.
        let _context = runtime().enter();
        drop(self.inner.get_mut().map(Option::take));
    }
}
