//! The seed README's code, verbatim but for the crate name (`dynamo_am` ->
//! `active_message`): its quickstart, and every line of its "Message
//! Patterns" section with payload types that derive serde only (no rkyv),
//! between two managers over TCP and over shared memory.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::{ActiveMessageManager, Error, InstanceId, NetworkClient};
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
