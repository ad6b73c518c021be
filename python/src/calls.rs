//! The three delivery modes, run on the runtime, and their completion
//! handed back to Python.

use std::sync::Arc;
use std::time::Duration;

use active_message::{Error, InstanceId, NetworkClient};
use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::buffer::Payload;
use crate::errors::to_py;

/// How a message is delivered.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Fire-and-forget: done once the link took the frame.
    Fire,
    /// Confirmed: done once the handler ran and accepted it.
    Confirm,
    /// Request/response: done with the handler's answer.
    Request,
}

impl Mode {
    pub(crate) fn parse(name: &str) -> PyResult<Self> {
        match name {
            "fire" => Ok(Self::Fire),
            "confirm" => Ok(Self::Confirm),
            "request" => Ok(Self::Request),
            other => Err(PyValueError::new_err(format!(
                "mode must be 'fire', 'confirm' or 'request', not {other:?}"
            ))),
        }
    }
}

/// An instance id from its text form (a UUID).
pub(crate) fn instance_id(text: &str) -> PyResult<InstanceId> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| PyValueError::new_err(format!("not an instance id: {text:?}: {e}")))
}

/// One call, described before it runs.
pub(crate) struct Call {
    pub(crate) mode: Mode,
    pub(crate) target: InstanceId,
    pub(crate) name: String,
    pub(crate) data: Bytes,
    pub(crate) timeout: Option<Duration>,
}

impl Call {
    /// Sends the call; a request yields the response bytes.
    pub(crate) async fn run(self, client: Arc<NetworkClient>) -> Result<Option<Bytes>, Error> {
        let mut builder = client
            .active_message(&self.name)?
            .raw_payload(self.data)
            .target_instance(self.target);
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        match self.mode {
            Mode::Fire => builder.execute().await.map(|()| None),
            Mode::Confirm => builder.send(self.target).await.map(|_| None),
            Mode::Request => {
                let status = builder.expect_response::<()>().execute().await?;
                status.await_response_raw().await.map(Some)
            }
        }
    }
}

/// A call's outcome as Python values: `Payload` or `None`, or the exception.
pub(crate) fn outcome(py: Python<'_>, result: Result<Option<Bytes>, Error>) -> PyResult<PyObject> {
    match result {
        Ok(Some(bytes)) => Ok(Py::new(py, Payload::new(bytes))?.into_any()),
        Ok(None) => Ok(py.None()),
        Err(err) => Err(to_py(err)),
    }
}

/// Runs `call` on the runtime and reports to `done(error, value)` (exactly
/// one of them `None`). `done` is called from a blocking-pool thread, so the
/// GIL is never awaited on a runtime worker; it must be thread-safe (the
/// Python layer passes one that hops onto the caller's event loop).
pub(crate) fn spawn(client: Arc<NetworkClient>, call: Call, done: Py<PyAny>) {
    crate::runtime().spawn(async move {
        let result = call.run(client).await;
        let _ = tokio::task::spawn_blocking(move || {
            Python::with_gil(|py| {
                let args = match outcome(py, result) {
                    Ok(value) => (py.None(), value),
                    Err(err) => (err.into_value(py).into_any(), py.None()),
                };
                if let Err(err) = done.call1(py, args) {
                    // The callback is ours (the Python layer's); report, never lose.
                    err.write_unraisable(py, None);
                }
            });
        })
        .await;
    });
}
