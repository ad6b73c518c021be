//! Round trip of a 64-byte typed echo between two managers over the
//! shared-memory transport, per wait policy, next to the bare ring's
//! ping-pong, all in one run.
//!
//! Each manager runs on its own single-threaded tokio runtime and OS thread,
//! as two processes would; the echo handler is a `typed_unary_handler`
//! (runs inline on the server's ring reader). Besides criterion's estimates,
//! each case prints the median and p99 of individually timed round trips.
//!
//! `cargo bench --bench shm_roundtrip`

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, NetworkClient, TransportPolicy,
    WaitPolicy,
};
use criterion::{Criterion, criterion_group, criterion_main};
use shm_ring::{Region, RegionLayout, RingConfig, init_ring, pair_at};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

type Msg = [u64; 8];
const MSG: Msg = [1, 2, 3, 4, 5, 6, 7, 8];
/// Round trips timed one by one for the printed median and p99.
const SAMPLES: usize = 20_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn builder(policy: WaitPolicy) -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .wait_policy(policy)
}

/// A server manager on its own thread and runtime; dropped, it shuts down.
struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

fn start_server(policy: WaitPolicy) -> (Server, active_message::PeerInfo) {
    let (info_tx, info_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        runtime().block_on(async move {
            let server = builder(policy).build().await.expect("server");
            server
                .register_handler(
                    "echo",
                    typed_unary_handler("echo", |c: TypedContext<Msg>| Ok(c.input)),
                )
                .await
                .expect("handler");
            info_tx.send(server.peer_info().await).expect("info");
            let _ = stopped.await;
            server.shutdown().await.expect("shutdown");
        });
    });
    let info = info_rx.recv().expect("server info");
    let server = Server {
        stop: Some(stop),
        thread: Some(thread),
    };
    (server, info)
}

async fn echo(client: &Arc<NetworkClient>, target: InstanceId) -> Msg {
    client
        .active_message("echo")
        .expect("name")
        .payload(&MSG)
        .expect("payload")
        .expect_response::<Msg>()
        .send(target)
        .await
        .expect("send")
        .await_response()
        .await
        .expect("response")
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    eprintln!(
        "{name}: median {:?}, p99 {:?} over {} round trips",
        at(0.5),
        at(0.99),
        times.len()
    );
}

fn am_roundtrip(c: &mut Criterion) {
    let mut group = c.benchmark_group("shm_roundtrip_64B");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let policies = [
        ("spin", WaitPolicy::Spin),
        (
            "adaptive",
            WaitPolicy::Adaptive {
                spin: active_message::transport::shm::DEFAULT_SPIN,
            },
        ),
        ("park", WaitPolicy::Park),
    ];
    for (name, policy) in policies {
        let (server, info) = start_server(policy);
        let rt = runtime();
        let target = info.instance_id;
        let manager: ActiveMessageManager = rt.block_on(async {
            let m = builder(policy).build().await.expect("client");
            m.client().connect_to_peer(info).await.expect("connect");
            m
        });
        let client = manager.client();
        group.bench_function(format!("am_{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(echo(&client, target).await);
                    }
                    start.elapsed()
                })
            })
        });
        let times = rt.block_on(async {
            let mut times = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                let t = Instant::now();
                black_box(echo(&client, target).await);
                times.push(t.elapsed());
            }
            times
        });
        report(&format!("am_{name}"), times);
        rt.block_on(manager.shutdown()).expect("client shutdown");
        drop(server);
    }
    group.finish();
}

fn ring_pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("shm_roundtrip_64B");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let cfg = RingConfig::new(1 << 16).expect("config");
    let layout = RegionLayout::new(&[cfg, cfg]);
    let region = Region::memfd("bench", layout.size()).expect("memfd");
    let (a, b) = (layout.offsets()[0], layout.offsets()[1]);
    init_ring(&region, a, cfg).expect("init");
    init_ring(&region, b, cfg).expect("init");
    let (mut ping_tx, mut ping_rx) = pair_at(&region, a).expect("ping");
    let (mut pong_tx, mut pong_rx) = pair_at(&region, b).expect("pong");
    ping_tx.set_policy(WaitPolicy::Spin);
    ping_rx.set_policy(WaitPolicy::Spin);
    pong_tx.set_policy(WaitPolicy::Spin);
    pong_rx.set_policy(WaitPolicy::Spin);
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match ping_rx.read_blocking(None) {
                Ok(g) => {
                    g.copy_to_slice(&mut buf);
                    g.release();
                }
                Err(_) => return,
            }
            if pong_tx.push_blocking(&buf, None).is_err() {
                return;
            }
        }
    });
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let mut round_trip = || {
        ping_tx.push_blocking(&msg, None).expect("push");
        let g = pong_rx.read_blocking(None).expect("read");
        g.copy_to_slice(&mut buf);
        g.release();
        black_box(&buf);
    };
    group.bench_function("ring_only_spin", |b| b.iter(&mut round_trip));
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        round_trip();
        times.push(t.elapsed());
    }
    report("ring_only_spin", times);
    drop(ping_tx);
    echo.join().expect("echo thread");
    group.finish();
}

criterion_group!(benches, ring_pingpong, am_roundtrip);
criterion_main!(benches);
