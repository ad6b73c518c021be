//! The cohort tests' child processes: this test binary run again as a worker
//! (or a leader), reporting on stdout as JSON lines.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use active_message::cohort::{CohortConfig, LeaderWorkerCohort, join_cohort};
use active_message::handler_impls::{TypedContext, typed_unary_handler, typed_unary_handler_async};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, TransportPolicy};
use serde_json::{Value, json};

pub const ROLE: &str = "AM_COHORT_ROLE";
pub const LEADER: &str = "AM_COHORT_LEADER";
pub const RANK: &str = "AM_COHORT_RANK";
pub const FLAVOR: &str = "AM_COHORT_FLAVOR";

/// How a worker reaches its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Shm,
    Tcp,
}

/// The leader: TCP and shared memory both, so ranks can use either.
pub async fn leader_manager() -> ActiveMessageManager {
    ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .default_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// A worker's manager for `via`: only that transport.
pub async fn worker_manager(via: Via) -> ActiveMessageManager {
    let base = ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5));
    match via {
        Via::Shm => base
            .endpoint("local://")
            .transport_policy(TransportPolicy::ShmOnly),
        Via::Tcp => base
            .endpoint("tcp://127.0.0.1:0")
            .shm(false)
            .transport_policy(TransportPolicy::TcpOnly),
    }
    .build()
    .await
    .unwrap()
}

/// The address a worker over `via` is given.
pub async fn address(leader: &ActiveMessageManager, via: Via) -> String {
    let info = leader.peer_info().await;
    match via {
        Via::Shm => info.shm_endpoint.expect("shm endpoint"),
        Via::Tcp => info.tcp_endpoint.expect("tcp endpoint"),
    }
}

/// The worker's handlers: `rank_echo` (u64 -> "rank:input"), `fail_on`
/// (u32 r: fails at rank r), `whoami` (() -> instance id), `nap` (u64 ms:
/// tells the leader's `arrive` first, then sleeps), `hold` (waits at the
/// leader's `barrier`, then sleeps until cancelled).
async fn register_worker_handlers(manager: &ActiveMessageManager, rank: Arc<AtomicU32>) {
    let r = Arc::clone(&rank);
    let echo = typed_unary_handler("rank_echo", move |c: TypedContext<u64>| {
        Ok(format!("{}:{}", r.load(Ordering::Relaxed), c.input))
    });
    let r = Arc::clone(&rank);
    let fail = typed_unary_handler("fail_on", move |c: TypedContext<u32>| {
        let me = r.load(Ordering::Relaxed);
        if me == c.input {
            Err(format!("rank {me} fails on purpose"))
        } else {
            Ok(me)
        }
    });
    let id = manager.instance_id().to_string();
    let whoami = typed_unary_handler("whoami", move |_: TypedContext<()>| Ok(id.clone()));
    let nap = typed_unary_handler_async("nap", |c: TypedContext<u64>| async move {
        tell(&c, "arrive").await?;
        tokio::time::sleep(Duration::from_millis(c.input)).await;
        Ok(c.input)
    });
    let hold = typed_unary_handler_async("hold", |c: TypedContext<()>| async move {
        tell(&c, "barrier").await?;
        c.cancel.cancelled().await;
        Ok(0u64)
    });
    for (name, h) in [
        ("rank_echo", echo),
        ("fail_on", fail),
        ("whoami", whoami),
        ("nap", nap),
        ("hold", hold),
    ] {
        manager.register_handler(name, h).await.unwrap();
    }
}

/// Calls the leader's handler `name` (the caller is the leader).
async fn tell<I>(c: &TypedContext<I>, name: &str) -> Result<u64, String> {
    let call = async {
        c.client
            .active_message(name)?
            .payload(&())?
            .timeout(Duration::from_secs(60))
            .expect_response::<u64>()
            .send(c.sender_id)
            .await?
            .await_response()
            .await
    };
    call.await.map_err(|e| e.to_string())
}

/// Child role: a worker that joins, reports, and waits for its membership to end.
pub async fn run_worker() {
    let via = match std::env::var(FLAVOR).as_deref() {
        Ok("tcp") => Via::Tcp,
        _ => Via::Shm,
    };
    let leader = std::env::var(LEADER).unwrap();
    let rank = std::env::var(RANK).ok().map(|r| r.parse().unwrap());
    let manager = worker_manager(via).await;
    let my_rank = Arc::new(AtomicU32::new(u32::MAX));
    register_worker_handlers(&manager, Arc::clone(&my_rank)).await;
    let instance = manager.instance_id().to_string();
    let membership = match join_cohort(&manager, &leader, rank).await {
        Ok(m) => m,
        Err(err) => {
            say(json!({"instance": instance, "refused": err.to_string()}));
            manager.shutdown().await.unwrap();
            return;
        }
    };
    my_rank.store(membership.rank(), Ordering::Relaxed);
    say(json!({"instance": instance, "joined": membership.rank()}));
    let how = membership.ended().await;
    say(json!({"ended": format!("{how:?}"), "status": format!("{:?}", membership.status())}));
    drop(membership);
    manager.shutdown().await.unwrap();
}

/// Child role: a leader of `AM_COHORT_RANK` ranks that prints its addresses.
pub async fn run_leader() {
    let size = std::env::var(RANK).unwrap().parse().unwrap();
    let manager = leader_manager().await;
    let cohort = LeaderWorkerCohort::new(&manager, CohortConfig::new(size))
        .await
        .unwrap();
    say(
        json!({"shm": address(&manager, Via::Shm).await, "tcp": address(&manager, Via::Tcp).await}),
    );
    cohort.wait_for_workers().await.unwrap();
    say(json!({"all_joined": size}));
    std::future::pending::<()>().await;
}

fn say(v: Value) {
    println!("{v}");
}

/// A child process and its JSON lines.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Proc {
    /// Runs this test binary's `test` with `env`.
    pub fn spawn(test: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", test, "--ignored", "--nocapture"])
            .stdout(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// A worker joining `leader` over `via`, at `rank` (or in join order).
    pub fn worker(leader: &str, via: Via, rank: Option<u32>) -> Self {
        let mut env = vec![
            (ROLE, "worker".to_owned()),
            (LEADER, leader.to_owned()),
            (
                FLAVOR,
                if via == Via::Tcp { "tcp" } else { "shm" }.to_owned(),
            ),
        ];
        if let Some(rank) = rank {
            env.push((RANK, rank.to_string()));
        }
        Self::spawn("cohort_child", &env)
    }

    /// The next JSON line (at most 60 s: a child that says nothing failed).
    pub fn line(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the child said nothing")
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit by itself; whether it succeeded. The
    /// minute is a ceiling for a hung child, not a measurement.
    pub fn exits_cleanly(&mut self) -> bool {
        for _ in 0..6000 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
