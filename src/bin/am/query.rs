//! `am handlers`, `am health`, `am stats` and `am call`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use active_message::StatsSnapshot;
use clap::{ArgGroup, Args};

use crate::CliError;
use crate::peer::{Session, Target};

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(CliError::Answer)?;
    println!("{text}");
    Ok(())
}

/// `am handlers ADDR`: one handler name a line.
pub async fn handlers(target: Target) -> Result<(), CliError> {
    let session = Session::open(&target).await?;
    for name in session.client.list_handlers(session.peer).await? {
        println!("{name}");
    }
    session.close().await
}

/// `am health ADDR`: the peer's health report as JSON.
pub async fn health(target: Target) -> Result<(), CliError> {
    let session = Session::open(&target).await?;
    let report = session.client.health_check(session.peer).await?;
    print_json(&report)?;
    session.close().await
}

/// Options of `am stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    target: Target,
    /// Keeps a live table on the terminal, refreshed every `--interval`.
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with `--watch`.
    #[arg(long, default_value_t = 1.0, requires = "watch")]
    interval: f64,
    /// Stops after this many refreshes with `--watch` (default: until Ctrl-C).
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    /// Prints the snapshot as JSON instead of a table.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
}

/// `am stats ADDR [--watch]`.
pub async fn stats(args: StatsArgs) -> Result<(), CliError> {
    let session = Session::open(&args.target).await?;
    let snapshot = session.client.remote_stats(session.peer).await?;
    if args.json {
        print_json(&snapshot)?;
        return session.close().await;
    }
    if !args.watch {
        print!("{}", crate::table::stats_table(&snapshot, None));
        return session.close().await;
    }
    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    let mut previous: Option<StatsSnapshot> = None;
    let mut shown = 0u64;
    let mut snapshot = snapshot;
    loop {
        // Clear the screen and home the cursor, then redraw.
        print!(
            "\x1b[2J\x1b[H{}",
            crate::table::stats_table(&snapshot, previous.as_ref())
        );
        std::io::stdout()
            .flush()
            .map_err(CliError::io("writing the table"))?;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        previous = Some(snapshot);
        snapshot = session.client.remote_stats(session.peer).await?;
    }
    session.close().await
}

/// Options of `am call`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["json", "raw"])))]
pub struct CallArgs {
    #[command(flatten)]
    target: Target,
    /// The handler to call.
    #[arg(value_name = "HANDLER")]
    handler: String,
    /// A JSON document sent as the raw payload (for handlers that take JSON).
    #[arg(long, value_name = "PAYLOAD")]
    json: Option<String>,
    /// A file whose bytes are sent as the raw payload (`-` for stdin is not
    /// supported; name a file).
    #[arg(long, value_name = "FILE", value_parser = crate::existing_file)]
    raw: Option<PathBuf>,
}

/// `am call ADDR HANDLER --json PAYLOAD | --raw FILE`: prints the answer
/// (UTF-8 text as is, other bytes written raw to stdout).
pub async fn call(args: CallArgs) -> Result<(), CliError> {
    let body = match (&args.json, &args.raw) {
        (Some(text), _) => {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| CliError::Json(format!("--json {text:?}"), e))?;
            text.clone().into_bytes()
        }
        (None, Some(path)) => {
            std::fs::read(path).map_err(CliError::io(format!("reading {}", path.display())))?
        }
        (None, None) => return Err(CliError::MissingPayload),
    };
    let session = Session::open(&args.target).await?;
    let answer = session
        .client
        .active_message(&args.handler)?
        .raw_payload(body)
        .expect_response::<()>()
        .send(session.peer)
        .await?
        .await_response_raw()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            let _ = session.close().await;
            return Err(e.into());
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match std::str::from_utf8(&answer) {
        Ok(text) => writeln!(out, "{text}"),
        Err(_) => out.write_all(&answer),
    };
    written.map_err(CliError::io("writing the answer"))?;
    drop(out);
    session.close().await
}
