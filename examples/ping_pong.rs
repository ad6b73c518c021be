//! The quickstart: one manager, a typed echo handler, a request to itself.
use active_message::{
    ActiveMessageManagerBuilder,
    handler_impls::{TypedContext, typed_unary_handler},
};
use anyhow::Result;

#[tokio::main]
async fn main() -> Result<()> {
    // 1. Create the manager (binds TCP + IPC endpoints automatically)
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://0.0.0.0:5555".to_string())
        .build()
        .await?;

    // 2. Register a typed unary handler
    manager
        .register_handler(
            "echo".to_string(),
            typed_unary_handler(
                "echo".to_string(),
                |ctx: TypedContext<String>| Ok(ctx.input),
            ),
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

    manager.shutdown().await?;
    Ok(())
}
