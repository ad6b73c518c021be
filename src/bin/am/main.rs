//! `am`: a small command-line tool around the runtime.
//!
//! - `am serve [--endpoint E] [--max-concurrent N] [--max-message-bytes N] [--ring-capacity N]`
//!   starts a manager with the demo handlers, prints its `PeerInfo` as one
//!   JSON line on stdout, and serves until `_request_shutdown` (from a trusted
//!   caller), SIGINT or SIGTERM. With `AM_AUTH_SECRET` set in its environment,
//!   TCP clients must authenticate with that secret (`docs/security.md`).
//! - `am health <peer-info-json>` / `am handlers <peer-info-json>` query a peer.
//!
//! The demo handlers are those of the `demo` module beside this file.

use std::process::ExitCode;

mod demo;

use active_message::{ActiveMessageManagerBuilder, PeerInfo};

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn parse<T: std::str::FromStr>(args: &[String], flag: &str) -> Result<Option<T>, String> {
    arg(args, flag)
        .map(|v| v.parse().map_err(|_| format!("bad value for {flag}: {v}")))
        .transpose()
}

async fn serve(args: &[String]) -> Result<(), String> {
    let mut builder = ActiveMessageManagerBuilder::new()
        .endpoint(arg(args, "--endpoint").unwrap_or_else(|| "tcp://127.0.0.1:0".into()));
    if let Some(n) = parse(args, "--max-concurrent")? {
        builder = builder.max_concurrent_handlers(n);
    }
    if let Some(n) = parse(args, "--max-message-bytes")? {
        builder = builder.max_message_bytes(n);
    }
    if let Some(n) = parse(args, "--ring-capacity")? {
        builder = builder.ring_capacity(n);
    }
    let manager = builder.build().await.map_err(|e| e.to_string())?;
    demo::register_demo_handlers(&manager)
        .await
        .map_err(|e| e.to_string())?;
    let info = serde_json::to_string(&manager.peer_info().await).map_err(|e| e.to_string())?;
    println!("{info}");
    let cancel = manager.cancel_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    manager.shutdown().await.map_err(|e| e.to_string())
}

async fn query(what: &str, args: &[String]) -> Result<(), String> {
    let peer: PeerInfo = serde_json::from_str(args.first().ok_or("missing peer-info JSON")?)
        .map_err(|e| e.to_string())?;
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let client = manager.client();
    client
        .connect_to_peer(peer.clone())
        .await
        .map_err(|e| e.to_string())?;
    let out = match what {
        "health" => serde_json::to_string(
            &client
                .health_check(peer.instance_id)
                .await
                .map_err(|e| e.to_string())?,
        ),
        _ => serde_json::to_string(
            &client
                .list_handlers(peer.instance_id)
                .await
                .map_err(|e| e.to_string())?,
        ),
    };
    println!("{}", out.map_err(|e| e.to_string())?);
    manager.shutdown().await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]).await,
        Some(cmd @ ("health" | "handlers")) => query(cmd, &args[1..]).await,
        _ => Err("usage: am serve [--endpoint E] [--max-concurrent N] [--max-message-bytes N] | am health <peer-json> | am handlers <peer-json>".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("am: {e}");
            ExitCode::FAILURE
        }
    }
}
