//! The Python bindings (`python/`) against Rust peers, in real processes:
//! a Rust leader calls a Python worker (`python/examples/worker.py`) with
//! every delivery pattern over shared memory and over TCP, gets a Python
//! exception back as `Error::Handler`, loses a killed worker as `PeerLost`,
//! and hands it 64 MiB that the worker reads in place in shared memory.
//!
//! The interpreter is `$AM_PYTHON`, else `<crate>/.venv/bin/python`; it must
//! import `active_message` (built by `maturin develop`, see `scripts/test-all`)
//! and numpy. Without them the tests are skipped, unless `$CI` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId, Json, NetworkClient,
    TransportKind, TransportPolicy,
};
use common::process::ServerProcess;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AM_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// The interpreter if it has the bindings, else `None` (a skip), or a
/// failure under `$CI`.
fn bindings() -> Option<PathBuf> {
    let python = python();
    let ok = Command::new(&python)
        .args(["-c", "import active_message, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let msg = format!(
        "{} cannot import active_message and numpy (run scripts/test-all, or maturin develop in python/)",
        python.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{msg}: CI must build them"
    );
    eprintln!("skipped: {msg}");
    None
}

/// A Python worker process serving on a loopback TCP port and shared memory.
fn worker(python: &Path) -> ServerProcess {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/examples/worker.py");
    let mut command = Command::new(python);
    command.arg(script).arg("tcp://127.0.0.1:0");
    ServerProcess::start_command(command)
}

async fn leader(policy: TransportPolicy) -> anyhow::Result<ActiveMessageManager> {
    Ok(ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(policy)
        .max_message_bytes(128 << 20)
        .build()
        .await?)
}

async fn request(
    client: &Arc<NetworkClient>,
    peer: InstanceId,
    name: &str,
    data: &[u8],
) -> active_message::Result<bytes::Bytes> {
    client
        .active_message(name)?
        .raw_payload(data.to_vec())
        .target_instance(peer)
        .expect_response::<()>()
        .execute()
        .await?
        .await_response_raw()
        .await
}

async fn notes(client: &Arc<NetworkClient>, peer: InstanceId) -> anyhow::Result<u64> {
    let status = client
        .active_message("notes")?
        .payload(Json(()))?
        .target_instance(peer)
        .expect_response::<Json<u64>>()
        .execute()
        .await?;
    Ok(status.await_response::<Json<u64>>().await?.into_inner())
}

/// Fire-and-forget, confirmed, request/response (bytes, JSON, async def)
/// and a handler error, against one worker over the transport `policy` picks.
async fn every_pattern(policy: TransportPolicy, expected: TransportKind) -> anyhow::Result<()> {
    let Some(python) = bindings() else {
        return Ok(());
    };
    let worker = worker(&python);
    let manager = leader(policy).await?;
    let client = manager.client();
    client.connect_to_peer(worker.info.clone()).await?;
    let peer = worker.info.instance_id;
    let link = client
        .list_peers()
        .into_iter()
        .find(|p| p.instance_id == peer);
    assert_eq!(link.map(|p| p.transport), Some(expected));

    // Request/response: raw bytes both ways, every byte value.
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    assert_eq!(request(&client, peer, "echo", &data).await?, data);
    assert_eq!(
        request(&client, peer, "echo_async", b"async").await?,
        &b"async"[..]
    );
    // JSON: Rust's Json<T> against the Python json codec.
    let doc = serde_json::json!({"rank": 3, "shape": [2, 4], "name": "w"});
    let status = client
        .active_message("echo_json")?
        .payload(Json(doc.clone()))?
        .target_instance(peer)
        .expect_response::<Json<serde_json::Value>>()
        .execute()
        .await?;
    assert_eq!(
        status.await_response::<Json<serde_json::Value>>().await?.0,
        doc
    );

    // Confirmed: counted by the time it returns.
    client
        .active_message("note")?
        .raw_payload(vec![1])
        .send(peer)
        .await?;
    assert_eq!(notes(&client, peer).await?, 1);
    // Fire-and-forget: handlers run concurrently, so wait for the count.
    client
        .active_message("note")?
        .raw_payload(vec![2])
        .target_instance(peer)
        .execute()
        .await?;
    while notes(&client, peer).await? < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(notes(&client, peer).await?, 2);

    // A Python exception: the caller gets Handler("<Type>: <message>").
    match request(&client, peer, "fail", b"w3").await {
        Err(Error::Handler(msg)) => assert_eq!(msg, "ValueError: refused: w3"),
        other => panic!("expected Error::Handler, got {other:?}"),
    }
    match client
        .active_message("fail")?
        .raw_payload(vec![b'x'])
        .send(peer)
        .await
    {
        Err(Error::Handler(msg)) => assert_eq!(msg, "ValueError: refused: x"),
        other => panic!("expected Error::Handler from a confirmed send, got {other:?}"),
    }
    match request(&client, peer, "absent", b"").await {
        Err(Error::NoSuchHandler(name)) => assert_eq!(name, "absent"),
        other => panic!("expected NoSuchHandler, got {other:?}"),
    }
    manager.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_leader_and_python_worker_exchange_every_pattern_over_shm() -> anyhow::Result<()> {
    every_pattern(TransportPolicy::ShmOnly, TransportKind::Shm).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_leader_and_python_worker_exchange_every_pattern_over_tcp() -> anyhow::Result<()> {
    every_pattern(TransportPolicy::TcpOnly, TransportKind::Tcp).await
}

/// A worker killed while a call to it is running: the call fails with
/// `PeerLost`, not at its (long) deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_python_worker_fails_the_pending_call_with_peer_lost() -> anyhow::Result<()> {
    let Some(python) = bindings() else {
        return Ok(());
    };
    let mut worker = worker(&python);
    let manager = leader(TransportPolicy::ShmOnly).await?;
    let client = manager.client();
    client.connect_to_peer(worker.info.clone()).await?;
    let peer = worker.info.instance_id;
    let call = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            client
                .active_message("hang")?
                .raw_payload(vec![])
                .target_instance(peer)
                .timeout(Duration::from_secs(600))
                .expect_response::<()>()
                .execute()
                .await?
                .await_response_raw()
                .await
        })
    };
    // Wait until the handler is running (a condition, polled by calls).
    while request_json_u64(&client, peer, "hanging").await? == 0 {
        tokio::task::yield_now().await;
    }
    worker.kill();
    match call.await? {
        Err(Error::PeerLost(id)) => assert_eq!(id, peer),
        other => panic!("expected PeerLost, got {other:?}"),
    }
    manager.shutdown().await?;
    Ok(())
}

