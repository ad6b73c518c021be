//! A server process and a client process on one host: they talk over
//! shared memory, chosen automatically (a peer on another host would be
//! reached over its TCP endpoint).
//!
//! `cargo run --example two_process` starts itself a second time as the
//! server (`--server`), reads the server's `PeerInfo` from its stdout, calls
//! it with every message pattern, then asks it to shut down.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use active_message::handler_impls::{TypedContext, am_handler, typed_unary_handler};
use active_message::{ActiveMessageManagerBuilder, PeerInfo};
use anyhow::{Context, Result};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Sum {
    values: Vec<u64>,
}

async fn server() -> Result<()> {
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .build()
        .await?;
    manager
        .register_handler(
            "sum",
            typed_unary_handler("sum", |ctx: TypedContext<Sum>| {
                Ok(ctx.input.values.iter().sum::<u64>())
            }),
        )
        .await?;
    manager
        .register_handler(
            "log",
            am_handler("log", |ctx| async move {
                tracing::info!(bytes = ctx.payload.len(), "log message");
                Ok(())
            }),
        )
        .await?;
    println!("{}", serde_json::to_string(&manager.peer_info().await)?);
    // Serve until a peer sends `_request_shutdown`.
    manager.cancel_token().cancelled().await;
    manager.shutdown().await?;
    Ok(())
}

async fn client() -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--server")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let peer: PeerInfo = serde_json::from_str(&line).context("server PeerInfo")?;
    println!(
        "server {} at {}",
        peer.instance_id,
        peer.tcp_endpoint.as_deref().unwrap_or("?")
    );

    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .build()
        .await?;
    let client = manager.client();
    client.connect_to_peer(peer.clone()).await?;
    let target = peer.instance_id;
    // Same host: shared memory is chosen automatically (TCP for other hosts).
    println!("connected over {}", manager.stats().peers[0].transport);

    let started = Instant::now();
    let total: u64 = client
        .active_message("sum")?
        .payload(&Sum {
            values: (1..=100).collect(),
        })?
        .expect_response::<u64>()
        .send(target)
        .await?
        .await_response()
        .await?;
    println!("sum(1..=100) = {total} in {:?}", started.elapsed());
    client
        .active_message("log")?
        .raw_payload(&b"fire-and-forget"[..])
        .target_instance(target)
        .execute()
        .await?;
    client
        .active_message("log")?
        .raw_payload(&b"confirmed"[..])
        .send(target)
        .await?;
    println!(
        "confirmed delivery ok; health: {:?}",
        client.health_check(target).await?.status
    );

    client.request_shutdown(target).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("server exited: {:?}", child.try_wait()?);
    manager.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--server") {
        server().await
    } else {
        client().await
    }
}
