//! A real child process holding pooled buffers is killed: the sender's pool
//! goes back to its starting level (counters and memfd mappings).

mod common;

use std::time::Duration;

use active_message::transport::shm::pool_usage;
use bytes::Bytes;
use common::process::ServerProcess;
use common::resources::Resources;
use common::{Flavor, builder, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_holding_buffers_gives_them_back() {
    let mut child = ServerProcess::start(&["--endpoint", "shm://"]);
    let manager = builder(Flavor::Shm).build().await.unwrap();
    let client = manager.client();
    client.connect_to_peer(child.info.clone()).await.unwrap();
    let base = pool_usage();
    let resources = Resources::now();

    // The child's `hold` handler keeps every payload: each message needs a
    // segment of its own.
    const HELD: u64 = 4;
    for i in 0..HELD {
        client
            .active_message("hold")
            .unwrap()
            .raw_payload(Bytes::from(vec![i as u8; 3 << 20]))
            .target_instance(child.info.instance_id)
            .execute()
            .await
            .unwrap();
    }
    let during = pool_usage();
    assert_eq!(during.tx_segments, base.tx_segments + HELD, "{during:?}");
    assert!(during.tx_bytes >= base.tx_bytes + HELD * (3 << 20));

    child.kill();
    let back = eventually(Duration::from_secs(10), || async {
        let now = pool_usage();
        now.tx_segments == base.tx_segments && now.tx_bytes == base.tx_bytes
    })
    .await;
    assert!(
        back,
        "pool still at {:?}, started at {base:?}",
        pool_usage()
    );
    let settled = Resources::settle_to(&resources, 64 << 10, Duration::from_secs(10)).await;
    assert!(
        settled.fds <= resources.fds && settled.memfd_maps <= resources.memfd_maps,
        "{settled} (started at {resources})"
    );
    manager.shutdown().await.unwrap();
}
