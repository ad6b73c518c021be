//! Per-rank stream gather: every rank's streamed items, tagged with their
//! rank, merged into one stream (workers in this process, over shared memory).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use active_message::cohort::{CohortConfig, LeaderWorkerCohort, RankError, join_cohort};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, TransportPolicy};
use futures::StreamExt;

const RANKS: u32 = 3;

async fn manager() -> ActiveMessageManager {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rank_streams_its_items_tagged_with_its_rank() {
    let leader = manager().await;
    let cohort = LeaderWorkerCohort::new(&leader, CohortConfig::new(RANKS))
        .await
        .unwrap();
    let address = leader.peer_info().await.shm_endpoint.unwrap();
    let mut workers = Vec::new();
    for rank in 0..RANKS {
        let worker = manager().await;
        common::demo::register_demo_handlers(&worker).await.unwrap();
        let membership = join_cohort(&worker, &address, Some(rank)).await.unwrap();
        workers.push((worker, membership));
    }
    cohort.wait_for_workers().await.unwrap();

    let mut by_rank: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut items = cohort
        .stream_gather::<_, u64>("count", &500u64, 4)
        .await
        .unwrap();
    while let Some((rank, item)) = items.next().await {
        by_rank.entry(rank).or_default().push(item.unwrap());
    }
    let expected: Vec<u64> = (0..500).collect();
    assert_eq!(by_rank.len(), RANKS as usize);
    for (rank, got) in &by_rank {
        assert_eq!(got, &expected, "rank {rank}");
    }

    // A failing handler: each rank's items, then that rank's error.
    let mut items = cohort
        .stream_gather::<_, u64>("count_then_fail", &2u64, 4)
        .await
        .unwrap();
    let mut seen: BTreeMap<u32, Vec<Result<u64, String>>> = BTreeMap::new();
    while let Some((rank, item)) = items.next().await {
        let item = item.map_err(|e| match e {
            RankError::Handler(text) => text,
            other => panic!("rank {rank}: {other:?}"),
        });
        seen.entry(rank).or_default().push(item);
    }
    for rank in 0..RANKS {
        assert_eq!(
            seen[&rank],
            vec![Ok(0), Ok(1), Err("failed after 2 items".to_owned())],
            "rank {rank}"
        );
    }

    // A handler no rank has: one error per rank.
    let mut items = cohort
        .stream_gather::<_, u64>("absent", &(), 4)
        .await
        .unwrap();
    let mut missing = Vec::new();
    while let Some((rank, item)) = items.next().await {
        assert!(matches!(item, Err(RankError::NoSuchHandler(_))), "{item:?}");
        missing.push(rank);
    }
    missing.sort_unstable();
    assert_eq!(missing, (0..RANKS).collect::<Vec<_>>());

    for (worker, membership) in workers {
        drop(membership);
        worker.shutdown().await.unwrap();
    }
    leader.shutdown().await.unwrap();
}
