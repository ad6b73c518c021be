//! `Manager`: one participant, built from keyword options.

use std::future::Future;
use std::time::Duration;

use active_message::{ActiveMessageManager, PeerInfo};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::calls::{self, Call, Mode};
use crate::errors::to_py;
use crate::handler::{bytes_of, python_handler};
use crate::options::{Options, seconds};
use crate::runtime;

/// Runs `fut` to completion on the runtime with the GIL released.
fn block<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = active_message::Result<T>> + Send,
) -> PyResult<T> {
    py.allow_threads(|| runtime().block_on(fut)).map_err(to_py)
}

/// A manager (native half; see `active_message.Manager`).
#[pyclass(module = "active_message._native", frozen)]
pub(crate) struct Manager {
    inner: ActiveMessageManager,
}

impl Manager {
    /// The Rust manager, for the cohort bindings.
    pub(crate) fn inner(&self) -> &ActiveMessageManager {
        &self.inner
    }
}

#[pymethods]
impl Manager {
    /// Builds and starts a manager from a dict of options (every key of
    /// `active_message.Manager`'s keywords present, `None` for defaults).
    #[new]
    fn new(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<Self> {
        let builder = options.extract::<Options>()?.builder()?;
        let inner = block(py, builder.build())?;
        Ok(Self { inner })
    }

    /// This manager's instance id (a UUID string).
    fn instance_id(&self) -> String {
        self.inner.instance_id().to_string()
    }

    /// The `PeerInfo` as JSON: what other peers pass to `connect`.
    fn peer_info_json(&self) -> PyResult<String> {
        let info = self.inner.client().peer_info();
        serde_json::to_string(&info).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Registers `callable(payload) -> bytes-like | None` under `name`;
    /// callable as soon as this returns.
    fn register(&self, py: Python<'_>, name: String, callable: Py<PyAny>) -> PyResult<()> {
        let handler = python_handler(name.clone(), callable);
        let manager = self.inner.clone();
        block(
            py,
            async move { manager.register_handler(name, handler).await },
        )
    }

    /// Removes a handler; returns whether it was registered.
    fn deregister(&self, py: Python<'_>, name: String) -> PyResult<bool> {
        let manager = self.inner.clone();
        block(py, async move { manager.deregister_handler(&name).await })
    }

    /// The handlers registered here (system ones start with `_`).
    fn list_handlers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let manager = self.inner.clone();
        block(py, async move { Ok(manager.list_handlers().await) })
    }

    /// Connects to a peer from its `PeerInfo` JSON; returns its instance id.
    fn connect_peer(&self, py: Python<'_>, info_json: &str) -> PyResult<String> {
        let info: PeerInfo = serde_json::from_str(info_json)
            .map_err(|e| PyValueError::new_err(format!("not a PeerInfo: {e}")))?;
        let id = info.instance_id.to_string();
        let client = self.inner.client();
        block(py, async move { client.connect_to_peer(info).await })?;
        Ok(id)
    }

    /// Connects to `tcp://host:port` or an shm rendezvous path; returns the
    /// peer's `PeerInfo` JSON.
    fn connect_address(&self, py: Python<'_>, address: String) -> PyResult<String> {
        let client = self.inner.client();
        let info = block(py, async move { client.connect_to_address(&address).await })?;
        serde_json::to_string(&info).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Sends one message and waits (GIL released): `mode` is `"fire"`,
    /// `"confirm"` or `"request"`; a request returns the response `Payload`.
    #[pyo3(signature = (mode, target, name, data, timeout=None))]
    fn call(
        &self,
        py: Python<'_>,
        mode: &str,
        target: &str,
        name: String,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<PyObject> {
        let call = make_call(mode, target, name, data, timeout)?;
        let client = self.inner.client();
        let result = py.allow_threads(|| runtime().block_on(call.run(client)));
        calls::outcome(py, result)
    }

    /// Starts the same call without waiting: `done(error, value)` is called
    /// from another thread when it finishes.
    #[pyo3(signature = (mode, target, name, data, timeout, done))]
    fn submit(
        &self,
        mode: &str,
        target: &str,
        name: String,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        done: Py<PyAny>,
    ) -> PyResult<()> {
        let call = make_call(mode, target, name, data, timeout)?;
        calls::spawn(self.inner.client(), call, done);
        Ok(())
    }

    /// Starts a streamed call (GIL released while it is sent); iterate the
    /// returned `Stream` for the items.
    #[pyo3(signature = (target, name, data, window, timeout=None))]
    fn stream(
        &self,
        py: Python<'_>,
        target: &str,
        name: String,
        data: &Bound<'_, PyAny>,
        window: u32,
        timeout: Option<f64>,
    ) -> PyResult<crate::stream::Stream> {
        let call = make_call("request", target, name, data, timeout)?;
        crate::stream::Stream::open(py, self.inner.client(), call, window)
    }

    /// Waits up to `timeout` seconds (GIL released) for the manager to stop
    /// (shutdown, trusted remote shutdown, cancellation); returns whether it did.
    fn wait_stopped(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let token = self.inner.cancel_token();
        let budget = seconds(timeout, "timeout")?;
        block(py, async move {
            Ok(tokio::time::timeout(budget, token.cancelled())
                .await
                .is_ok())
        })
    }

    /// Stops admitting, drains running handlers, tells peers, closes links.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let manager = self.inner.clone();
        block(py, async move { manager.shutdown().await })
    }
}

fn make_call(
    mode: &str,
    target: &str,
    name: String,
    data: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<Call> {
    Ok(Call {
        mode: Mode::parse(mode)?,
        target: calls::instance_id(target)?,
        name,
        data: bytes_of(data)?,
        timeout: timeout
            .map(|s| seconds(s, "timeout"))
            .transpose()?
            .map(|d: Duration| d.max(Duration::from_micros(1))),
    })
}
