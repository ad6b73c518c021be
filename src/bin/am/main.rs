//! `am`: the command line around the runtime.
//!
//! Every subcommand has `--help`. Commands that talk to a running manager
//! take an address: `tcp://host:port`, an shm rendezvous socket
//! (`shm:///path.sock` or `/path.sock`), or the `PeerInfo` JSON line that
//! `am serve` prints. Bad arguments are named on stderr and exit with
//! status 2; failures while running exit with status 1.
//!
//! The demo handlers `am serve` registers are those of `demo.rs`, plus
//! `echo_json` (see `handlers.rs`).

mod bench;
mod demo;
mod handlers;
mod peer;
mod ping;
mod query;
mod serve;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Active messages between processes: serve, probe and benchmark.
#[derive(Debug, Parser)]
#[command(name = "am", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts a manager with the demo handlers, prints its PeerInfo as one
    /// JSON line, and serves until `_request_shutdown`, SIGINT or SIGTERM.
    /// With AM_AUTH_SECRET set, TCP clients must authenticate with it.
    Serve(serve::ServeArgs),
    /// Round trips to the `echo_bytes` handler with a latency summary.
    Ping(ping::PingArgs),
    /// Lists the handlers a peer has registered.
    Handlers(peer::Target),
    /// Asks a peer whether it is alive and how loaded it is.
    Health(peer::Target),
    /// A peer's counters; `--watch` keeps a live table on the terminal.
    Stats(query::StatsArgs),
    /// Calls a handler with a JSON or raw-bytes payload and prints the answer.
    Call(query::CallArgs),
    /// The shared-memory IPC benchmark: starts its own peer process and
    /// prints round-trip and throughput figures.
    Bench(bench::BenchArgs),
}

/// What a subcommand failed with; printed as `am: <error>`.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Runtime(#[from] active_message::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not valid JSON: {1}")]
    Json(String, #[source] serde_json::Error),
    #[error("the peer's answer could not be read: {0}")]
    Answer(#[source] serde_json::Error),
    #[cfg(feature = "metrics")]
    #[error(transparent)]
    Metrics(#[from] active_message::metrics::MetricsError),
    #[error("give --json PAYLOAD or --raw FILE")]
    MissingPayload,
    #[error("echo_bytes answered different bytes than were sent")]
    EchoMismatch,
    #[error("no round trip was measured")]
    NoSamples,
    #[error("benchmark: {0}")]
    Bench(String),
}

impl CliError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

fn init_logs() {
    // Logs go to stderr, so stdout stays machine-readable (the PeerInfo line).
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A file path argument that must name an existing file.
fn existing_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("no such file: {s}"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Ping(args) => ping::run(args).await,
        Command::Handlers(target) => query::handlers(target).await,
        Command::Health(target) => query::health(target).await,
        Command::Stats(args) => query::stats(args).await,
        Command::Call(args) => query::call(args).await,
        Command::Bench(args) => bench::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("am: {e}");
            ExitCode::FAILURE
        }
    }
}
