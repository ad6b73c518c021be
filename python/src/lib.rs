//! `active_message._native`: the PyO3 extension behind the `active_message`
//! Python package. The Python layer (`active_message/__init__.py`) adds the
//! codecs, `asyncio` awaitables and keyword-argument ergonomics; this module
//! owns the runtime, the managers and the zero-copy payload buffers.
//!
//! Every wait (build, connect, call, shutdown) runs with the GIL released,
//! and Python handlers run on tokio's blocking pool, never on a transport's
//! reader task.

mod buffer;
mod calls;
mod cohort;
mod cohort_errors;
mod errors;
mod handler;
mod manager;
mod options;
mod stream;

use std::sync::OnceLock;

use pyo3::prelude::*;

/// The one tokio runtime of the process, started on first use. Two workers:
/// the transports' readers and the response table need few threads, and
/// Python handlers run on the separate blocking pool.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("am-runtime")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<manager::Manager>()?;
    m.add_class::<buffer::Payload>()?;
    m.add_class::<stream::Stream>()?;
    m.add_class::<cohort::Cohort>()?;
    m.add_class::<cohort::Membership>()?;
    errors::register(m)?;
    cohort_errors::register(m)?;
    Ok(())
}
