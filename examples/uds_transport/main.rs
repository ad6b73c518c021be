//! A transport of your own, plugged in: two managers talk over the
//! Unix-domain-socket transport in `transport.rs`, which uses only the
//! public API. Run with `cargo run --example uds_transport`.

mod transport;

use active_message::ActiveMessageManagerBuilder;
use active_message::handler_impls::{TypedContext, typed_unary_handler};
use anyhow::Result;
use transport::UdsTransport;

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("am-uds-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Shared memory off, so the plugged-in transport is the best one both
    // managers have (with it on, same-host peers would use shared memory).
    let manager = |name: &str| {
        ActiveMessageManagerBuilder::new()
            .endpoint("local://")
            .shm(false)
            .transport(UdsTransport::factory(dir.join(name)))
            .build()
    };
    let server = manager("server.sock").await?;
    let client = manager("client.sock").await?;
    server
        .register_handler(
            "echo",
            typed_unary_handler("echo", |ctx: TypedContext<String>| Ok(ctx.input)),
        )
        .await?;

    let info = server.peer_info().await;
    println!("server advertises {:?}", info.extra_endpoints);
    client.client().connect_to_peer(info).await?;
    let echoed: String = client
        .client()
        .active_message("echo")?
        .payload("hello over a Unix socket")?
        .expect_response::<String>()
        .send(server.instance_id())
        .await?
        .await_response()
        .await?;
    let transport = &client.stats().peers[0].transport;
    println!("{echoed} (carried by the {transport} transport)");

    client.shutdown().await?;
    server.shutdown().await?;
    std::fs::remove_dir(&dir)?;
    Ok(())
}
