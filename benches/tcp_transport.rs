//! Round-trip latency over TCP on loopback, measured in one run:
//! (a) a raw libzmq DEALER <-> ROUTER ping-pong between two threads (64 B),
//! (b) the transport: a 64 B `Request` through `PeerLink::send`, a server task
//!     that reads `Inbox::invocations` and answers through `reply_link`, and
//!     the caller's `on_reply` completing a tokio oneshot.
//!
//! Each side has its own thread (and, for (b), its own current-thread tokio
//! runtime and `ZmqTransport`), as two processes would. After criterion, the
//! bench also times single round trips and prints p50/p99 of each case.
//!
//! `cargo bench --bench tcp_transport`

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
use active_message::transport::{BoxedLink, Inbox, LinkEvents, OutFrame, ThinTransport};
use active_message::wire::{Header, Kind, ProtocolError};
use active_message::{InstanceId, MessageId};
use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;
use tokio::sync::oneshot;

const PAYLOAD: [u8; 64] = [0x5a; 64];
const MAX_FRAME: usize = 1 << 20;

// ------------------------------------------------------------ raw libzmq

struct RawPair {
    _ctx: zmq::Context,
    dealer: zmq::Socket,
    server: Option<std::thread::JoinHandle<()>>,
}

impl RawPair {
    fn start() -> Self {
        let server_ctx = zmq::Context::new();
        let router = server_ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let server = std::thread::spawn(move || {
            let mut identity = zmq::Message::new();
            let mut body = zmq::Message::new();
            loop {
                router.recv(&mut identity, 0).unwrap();
                router.recv(&mut body, 0).unwrap();
                if body.is_empty() {
                    break;
                }
                router.send(&*identity, zmq::SNDMORE).unwrap();
                router.send(&*body, 0).unwrap();
            }
            drop(router);
            drop(server_ctx);
        });
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.connect(&endpoint).unwrap();
        let mut pair = Self {
            _ctx: ctx,
            dealer,
            server: Some(server),
        };
        pair.round_trip(); // connected
        pair
    }

    fn round_trip(&mut self) {
        self.dealer.send(&PAYLOAD[..], 0).unwrap();
        let back = self.dealer.recv_bytes(0).unwrap();
        assert_eq!(back.len(), PAYLOAD.len());
    }
}

impl Drop for RawPair {
    fn drop(&mut self) {
        let _ = self.dealer.send(&b""[..], 0);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

// ------------------------------------------------------------ transport

/// Completes the waiting round trip when its reply arrives.
#[derive(Default)]
struct Replies {
    waiting: Mutex<Option<oneshot::Sender<()>>>,
}

impl LinkEvents for Replies {
    fn on_reply(&self, _header: &Header, payload: &[u8]) {
        debug_assert_eq!(payload.len(), PAYLOAD.len());
        if let Some(done) = self.waiting.lock().take() {
            let _ = done.send(());
        }
    }
    fn on_link_lost(&self, _peer: InstanceId) {
        // Seen at teardown, when the server says goodbye.
    }
    fn on_protocol_error(&self, _peer: Option<InstanceId>, error: &ProtocolError) {
        panic!("protocol error in bench: {error}");
    }
}

/// The caller's side: its link and the reply hook.
struct Caller {
    replies: Arc<Replies>,
    link: BoxedLink,
    local: InstanceId,
    next_id: u64,
}

impl Caller {
    async fn round_trip(&mut self) {
        self.next_id += 1;
        let (done, wait) = oneshot::channel();
        *self.replies.waiting.lock() = Some(done);
        let header = Header::new(Kind::Request, MessageId(self.next_id), self.local);
        let frame = OutFrame {
            header,
            name: "echo",
            payload: active_message::transport::PayloadRef::Bytes(&PAYLOAD),
        };
        self.link.send(frame).await.unwrap();
        wait.await.unwrap();
    }
}

struct AmPair {
    runtime: tokio::runtime::Runtime,
    client: Arc<ZmqTransport>,
    caller: Caller,
    server: Option<std::thread::JoinHandle<()>>,
    stop_server: Option<oneshot::Sender<()>>,
}

type Invocations = active_message::transport::InvocationReceiver;

/// A transport on loopback; `spin` overrides the I/O thread's spin setting.
fn transport(
    events: Arc<dyn LinkEvents>,
    spin: Option<Duration>,
) -> (Arc<ZmqTransport>, Invocations, InstanceId) {
    let id = InstanceId::new_random();
    let (tx, rx) = active_message::transport::invocation_queue(1024);
    let inbox = Inbox {
        inline: Default::default(),
        invocations: tx,
        events,
        max_frame: MAX_FRAME,
    };
    let mut config = ZmqConfig::new("tcp://127.0.0.1:0");
    if let Some(spin) = spin {
        config = config.spin(spin);
    }
    let t = ZmqTransport::bind(config, id, inbox).unwrap();
    (t, rx, id)
}

/// The server: answers every request with its own payload through `reply_link`.
async fn serve(
    server: Arc<ZmqTransport>,
    server_id: InstanceId,
    mut invocations: Invocations,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let inbound = tokio::select! {
            _ = &mut stop => break,
            inbound = invocations.recv() => match inbound {
                Some(inbound) => inbound,
                None => break,
            },
        };
        let mut header = Header::new(Kind::Response, inbound.header.message_id, server_id);
        header.correlation_id = inbound.header.message_id;
        let reply = OutFrame {
            header,
            name: "",
            payload: active_message::transport::PayloadRef::Bytes(inbound.payload()),
        };
        inbound.reply_link.send(reply).await.unwrap();
    }
    server.shutdown().await;
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl AmPair {
    fn start(spin: Option<Duration>) -> Self {
        let (server, invocations, server_id) = transport(Arc::new(Replies::default()), spin);
        let endpoint = server.local_endpoint().unwrap();
        let (stop_server, stop) = oneshot::channel::<()>();
        let server_thread = std::thread::spawn(move || {
            current_thread().block_on(serve(server, server_id, invocations, stop));
        });
        let runtime = current_thread();
        let replies = Arc::new(Replies::default());
        let (client, _unused_inbox, local) = transport(replies.clone(), spin);
        let link = runtime
            .block_on(client.connect(server_id, &endpoint))
            .unwrap();
        let mut caller = Caller {
            replies,
            link,
            local,
            next_id: 0,
        };
        runtime.block_on(caller.round_trip());
        Self {
            runtime,
            client,
            caller,
            server: Some(server_thread),
            stop_server: Some(stop_server),
        }
    }

    /// Runs `n` round trips on the client runtime; returns the total time.
    fn run(&mut self, n: u64) -> Duration {
        let caller = &mut self.caller;
        self.runtime.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                caller.round_trip().await;
            }
            start.elapsed()
        })
    }

    /// Times `n` single round trips.
    fn samples(&mut self, n: usize) -> Vec<Duration> {
        let caller = &mut self.caller;
        self.runtime.block_on(async {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                caller.round_trip().await;
                out.push(start.elapsed());
            }
            out
        })
    }
}

