//! The transport-agnostic runtime: dispatcher and response table.

pub(crate) mod accept;
pub(crate) mod call;
pub(crate) mod deadline;
pub(crate) mod dispatcher;
pub(crate) mod in_place;
pub(crate) mod pending;
pub(crate) mod rate_limit;
pub(crate) mod router;
pub(crate) mod run;
pub(crate) mod rx_arena;
pub(crate) mod trace;
