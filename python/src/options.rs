//! The builder's keyword arguments as Python passes them: policies by name.

use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, TransportPolicy, WaitPolicy};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Manager settings; `None` keeps the runtime's default.
#[derive(Debug, Default, FromPyObject)]
#[pyo3(from_item_all)]
pub(crate) struct Options {
    pub(crate) endpoint: String,
    pub(crate) max_concurrent_handlers: Option<usize>,
    pub(crate) wait_policy: Option<String>,
    pub(crate) spin_us: Option<f64>,
    pub(crate) transport_policy: Option<String>,
    pub(crate) default_timeout: Option<f64>,
    pub(crate) max_message_bytes: Option<usize>,
    pub(crate) shm_dir: Option<String>,
    pub(crate) auth_secret: Option<Vec<u8>>,
}

/// Seconds as a `Duration`, refusing negative, NaN and infinite values.
pub(crate) fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|e| PyValueError::new_err(format!("{what}: {value} seconds: {e}")))
}

fn wait_policy(name: &str, spin_us: Option<f64>) -> PyResult<WaitPolicy> {
    match name {
        "spin" => Ok(WaitPolicy::Spin),
        "park" => Ok(WaitPolicy::Park),
        "adaptive" => Ok(match spin_us {
            Some(us) => WaitPolicy::Adaptive {
                spin: seconds(us / 1e6, "spin_us")?,
            },
            None => WaitPolicy::default(),
        }),
        other => Err(PyValueError::new_err(format!(
            "wait_policy must be 'spin', 'adaptive' or 'park', not {other:?}"
        ))),
    }
}

fn transport_policy(name: &str) -> PyResult<TransportPolicy> {
    match name {
        "auto" => Ok(TransportPolicy::Auto),
        "shm" => Ok(TransportPolicy::ShmOnly),
        "tcp" => Ok(TransportPolicy::TcpOnly),
        other => Err(PyValueError::new_err(format!(
            "transport_policy must be 'auto', 'shm' or 'tcp', not {other:?}"
        ))),
    }
}

impl Options {
    /// The builder these options describe (validated here, built later).
    pub(crate) fn builder(self) -> PyResult<ActiveMessageManagerBuilder> {
        let mut b = ActiveMessageManagerBuilder::new().endpoint(self.endpoint);
        if let Some(n) = self.max_concurrent_handlers {
            b = b.max_concurrent_handlers(n);
        }
        if let Some(name) = self.wait_policy.as_deref() {
            b = b.wait_policy(wait_policy(name, self.spin_us)?);
        }
        if let Some(name) = self.transport_policy.as_deref() {
            b = b.transport_policy(transport_policy(name)?);
        }
        if let Some(s) = self.default_timeout {
            b = b.default_timeout(seconds(s, "default_timeout")?);
        }
        if let Some(n) = self.max_message_bytes {
            b = b.max_message_bytes(n);
        }
        if let Some(dir) = self.shm_dir {
            b = b.shm_dir(dir);
        }
        if let Some(secret) = self.auth_secret {
            b = b.auth_secret(secret);
        }
        Ok(b)
    }
}
