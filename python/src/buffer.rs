//! `Payload`: a received message body exported through Python's buffer
//! protocol, so `memoryview(p)` and `numpy.frombuffer(p)` read it in place.
//!
//! The object owns a [`PayloadBuf`] handle on the received frame. Large
//! frames over shared memory are read in place from the sender's pooled
//! segment (or, beyond the pool's cap, their own sealed memfd), so the view
//! points straight into shared memory; small frames were copied off the
//! ring once by the transport. The segment is sealed against shrinking, so
//! the bytes never vanish while a view exists; the sender does not reuse
//! it, and the mapping lives, until the last view (and the `Payload`) is
//! gone.

use std::ffi::{c_int, c_void};

use active_message::PayloadBuf;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A received message body (read-only buffer). Use `memoryview(payload)`
/// for zero-copy access and `bytes(payload)` for an owned copy.
#[pyclass(module = "active_message._native", frozen)]
pub(crate) struct Payload {
    bytes: PayloadBuf,
}

impl Payload {
    pub(crate) fn new(bytes: impl Into<PayloadBuf>) -> Self {
        Self {
            bytes: bytes.into(),
        }
    }
}

#[pymethods]
impl Payload {
    /// Exports the bytes read-only (one-dimensional, unsigned bytes).
    ///
    /// # Safety
    /// Called by the interpreter with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let bytes = &slf.get().bytes;
            (bytes.as_ptr(), bytes.len())
        };
        // SAFETY: `view` is the interpreter's buffer to fill. The pointer and
        // length describe bytes owned by `slf`'s `PayloadBuf`, which is never
        // replaced (the class is frozen); PyBuffer_FillInfo stores a new
        // reference to `slf` in `view.obj`, so the bytes outlive the view.
        // readonly = 1 makes it refuse PyBUF_WRITABLE requests.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr.cast_mut().cast::<c_void>(),
                len as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to undo: the reference in `view.obj` is dropped by the
    /// interpreter.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// An owned copy of the bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.bytes)
    }

    /// Address of the first byte (to check where the bytes live, e.g.
    /// against `/proc/self/maps`).
    #[getter]
    fn address(&self) -> usize {
        self.bytes.as_ptr() as usize
    }

    fn __repr__(&self) -> String {
        format!("Payload({} bytes)", self.bytes.len())
    }
}
