//! The transport-agnostic runtime: dispatcher and response table.

pub(crate) mod dispatcher;
pub mod pending;
