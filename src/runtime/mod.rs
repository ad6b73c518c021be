//! The transport-agnostic runtime: dispatcher and response table.

pub(crate) mod call;
pub(crate) mod deadline;
pub(crate) mod dispatcher;
pub(crate) mod pending;
pub(crate) mod rate_limit;
pub(crate) mod trace;