impl Drop for AmPair {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        let client = Arc::clone(&self.client);
        self.runtime.block_on(client.shutdown());
    }
}

// ------------------------------------------------------------ harness

fn percentiles(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<32} p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  (n = {})",
        at(0.5),
        at(0.9),
        at(0.99),
        samples.len()
    );
    at(0.5)
}

fn round_trips(c: &mut Criterion) {
    // RUST_LOG=active_message=info shows link events (a lost link, say).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let mut raw = RawPair::start();
    let mut am = AmPair::start(None);
    let mut group = c.benchmark_group("tcp_round_trip_64B");
    group.bench_function("raw_libzmq_dealer_router", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                raw.round_trip();
            }
            start.elapsed()
        });
    });
    group.bench_function("active_message_transport", |b| {
        b.iter_custom(|iters| am.run(iters));
    });
    group.finish();

    // Single round trips, interleaved in blocks so load drift hits every case
    // alike. AM_BENCH_SPINS=0,100 adds transports with those spin settings (µs);
    // the default config spins 50 µs after handing a frame to the application.
    let mut variants: Vec<(String, AmPair, Vec<Duration>)> =
        vec![("active-message (default)".to_owned(), am, Vec::new())];
    if let Ok(list) = std::env::var("AM_BENCH_SPINS") {
        for us in list.split(',').filter_map(|v| v.trim().parse::<u64>().ok()) {
            let pair = AmPair::start(Some(Duration::from_micros(us)));
            variants.push((format!("active-message (spin {us} µs)"), pair, Vec::new()));
        }
    }
    let mut raw_samples = Vec::new();
    for _ in 0..20 {
        for _ in 0..500 {
            let start = Instant::now();
            raw.round_trip();
            raw_samples.push(start.elapsed());
        }
        for (_, pair, samples) in &mut variants {
            samples.extend(pair.samples(500));
        }
    }
    println!("\nsingle round trips (same run, interleaved blocks of 500):");
    let raw_p50 = percentiles("raw libzmq", raw_samples);
    for (name, _, samples) in variants.iter_mut() {
        let p50 = percentiles(name, std::mem::take(samples));
        println!(
            "{:<28} ratio of medians to raw: {:.2}x",
            "",
            p50.as_secs_f64() / raw_p50.as_secs_f64()
        );
    }
    println!();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = round_trips
}
criterion_main!(benches);
