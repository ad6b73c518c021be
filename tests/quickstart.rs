//! The seed's quickstart, as a test (on a free port instead of 5555).
use active_message::{
    ActiveMessageManagerBuilder,
    handler_impls::{TypedContext, typed_unary_handler},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_echoes_hello_world() -> anyhow::Result<()> {
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://0.0.0.0:0".to_string())
        .build()
        .await?;
    manager
        .register_handler(
            "echo".to_string(),
            typed_unary_handler(
                "echo".to_string(),
                |ctx: TypedContext<String>| Ok(ctx.input),
            ),
        )
        .await?;
    let client = manager.client();
    let peer = manager.peer_info().await;
    let endpoint = peer.tcp_endpoint.clone().expect("a TCP endpoint");
    assert!(
        !endpoint.contains("0.0.0.0") && !endpoint.ends_with(":0"),
        "advertised {endpoint}"
    );
    client.connect_to_peer(peer.clone()).await?;
    let status = client
        .active_message("echo")?
        .payload("hello world")?
        .target_instance(peer.instance_id)
        .expect_response::<String>()
        .execute()
        .await?;
    let echoed: String = status.await_response().await?;
    assert_eq!(echoed, "hello world");
    // On one host the manager reaches itself over shared memory.
    assert_eq!(
        manager.stats().peers[0].transport,
        active_message::TransportKind::Shm
    );
    manager.shutdown().await?;
    Ok(())
}
