//! Demo handlers: one or more of every handler kind, served by `am serve`
//! (the integration tests include this file too, for in-process servers).
//!
//! | name | kind | behaviour |
//! |---|---|---|
//! | `echo`, `fail` | typed (`String` -> `String`) | echo / error `failed on "<input>"` |
//! | `echo_async`, `fail_async` | typed async | same, from an async closure |
//! | `echo_archived` | archived (zero-copy, `String` -> `String`) | echo, reading the input in place |
//! | `echo_bytes`, `fail_bytes` | bytes | echo / error |
//! | `note`, `fail_note` | active message | count one note / error |
//! | `notes` | typed (`()` -> `u64`) | notes counted so far |
//! | `slow` | typed async (`u64` ms -> `u64`) | sleeps that long, tracks concurrency |
//! | `peak` | typed (`()` -> `u64`) | most `slow` calls seen running at once |
//! | `hold` | active message | keeps the payload until the manager shuts down |
//! | `count` | typed stream (`u64` n -> `u64` items) | items `0..n`, then the end |
//! | `count_then_fail` | typed stream (`u64` k -> `u64` items) | items `0..k`, then error `failed after <k> items` |
//! | `ticks` | typed stream (`()` -> `u64` items) | `0, 1, 2, ...` until cancelled |
//! | `stream_cancels` | typed (`()` -> `u64`) | `ticks` streams that saw their cancellation |
//! | `count_bytes` | raw stream (`u64` LE n -> 8-byte items) | items `0..n` as `u64` LE |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::ActiveMessageManager;
use active_message::StreamSender;
use active_message::handler_impls::{
    ArchivedContext, TypedContext, am_handler, archived_unary_handler, raw_stream_handler,
    typed_stream_handler, typed_unary_handler, typed_unary_handler_async, unary_handler,
};

#[derive(Default)]
/// Counters shared by the demo handlers.
struct DemoState {
    notes: AtomicU64,
    running: AtomicU64,
    peak: AtomicU64,
    stream_cancels: AtomicU64,
}

/// Registers the demo handlers on `manager`.
pub async fn register_demo_handlers(manager: &ActiveMessageManager) -> active_message::Result<()> {
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
            unary_handler("echo_bytes", |c| Ok(Some(c.payload.into()))),
        )
        .await?;
    manager
        .register_handler(
            "fail_bytes",
            unary_handler("fail_bytes", |_| Err("bytes handler failed".into())),
        )
        .await?;
    manager
        .register_handler(
            "echo_archived",
            archived_unary_handler("echo_archived", |c: ArchivedContext<'_, String>| {
                Ok(c.input.as_str().to_owned())
            }),
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
    manager
        .register_handler(
            "hold",
            // Keeps the payload (a large one stays in the sender's pooled
            // area) until shutdown: shows buffers held by a receiver.
            am_handler("hold", |c| async move {
                let payload = c.payload;
                c.cancel.cancelled().await;
                drop(payload);
                Ok(())
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
    register_stream_handlers(manager, state).await
}

/// Sends `0..n` on `tx`.
async fn count_to(tx: &StreamSender<u64>, n: u64) -> Result<(), String> {
    for i in 0..n {
        tx.send(&i).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The streaming demo handlers.
async fn register_stream_handlers(
    manager: &ActiveMessageManager,
    state: Arc<DemoState>,
) -> active_message::Result<()> {
    manager
        .register_handler(
            "count",
            typed_stream_handler("count", |c: TypedContext<u64>, tx| async move {
                count_to(&tx, c.input).await
            }),
        )
        .await?;
    manager
        .register_handler(
            "count_then_fail",
            typed_stream_handler("count_then_fail", |c: TypedContext<u64>, tx| async move {
                count_to(&tx, c.input).await?;
                Err(format!("failed after {} items", c.input))
            }),
        )
        .await?;
    let s = Arc::clone(&state);
    manager
        .register_handler(
            "ticks",
            typed_stream_handler("ticks", move |c: TypedContext<()>, tx| {
                let s = Arc::clone(&s);
                async move {
                    let mut i = 0u64;
                    while tx.send(&i).await.is_ok() {
                        i += 1;
                    }
                    if c.cancel.is_cancelled() {
                        s.stream_cancels.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }),
        )
        .await?;
    let s = Arc::clone(&state);
    manager
        .register_handler(
            "stream_cancels",
            typed_unary_handler("stream_cancels", move |_: TypedContext<()>| {
                Ok(s.stream_cancels.load(Ordering::SeqCst))
            }),
        )
        .await?;
    manager
        .register_handler(
            "count_bytes",
            raw_stream_handler("count_bytes", |c, sink| async move {
                let n = <[u8; 8]>::try_from(&c.payload[..])
                    .map(u64::from_le_bytes)
                    .map_err(|_| "payload: u64 LE count".to_string())?;
                for i in 0..n {
                    sink.send_bytes(&i.to_le_bytes())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }),
        )
        .await?;
    Ok(())
}
