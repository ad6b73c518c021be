//! Python callables as handlers.
//!
//! The runtime sees an async bytes handler; each call runs the callable on
//! tokio's blocking pool, where taking the GIL delays no transport reader
//! and no other link. The Python layer wraps `async def` handlers and codecs
//! into the one synchronous callable this module calls.

use std::sync::Arc;

use active_message::handler_impls::{UnaryContext, unary_handler_async};
use active_message::{HandlerRef, PayloadBuf};
use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::Payload;
use crate::errors::describe;

/// A handler calling `callable(payload: Payload) -> bytes-like | None`. An
/// exception reaches the caller as `Error::Handler("<Type>: <message>")`.
pub(crate) fn python_handler(name: String, callable: Py<PyAny>) -> HandlerRef {
    let callable = Arc::new(callable);
    unary_handler_async(name, move |ctx: UnaryContext| {
        let callable = Arc::clone(&callable);
        async move {
            tokio::task::spawn_blocking(move || run(&callable, ctx.payload))
                .await
                .map_err(|e| format!("the Python handler's thread failed: {e}"))?
        }
    })
}

fn run(callable: &Py<PyAny>, payload: PayloadBuf) -> Result<Option<Bytes>, String> {
    Python::with_gil(|py| {
        let result = Py::new(py, Payload::new(payload))
            .and_then(|arg| callable.call1(py, (arg,)))
            .and_then(|out| to_bytes(out.bind(py)));
        result.map_err(|e| describe(py, &e))
    })
}

/// A handler's return value as a response body: `None` is an empty body.
fn to_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Option<Bytes>> {
    if obj.is_none() {
        return Ok(None);
    }
    Ok(Some(bytes_of(obj)?))
}

/// The bytes of any object exporting a byte buffer (one copy).
pub(crate) fn bytes_of(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    let buffer = PyBuffer::<u8>::get(obj)?;
    Ok(Bytes::from(buffer.to_vec(obj.py())?))
}
