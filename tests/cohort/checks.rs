//! Checks of the cohort suite that need only a cohort of four live ranks.

use active_message::ActiveMessageManager;
use active_message::cohort::{LeaderWorkerCohort, RankError};

use crate::child::{self, Proc, Via};

/// A taken rank and one out of range are refused at the worker, saying why.
pub async fn refusals(leader: &ActiveMessageManager, via: fn(u32) -> Via) {
    let address = child::address(leader, via(1)).await;
    let dup = Proc::worker(&address, via(1), Some(1));
    let line = dup.line();
    let why = line["refused"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(why.contains("rank 1 is already held"), "{why}");
    let out = Proc::worker(&address, via(1), Some(9));
    let line = out.line();
    let why = line["refused"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(why.contains("rank 9 is out of range 0..4"), "{why}");
}

pub async fn gathers_by_rank(cohort: &LeaderWorkerCohort) {
    let outcomes: Vec<Result<String, _>> = cohort
        .gather_with("rank_echo", |rank| u64::from(rank) * 10)
        .await
        .unwrap();
    let texts: Vec<String> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(texts, ["0:0", "1:10", "2:20", "3:30"]);

    let outcomes: Vec<Result<u32, _>> = cohort.gather("fail_on", &2u32).await.unwrap();
    for (rank, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(RankError::Handler(why)) => {
                assert_eq!(rank, 2);
                assert!(why.contains("rank 2 fails"), "{why}");
            }
            Ok(r) => assert_eq!(*r as usize, rank),
            other => panic!("rank {rank}: {other:?}"),
        }
    }
    let some: Vec<Result<String, _>> = cohort
        .gather_from("rank_echo", &7u64, &[3, 0])
        .await
        .unwrap();
    assert_eq!(some[0].as_ref().unwrap(), "3:7");
    assert_eq!(some[1].as_ref().unwrap(), "0:7");
    let one: Result<String, _> = cohort.gather_rank("rank_echo", &5u64, 2).await.unwrap();
    assert_eq!(one.unwrap(), "2:5");
    let only: Vec<Result<Option<String>, _>> = cohort
        .gather_one_reply("rank_echo", &1u64, 3)
        .await
        .unwrap();
    assert_eq!(only[3].as_ref().unwrap().as_deref(), Some("3:1"));
    assert!(only[..3].iter().all(|o| matches!(o, Ok(None))));
    let firsts: Vec<Result<String, _>> =
        cohort.gather_first_k("rank_echo", &0u64, 2).await.unwrap();
    let answered = firsts.iter().filter(|o| o.is_ok()).count();
    let cancelled = firsts
        .iter()
        .filter(|o| matches!(o, Err(RankError::Cancelled)))
        .count();
    assert!(answered >= 2 && answered + cancelled == 4, "{firsts:?}");
    let sent = cohort.broadcast("rank_echo", &0u64).await.unwrap();
    assert!(sent.iter().all(Result::is_ok));
    let mapped = cohort
        .par_map(|t| async move {
            let who = t.client.active_message("whoami")?.payload(&())?;
            let who: String = who
                .expect_response()
                .send(t.instance)
                .await?
                .await_response()
                .await?;
            Ok((t.rank, who == t.instance.to_string()))
        })
        .await
        .unwrap();
    for (rank, m) in (0u32..).zip(&mapped) {
        assert_eq!(m.as_ref().unwrap(), &(rank, true));
    }
    let sent = cohort
        .broadcast_confirmed("rank_echo", &0u64)
        .await
        .unwrap();
    assert!(sent.iter().all(Result::is_ok));
    let has = cohort.await_handler_on_all_workers("whoami").await.unwrap();
    assert!(has.iter().all(|h| matches!(h, Ok(true))));
    let missing = cohort.gather::<_, String>("no_such", &()).await.unwrap();
    assert!(
        missing
            .iter()
            .all(|m| matches!(m, Err(RankError::NoSuchHandler(_))))
    );
}
