//! `Stream`: a streamed response read from Python as an iterator of
//! `Payload`s; each wait runs with the GIL released.

use std::sync::Arc;

use active_message::{BytesStream, Error, NetworkClient};
use bytes::Bytes;
use futures::StreamExt;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::buffer::Payload;
use crate::calls::Call;
use crate::errors::to_py;
use crate::runtime;

/// A streamed response (native half; see `active_message.Manager.stream`).
/// Dropping it, or `cancel()`, cancels the handler.
#[pyclass(module = "active_message._native", frozen)]
pub(crate) struct Stream {
    // An async mutex: a read waits on the runtime while holding it.
    inner: Arc<Mutex<BytesStream>>,
}

impl Stream {
    /// Starts the streamed call `call` (its mode is ignored) with `window`.
    pub(crate) fn open(
        py: Python<'_>,
        client: Arc<NetworkClient>,
        call: Call,
        window: u32,
    ) -> PyResult<Self> {
        let fut = async move {
            let mut builder = client
                .active_message(&call.name)?
                .raw_payload(call.data)
                .expect_stream::<()>()
                .window(window);
            if let Some(timeout) = call.timeout {
                builder = builder.timeout(timeout);
            }
            Ok::<_, Error>(builder.send(call.target).await?.into_bytes())
        };
        let stream = py
            .allow_threads(|| runtime().block_on(fut))
            .map_err(to_py)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(stream)),
        })
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next item (a `Payload`); `StopIteration` at the normal end, the
    /// stream's error (`HandlerError`, `PeerLost`, `Timeout`, `Cancelled`)
    /// otherwise.
    fn __next__(&self, py: Python<'_>) -> PyResult<Payload> {
        let inner = Arc::clone(&self.inner);
        let next: Option<Result<Bytes, Error>> =
            py.allow_threads(|| runtime().block_on(async move { inner.lock().await.next().await }));
        match next {
            Some(Ok(bytes)) => Ok(Payload::new(bytes)),
            Some(Err(err)) => Err(to_py(err)),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    /// Stops the stream: the handler's cancellation fires; the next read
    /// raises `Cancelled`, then the iteration ends.
    fn cancel(&self, py: Python<'_>) {
        let inner = Arc::clone(&self.inner);
        py.allow_threads(|| runtime().block_on(async move { inner.lock().await.cancel() }));
    }
}