async fn request_json_u64(
    client: &Arc<NetworkClient>,
    peer: InstanceId,
    name: &str,
) -> anyhow::Result<u64> {
    let bytes = request(client, peer, name, b"null").await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// 64 MiB from Rust: the Python handler's `numpy.frombuffer` view lies in a
/// shared mapping (the sealed memfd the frame arrived in), and every byte
/// arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_handler_reads_64_mib_in_place_in_shared_memory() -> anyhow::Result<()> {
    let Some(python) = bindings() else {
        return Ok(());
    };
    let worker = worker(&python);
    let manager = leader(TransportPolicy::ShmOnly).await?;
    let client = manager.client();
    client.connect_to_peer(worker.info.clone()).await?;
    let data: Vec<u8> = (0..64usize << 20).map(|i| (i % 251) as u8).collect();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let reply = request(&client, worker.info.instance_id, "inspect", &data).await?;
    let report: serde_json::Value = serde_json::from_slice(&reply)?;
    assert_eq!(report["len"], 64 << 20);
    assert_eq!(report["sum"], sum);
    let mapping = report["mapping"].as_str().unwrap_or_default();
    assert!(
        mapping.contains("memfd:am-large") || mapping.contains("memfd:am-pool"),
        "the payload is not in the shared frame mapping: {mapping:?}"
    );
    manager.shutdown().await?;
    Ok(())
}
