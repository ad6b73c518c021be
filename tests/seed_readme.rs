//! The seed README's code, verbatim but for the crate name (`dynamo_am` ->
//! `active_message`): its quickstart, and every line of its "Message
//! Patterns" section with payload types that derive serde only (no rkyv),
//! between two managers over TCP and over shared memory.
mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::{ActiveMessageManager, Error, InstanceId, NetworkClient, PeerInfo};
use anyhow::Result;
use common::Flavor;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A notification: serde only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Event {
    id: u64,
    kind: String,
}

/// A request and its reply: serde only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Query {
    key: String,
    limit: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reply {
    key: String,
    values: Vec<u64>,
}

active_message::json_payload!(Event, Query, Reply);

/// The seed's quickstart, inside a function instead of `main`; the port is 0
/// instead of 5555 so that concurrent test runs cannot collide.
#[rustfmt::skip]
mod quickstart {
    use active_message::{
        ActiveMessageManagerBuilder,
        handler_impls::{typed_unary_handler, TypedContext},
    };
    use anyhow::Result;

    pub async fn main() -> Result<()> {
        // 1. Create the manager (binds TCP + IPC endpoints automatically)
        let manager = ActiveMessageManagerBuilder::new()
            .endpoint("tcp://0.0.0.0:0".to_string())
            .build()
            .await?;

        // 2. Register a typed unary handler
        manager
            .register_handler(
                "echo".to_string(),
                typed_unary_handler("echo".to_string(), |ctx: TypedContext<String>| Ok(ctx.input)),
            )
            .await?;

        // 3. Use the concrete NetworkClient behind the Arc
        let client = manager.client();
        let peer = manager.peer_info().await;
        client.connect_to_peer(peer.clone()).await?; // connect to ourselves for the demo

        let status = client
            .active_message("echo")?
            .payload("hello world")?
            .target_instance(peer.instance_id)
            .expect_response::<String>()
            .execute()
            .await?;

        let echoed: String = status.await_response().await?;
        println!("{}", echoed);
        assert_eq!(echoed, "hello world");

        manager.shutdown().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_quickstart_runs_verbatim() -> Result<()> {
    quickstart::main().await
}

/// Registers the serde handlers; one-way events arrive on the returned channel.
async fn serve(server: &ActiveMessageManager) -> Result<mpsc::Receiver<Event>> {
    let (tx, rx) = mpsc::channel(16);
    server
        .register_handler(
            "notify".to_string(),
            typed_unary_handler("notify", move |ctx: TypedContext<Event>| {
                tx.try_send(ctx.input).map_err(|e| e.to_string())
            }),
        )
        .await?;
    let calls = Arc::new(AtomicU64::new(0));
    server
        .register_handler(
            "lookup".to_string(),
            typed_unary_handler("lookup", move |ctx: TypedContext<Query>| {
                calls.fetch_add(1, Ordering::Relaxed);
                let q = ctx.input;
                Ok(Reply {
                    values: (0..u64::from(q.limit)).collect(),
                    key: q.key,
                })
            }),
        )
        .await?;
    Ok(rx)
}

fn event(id: u64) -> Event {
    Event {
        id,
        kind: "block-freed".into(),
    }
}

fn query() -> Query {
    Query {
        key: "layer-3".into(),
        limit: 4,
    }
}

/// Every line of "Message Patterns", with serde-only payloads.
#[rustfmt::skip]
async fn message_patterns(
    client: &Arc<NetworkClient>,
    peer: InstanceId,
    events: &mut mpsc::Receiver<Event>,
) -> Result<()> {
    // Active Message (fire-and-forget)
    let event = self::event(1);
    client.active_message("notify")?.payload(event)?.target_instance(peer).execute().await?;
    assert_eq!(events.recv().await, Some(self::event(1)));

    // Confirmed delivery
    let event = self::event(2);
    let _confirmed = client.active_message("notify")?.payload(event)?.send(peer).await?;
    assert_eq!(events.try_recv().ok(), Some(self::event(2)));

    // Unary response
    let query = self::query();
    let status = client
        .active_message("lookup")?
        .payload(query)?
        .target_instance(peer)
        .expect_response::<Reply>().execute().await?;
    let reply = status.await_response::<Reply>().await?;
    assert_eq!(reply.values, [0, 1, 2, 3]);
    assert_eq!(reply.key, "layer-3");

    // Detached receipt handling
    let query = self::query();
    let receipt = client
        .active_message("lookup")?
        .payload(&query)?
        .expect_response::<Reply>()
        .detach_receipt()
        .send(peer)
        .await?;
    let status = receipt.await_receipt().await?;
    let reply: Reply = status.await_response().await?;
    assert_eq!(reply.values.len(), 4);
    Ok(())
}

async fn patterns_between_two_managers(flavor: Flavor) -> Result<()> {
    let server = common::builder(flavor).build().await?;
    let mut events = serve(&server).await?;
    let caller = common::builder(flavor).build().await?;
    let client = caller.client();
    client.connect_to_peer(server.peer_info().await).await?;
    message_patterns(&client, server.instance_id(), &mut events).await?;
    caller.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_message_patterns_with_serde_types_over_tcp() -> Result<()> {
    patterns_between_two_managers(Flavor::Tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_message_patterns_with_serde_types_over_shm() -> Result<()> {
    patterns_between_two_managers(Flavor::Shm).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serde_payload_sent_to_an_rkyv_handler_is_a_codec_error() -> Result<()> {
    let server = common::builder(Flavor::Local).build().await?;
    server
        .register_handler(
            "count".to_string(),
            typed_unary_handler("count", |ctx: TypedContext<u64>| Ok(ctx.input + 1)),
        )
        .await?;
    let caller = common::builder(Flavor::Local).build().await?;
    let client = caller.client();
    client.connect_to_peer(server.peer_info().await).await?;
    let status = client
        .active_message("count")?
        .payload(query())?
        .target_instance(server.instance_id())
        .expect_response::<u64>()
        .execute()
        .await?;
    let err = status.await_response::<u64>().await.unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err:?}");
    caller.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

/// Set in the environment of the child process that serves the handlers.
const CHILD_ENV: &str = "AM_SEED_README_CHILD";
/// Prefix of the child's line carrying its `PeerInfo` (libtest prints too).
const PEER_LINE: &str = "PEER_INFO ";

/// Not a test of its own: the body of the child process that
/// `seed_message_patterns_across_processes_over_tcp` starts (this test
/// binary, run again with `--ignored` and `CHILD_ENV` set). It serves the
/// serde handlers over TCP until its stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of seed_message_patterns_across_processes_over_tcp"]
async fn child_serde_server() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    let server = common::builder(Flavor::Tcp).build().await?;
    let mut events = serve(&server).await?;
    // Keep the one-way events flowing to nobody: the parent checks them
    // through the confirmed send that follows.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    println!(
        "{PEER_LINE}{}",
        serde_json::to_string(&server.peer_info().await)?
    );
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    server.shutdown().await?;
    Ok(())
}

/// Starts the child and reads its `PeerInfo`.
fn start_child() -> Result<(Child, PeerInfo)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "child_serde_server", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    while let Some(line) = lines.next() {
        // libtest may print "test child_serde_server ... " on the same line.
        let line = line?;
        if let Some(at) = line.find(PEER_LINE) {
            let info = serde_json::from_str(&line[at + PEER_LINE.len()..])?;
            // Keep reading: the child's last words must not hit a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((child, info));
        }
    }
    let status = child.wait()?;
    anyhow::bail!("the child exited ({status}) without its PeerInfo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_message_patterns_across_processes_over_tcp() -> Result<()> {
    let (mut child, info) = tokio::task::spawn_blocking(start_child).await??;
    let caller = common::builder(Flavor::Tcp).build().await?;
    let client = caller.client();
    client.connect_to_peer(info.clone()).await?;
    let peer = info.instance_id;
    let event = self::event(9);
    client
        .active_message("notify")?
        .payload(event)?
        .target_instance(peer)
        .execute()
        .await?;
    let _confirmed = client
        .active_message("notify")?
        .payload(self::event(10))?
        .send(peer)
        .await?;
    let status = client
        .active_message("lookup")?
        .payload(query())?
        .target_instance(peer)
        .expect_response::<Reply>()
        .execute()
        .await?;
    assert_eq!(status.await_response::<Reply>().await?.values, [0, 1, 2, 3]);
    caller.shutdown().await?;
    // Closing its stdin lets the child shut down and exit cleanly.
    drop(child.stdin.take());
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "child exited with {status}");
    Ok(())
}
