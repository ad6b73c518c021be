//! Cohort failures as Python exceptions: one instance per failed rank (with
//! a `rank` attribute) in an operation's results, and a raised exception
//! when an operation or a join fails as a whole.

use active_message::cohort::{CohortError, RankError};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{
    ActiveMessageError, ConfigError, HandlerError, NoSuchHandler, PeerLost, Refused, Timeout, to_py,
};

create_exception!(
    _native,
    CohortFailed,
    ActiveMessageError,
    "A cohort operation, setup or join failed as a whole."
);
create_exception!(
    _native,
    MissingRanks,
    CohortFailed,
    "Not every rank joined within the join timeout."
);
create_exception!(
    _native,
    RankLost,
    CohortFailed,
    "A rank was lost and the failure policy is fail-fast (or terminate-all)."
);
create_exception!(
    _native,
    JoinRefused,
    CohortFailed,
    "The leader refused the join (rank taken or out of range)."
);
create_exception!(
    _native,
    RankVacant,
    ActiveMessageError,
    "No worker holds this rank (it never joined, or it left)."
);
create_exception!(
    _native,
    RankCancelled,
    ActiveMessageError,
    "The operation finished without this rank's answer."
);

/// Adds the cohort exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CohortFailed", py.get_type::<CohortFailed>())?;
    m.add("MissingRanks", py.get_type::<MissingRanks>())?;
    m.add("RankLost", py.get_type::<RankLost>())?;
    m.add("JoinRefused", py.get_type::<JoinRefused>())?;
    m.add("RankVacant", py.get_type::<RankVacant>())?;
    m.add("RankCancelled", py.get_type::<RankCancelled>())?;
    Ok(())
}

/// A whole-cohort failure as the exception to raise.
pub(crate) fn cohort_to_py(err: CohortError) -> PyErr {
    let text = err.to_string();
    match err {
        CohortError::Config(_) => ConfigError::new_err(text),
        CohortError::MissingRanks { .. } => MissingRanks::new_err(text),
        CohortError::RankLost { .. } | CohortError::Terminated { .. } => RankLost::new_err(text),
        CohortError::NoSuchRank { .. } => PyValueError::new_err(text),
        CohortError::JoinRefused(_) => JoinRefused::new_err(text),
        CohortError::Call(inner) => to_py(inner),
        _ => CohortFailed::new_err(text),
    }
}

/// One rank's failure as an exception instance (not raised) carrying
/// `rank`: a handler's error keeps the handler's own text, as a direct
/// call's `HandlerError` does.
pub(crate) fn rank_to_py(py: Python<'_>, rank: u32, err: RankError) -> PyResult<PyObject> {
    let text = err.to_string();
    let exc = match err {
        RankError::Handler(message) => HandlerError::new_err(message),
        RankError::Lost => PeerLost::new_err(text),
        RankError::Timeout(_) => Timeout::new_err(text),
        RankError::NoSuchHandler(_) => NoSuchHandler::new_err(text),
        RankError::Refused(_) => Refused::new_err(text),
        RankError::Vacant => RankVacant::new_err(text),
        RankError::Cancelled => RankCancelled::new_err(text),
        RankError::Call(inner) => to_py(inner),
        _ => ActiveMessageError::new_err(text),
    };
    let value = exc.into_value(py);
    value.bind(py).setattr("rank", rank)?;
    Ok(value.into_any())
}
