//! `am`: a small command-line tool around the runtime.
//!
//! - `am serve [--endpoint E] [--max-concurrent N] [--max-message-bytes N]`
//!   starts a manager with the demo handlers, prints its `PeerInfo` as one
//!   JSON line on stdout, and serves until `_request_shutdown`, SIGINT or SIGTERM.
//! - `am health <peer-info-json>` / `am handlers <peer-info-json>` query a peer.
//!
//! Demo handlers (one or more of every handler kind):
//! `echo`, `fail` (typed); `echo_async`, `fail_async`, `slow` (typed async);
//! `echo_bytes`, `fail_bytes` (bytes); `note`, `fail_note` (active message);
//! `notes`, `peak` (typed: how many `note`s arrived, most `slow`s at once).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{
    TypedContext, am_handler, typed_unary_handler, typed_unary_handler_async, unary_handler,
};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, PeerInfo};

#[derive(Default)]
struct DemoState {
    notes: AtomicU64,
    running: AtomicU64,
    peak: AtomicU64,
}

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

async fn register_demo_handlers(manager: &ActiveMessageManager) -> active_message::Result<()> {
    let state = Arc::new(DemoState::default());
    manager
        .register_handler(
            "echo",
            typed_unary_handler("echo", |c: TypedContext<String>| Ok(c.input)),
        )
        .await?;
    manager
        .register_handler(
            "fail",
            typed_unary_handler(
                "fail",
                |c: TypedContext<String>| -> Result<String, String> {
                    Err(format!("failed on {:?}", c.input))
                },
            ),
        )
        .await?;
    manager
        .register_handler(
            "echo_async",
            typed_unary_handler_async("echo_async", |c: TypedContext<String>| async move {
                Ok(c.input)
            }),
        )
        .await?;
    manager
        .register_handler(
            "fail_async",
            typed_unary_handler_async("fail_async", |c: TypedContext<String>| async move {
                Err::<String, _>(format!("failed on {:?}", c.input))
            }),
        )
        .await?;
    manager
        .register_handler(
            "echo_bytes",
            unary_handler("echo_bytes", |c| Ok(Some(c.payload))),
        )
        .await?;
    manager
        .register_handler(
            "fail_bytes",
            unary_handler("fail_bytes", |_| Err("bytes handler failed".into())),
        )
        .await?;
    let s = Arc::clone(&state);
    manager
        .register_handler(
            "note",
            am_handler("note", move |_| {
                s.notes.fetch_add(1, Ordering::Relaxed);
                async { Ok(()) }
            }),
        )
        .await?;
    manager
        .register_handler(
            "fail_note",
            am_handler("fail_note", |_| async {
                Err("note handler failed".to_string())
            }),
        )
        .await?;
    let s = Arc::clone(&state);
    manager
        .register_handler(
            "notes",
            typed_unary_handler("notes", move |_: TypedContext<()>| {
                Ok(s.notes.load(Ordering::Relaxed))
            }),
        )
        .await?;
    let s = Arc::clone(&state);
    manager
        .register_handler(
            "peak",
            typed_unary_handler("peak", move |_: TypedContext<()>| {
                Ok(s.peak.load(Ordering::Relaxed))
            }),
        )
        .await?;
    let s = Arc::clone(&state);
    manager
        .register_handler(
            "slow",
            typed_unary_handler_async("slow", move |c: TypedContext<u64>| {
                let s = Arc::clone(&s);
                async move {
                    let now = s.running.fetch_add(1, Ordering::SeqCst) + 1;
                    s.peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(c.input)).await;
                    s.running.fetch_sub(1, Ordering::SeqCst);
                    Ok(c.input)
                }
            }),
        )
        .await?;
    Ok(())
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
    let manager = builder.build().await.map_err(|e| e.to_string())?;
    register_demo_handlers(&manager)
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
