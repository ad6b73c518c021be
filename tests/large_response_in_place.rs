//! A large response over shared memory reaches the caller in place: the
//! `Bytes` that `await_response_raw` returns point into the sealed memfd the
//! frame arrived in, not into a private copy (the Python bindings hand this
//! memory to `memoryview` and numpy).

use active_message::handler_impls::unary_handler;
use active_message::{ActiveMessageManagerBuilder, TransportKind, TransportPolicy};

/// The `/proc/self/maps` line of the mapping holding `address`.
fn mapping_of(address: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .find(|line| {
            let range = line.split_whitespace().next().unwrap_or_default();
            let (start, end) = range.split_once('-').unwrap_or_default();
            let start = usize::from_str_radix(start, 16).unwrap_or(usize::MAX);
            let end = usize::from_str_radix(end, 16).unwrap_or(0);
            (start..end).contains(&address)
        })
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_shm_response_is_not_copied_for_the_caller() -> anyhow::Result<()> {
    let build = || {
        ActiveMessageManagerBuilder::new()
            .endpoint("shm://")
            .transport_policy(TransportPolicy::ShmOnly)
            .max_message_bytes(32 << 20)
            .build()
    };
    let (server, caller) = (build().await?, build().await?);
    let size = 16usize << 20;
    server
        .register_handler(
            "fill",
            unary_handler("fill", move |_| Ok(Some(vec![7u8; size].into()))),
        )
        .await?;
    let client = caller.client();
    client.connect_to_peer(server.peer_info().await).await?;
    let peer = server.instance_id();
    let link = client
        .list_peers()
        .into_iter()
        .find(|p| p.instance_id == peer);
    assert_eq!(link.map(|p| p.transport), Some(TransportKind::Shm));

    let response = client
        .active_message("fill")?
        .raw_payload(vec![])
        .target_instance(peer)
        .expect_response::<()>()
        .execute()
        .await?
        .await_response_raw()
        .await?;
    assert_eq!(response.len(), size);
    assert!(response.iter().all(|&b| b == 7));
    let mapping = mapping_of(response.as_ptr() as usize);
    assert!(
        mapping.contains("memfd:am-large") || mapping.contains("memfd:am-pool"),
        "the response was copied out of its frame: {mapping:?}"
    );
    caller.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
