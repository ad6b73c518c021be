//! `am serve`.

use active_message::ActiveMessageManagerBuilder;
use clap::Args;

use crate::CliError;

/// Options of `am serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Endpoint to bind: `tcp://host:port` (port 0 picks one), `local://`
    /// (shared memory and in-process only) or `ipc:///path`.
    #[arg(long, value_name = "E", default_value = "tcp://127.0.0.1:0")]
    endpoint: String,
    /// Handlers allowed to run at once.
    #[arg(long, value_name = "N")]
    max_concurrent: Option<usize>,
    /// Largest message accepted, in bytes.
    #[arg(long, value_name = "N")]
    max_message_bytes: Option<usize>,
    /// Capacity of each shared-memory ring, in bytes.
    #[arg(long, value_name = "N")]
    ring_capacity: Option<usize>,
    /// Serves Prometheus metrics at `http://ADDR/metrics` (port 0 picks one;
    /// the address bound is printed on stderr).
    #[cfg(feature = "metrics")]
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// Runs `am serve` until a trusted shutdown request or a signal.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let mut builder = ActiveMessageManagerBuilder::new().endpoint(args.endpoint);
    if let Some(n) = args.max_concurrent {
        builder = builder.max_concurrent_handlers(n);
    }
    if let Some(n) = args.max_message_bytes {
        builder = builder.max_message_bytes(n);
    }
    if let Some(n) = args.ring_capacity {
        builder = builder.ring_capacity(n);
    }
    let manager = builder.build().await?;
    crate::demo::register_demo_handlers(&manager).await?;
    crate::handlers::register(&manager).await?;
    #[cfg(feature = "metrics")]
    let _metrics = match args.metrics {
        Some(addr) => {
            let mut registry = prometheus_client::registry::Registry::default();
            active_message::metrics::register(&mut registry, &manager);
            let server = active_message::metrics::MetricsServer::start(addr, registry)?;
            eprintln!("am: metrics at http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let info = serde_json::to_string(&manager.peer_info().await).map_err(CliError::Answer)?;
    println!("{info}");
    let cancel = manager.cancel_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CliError::io("installing the SIGTERM handler"))?;
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    manager.shutdown().await?;
    Ok(())
}
