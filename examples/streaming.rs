//! A streamed response: a handler yields words, the caller reads them as a
//! `Stream` with a small window, then cancels a second stream mid-way.
use active_message::handler_impls::{TypedContext, typed_stream_handler};
use active_message::{ActiveMessageManagerBuilder, Error, StreamSender};
use anyhow::Result;
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<()> {
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .build()
        .await?;
    manager
        .register_handler(
            "generate",
            typed_stream_handler(
                "generate",
                |c: TypedContext<String>, tx: StreamSender<String>| async move {
                    for word in c.input.split(' ') {
                        tx.send(&word.to_owned()).await.map_err(|e| e.to_string())?;
                    }
                    Ok(())
                },
            ),
        )
        .await?;
    let client = manager.client();
    let peer = manager.peer_info().await;
    client.connect_to_peer(peer.clone()).await?;

    let mut words = client
        .active_message("generate")?
        .payload("streamed words arrive one by one")?
        .expect_stream::<String>()
        .window(2)
        .send(peer.instance_id)
        .await?;
    while let Some(word) = words.next().await {
        println!("{}", word?);
    }

    let mut words = client
        .active_message("generate")?
        .payload("only the first of these is read")?
        .expect_stream::<String>()
        .send(peer.instance_id)
        .await?;
    println!(
        "first: {}",
        words.next().await.transpose()?.unwrap_or_default()
    );
    words.cancel();
    assert!(matches!(words.next().await, Some(Err(Error::Cancelled))));
    println!("cancelled");
    manager.shutdown().await?;
    Ok(())
}
