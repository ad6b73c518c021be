//! A minimal `/metrics` endpoint on its own thread.
//!
//! `tiny_http` keeps this small and synchronous: a scrape every few seconds
//! needs no async stack, and the thread never touches the runtime's tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::registry::Registry;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Binding the HTTP listener failed.
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The listener has no IP address (it should always have one).
    #[error("the metrics listener has no IP address")]
    NoAddress,
}

/// Serves a registry at `http://<addr>/metrics` until dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free one) and serves `registry`.
    pub fn start(addr: SocketAddr, registry: Registry) -> Result<Self, MetricsError> {
        let server =
            tiny_http::Server::http(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or(MetricsError::NoAddress)?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("am-metrics".into())
            .spawn(move || serve(&serving, &registry))
            .map_err(|e| MetricsError::Bind {
                addr,
                source: Box::new(e),
            })?;
        Ok(Self {
            server,
            addr: bound,
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(server: &tiny_http::Server, registry: &Registry) {
    // `incoming_requests` ends when `unblock` is called (on drop).
    for request in server.incoming_requests() {
        let response = if request.url() == "/metrics" {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                // A plain Content-Length body, never chunked: simple
                // scrapers (and `curl | grep`) read it as is.
                Ok(()) => tiny_http::Response::from_string(body)
                    .with_chunked_threshold(usize::MAX)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
                            .expect("a valid static header"),
                    ),
                Err(e) => {
                    tracing::warn!(%e, "metrics: encoding failed");
                    tiny_http::Response::from_string("encoding failed").with_status_code(500)
                }
            }
        } else {
            tiny_http::Response::from_string("not found: try /metrics").with_status_code(404)
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(%e, "metrics: scrape response not delivered");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
