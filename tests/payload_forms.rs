//! Every form `.payload(x)` takes (by value, by reference, strings, bytes,
//! the JSON wrapper), `clone_with_target`, `send_message` and `endpoint()`.
mod common;

use active_message::handler_impls::{TypedContext, am_handler, typed_unary_handler};
use active_message::{ActiveMessageManager, InstanceId, Json, NetworkClient};
use anyhow::Result;
use common::Flavor;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Block {
    id: u64,
    data: Vec<u8>,
}

async fn server(flavor: Flavor) -> Result<ActiveMessageManager> {
    let server = common::builder(flavor).build().await?;
    server
        .register_handler(
            "block",
            typed_unary_handler("block", |c: TypedContext<Block>| Ok(c.input)),
        )
        .await?;
    server
        .register_handler(
            "text",
            typed_unary_handler("text", |c: TypedContext<String>| Ok(c.input.len() as u64)),
        )
        .await?;
    server
        .register_handler(
            "bytes",
            typed_unary_handler("bytes", |c: TypedContext<Vec<u8>>| Ok(c.input)),
        )
        .await?;
    server
        .register_handler(
            "json_sum",
            typed_unary_handler("json_sum", |c: TypedContext<Json<Vec<u32>>>| {
                Ok(Json(c.input.0.iter().sum::<u32>()))
            }),
        )
        .await?;
    Ok(server)
}

async fn caller(flavor: Flavor, server: &ActiveMessageManager) -> Result<ActiveMessageManager> {
    let caller = common::builder(flavor).build().await?;
    caller
        .client()
        .connect_to_peer(server.peer_info().await)
        .await?;
    Ok(caller)
}

async fn text_len(client: &Arc<NetworkClient>, peer: InstanceId, text: &str) -> Result<u64> {
    let status = client
        .active_message("text")?
        .payload(text)?
        .target_instance(peer)
        .expect_response::<u64>()
        .execute()
        .await?;
    Ok(status.await_response::<u64>().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_value_and_by_reference_arrive_alike_over_shm() -> Result<()> {
    let server = server(Flavor::Shm).await?;
    let caller = caller(Flavor::Shm, &server).await?;
    let (client, peer) = (caller.client(), server.instance_id());
    let block = Block {
        id: 7,
        data: vec![1, 2, 3],
    };
    let ask = |name: &'static str| client.active_message(name);

    // By reference (zero-copy), then by value (moved).
    let by_ref = ask("block")?.payload(&block)?.expect_response::<Block>();
    // No annotation and no turbofish: the type comes from expect_response.
    let echoed = by_ref.send(peer).await?.await_response().await?;
    assert_eq!((echoed.id, &echoed.data), (7, &block.data));
    let by_value = ask("block")?
        .payload(block.clone())?
        .expect_response::<Block>();
    assert_eq!(
        by_value.send(peer).await?.await_response::<Block>().await?,
        block
    );

    // `&str`, `&String` and `String` all reach a `String` handler.
    let owned = String::from("four");
    assert_eq!(text_len(&client, peer, "three").await?, 5);
    let status = ask("text")?.payload(&owned)?.expect_response::<u64>();
    assert_eq!(status.send(peer).await?.await_response::<u64>().await?, 4);
    let status = ask("text")?.payload(owned)?.expect_response::<u64>();
    assert_eq!(status.send(peer).await?.await_response::<u64>().await?, 4);

    // `Vec<u8>` by value, a large one going through the large-frame path.
    let big = vec![0xabu8; 3 << 20];
    let status = ask("bytes")?
        .payload(big.clone())?
        .expect_response::<Vec<u8>>();
    assert_eq!(
        status.send(peer).await?.await_response::<Vec<u8>>().await?,
        big
    );

    caller.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_wrapper_carries_a_type_that_also_derives_rkyv() -> Result<()> {
    let server = server(Flavor::Tcp).await?;
    let caller = caller(Flavor::Tcp, &server).await?;
    let status = caller
        .client()
        .active_message("json_sum")?
        .payload(Json(vec![1u32, 2, 3, 4]))?
        .target_instance(server.instance_id())
        .expect_response::<Json<u32>>()
        .execute()
        .await?;
    assert_eq!(status.await_response::<Json<u32>>().await?.into_inner(), 10);
    caller.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_with_target_sends_one_message_to_two_peers() -> Result<()> {
    let first = server(Flavor::Local).await?;
    let second = server(Flavor::Local).await?;
    let caller = caller(Flavor::Local, &first).await?;
    let client = caller.client();
    client.connect_to_peer(second.peer_info().await).await?;
    let base = client
        .active_message("text")?
        .payload(String::from("shared"))?
        .expect_response::<u64>();
    for peer in [first.instance_id(), second.instance_id()] {
        let status = base.clone_with_target(peer).execute().await?;
        assert_eq!(status.target(), peer);
        assert_eq!(status.await_response::<u64>().await?, 6);
    }
    caller.shutdown().await?;
    first.shutdown().await?;
    second.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_delivers_raw_bytes_and_endpoint_is_the_advertised_one() -> Result<()> {
    let server = common::builder(Flavor::Tcp).build().await?;
    let (tx, mut rx) = mpsc::channel(4);
    server
        .register_handler(
            "raw",
            am_handler("raw", move |ctx| {
                let tx = tx.clone();
                async move { tx.send(ctx.payload).await.map_err(|e| e.to_string()) }
            }),
        )
        .await?;
    let caller = caller(Flavor::Tcp, &server).await?;
    let client = caller.client();
    client
        .send_message(server.instance_id(), "raw", &b"\x00raw\xff"[..])
        .await?;
    assert_eq!(rx.recv().await.as_deref(), Some(&b"\x00raw\xff"[..]));

    let info = server.peer_info().await;
    let endpoint = server.client().endpoint().map(str::to_owned);
    assert_eq!(endpoint, info.tcp_endpoint);
    assert!(endpoint.is_some_and(|e| e.starts_with("tcp://127.0.0.1:") && !e.ends_with(":0")));
    caller.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
