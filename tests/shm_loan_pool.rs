//! A loan dropped unsent gives its buffer back to the link's pool, and a sent
//! one comes back once the receiver is done with it: asserted on the
//! process-wide pool counters (hence a test binary of its own).

mod common;

use std::time::Duration;

use active_message::ShmConfig;
use active_message::handler_impls::{AmContext, am_handler};
use active_message::transport::shm::pool_usage;
use common::{Flavor, builder, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsent_loan_goes_back_to_the_pool() {
    // Room for one 4 MiB loan per link direction: a buffer that did not come
    // back would make the next loan wait until it times out.
    let config = || ShmConfig::default().with_pool_cap(6 << 20);
    let server = builder(Flavor::Shm)
        .shm_config(config())
        .build()
        .await
        .unwrap();
    server
        .register_handler(
            "sum",
            am_handler("sum", |c: AmContext| async move {
                let ok = c.payload.iter().all(|&b| b == 7);
                ok.then_some(()).ok_or_else(|| "payload changed".to_owned())
            }),
        )
        .await
        .unwrap();
    let manager = builder(Flavor::Shm)
        .shm_config(config())
        .build()
        .await
        .unwrap();
    let client = manager.client();
    client
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let peer = server.instance_id();
    let base = pool_usage();

    let unsent = client.loan(peer, 4 << 20).await.unwrap();
    assert!(unsent.is_shared());
    let lent = pool_usage();
    assert_eq!(lent.tx_segments, base.tx_segments + 1, "{lent:?}");
    let at = unsent.as_ptr();
    drop(unsent);

    // The same buffer again, and no new segment.
    let mut loan = client.loan(peer, 4 << 20).await.unwrap();
    assert_eq!(loan.as_ptr(), at);
    assert_eq!(pool_usage().tx_segments, lent.tx_segments);
    loan.fill(7);
    client
        .active_message("sum")
        .unwrap()
        .loaned(loan)
        .send(peer)
        .await
        .unwrap();
    let released = eventually(Duration::from_secs(10), || async {
        pool_usage().rx_held == base.rx_held
    })
    .await;
    assert!(released, "the receiver still holds {:?}", pool_usage());

    // Sent and returned: lent once more, still the one segment.
    let again = client.loan(peer, 4 << 20).await.unwrap();
    assert_eq!(again.as_ptr(), at);
    assert_eq!(pool_usage().tx_segments, lent.tx_segments);
    drop(again);

    manager.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    let back = eventually(Duration::from_secs(10), || async {
        let now = pool_usage();
        now.tx_segments == base.tx_segments && now.rx_segments == base.rx_segments
    })
    .await;
    assert!(back, "pool at {:?}, started at {base:?}", pool_usage());
}
