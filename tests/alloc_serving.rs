//! Heap allocations per message on the serving side, per pattern and handler
//! kind, counted by a global allocator that tags each thread with the
//! manager it works for: the server manager and the client manager run on
//! runtimes of their own, whose threads say which side they are. Threads of
//! neither runtime (libzmq's and the ZeroMQ transport's I/O threads) count
//! as "other". Allocation counts do not depend on the machine's speed.
//!
//! Its own test binary: the allocator counts every thread of the process.

// For its allocator that calls this test's own counting function only.
#[allow(dead_code)]
#[path = "common/counting.rs"]
mod counting;
#[path = "common/roles.rs"]
mod roles;

use roles::{CLIENT, OTHER, ROLE, SERVER, runtime, snapshot};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{
    ArchivedContext, TypedContext, am_handler, archived_unary_handler, typed_unary_handler,
    typed_unary_handler_async,
};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, TransportPolicy,
};
use bytes::Bytes;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: counting::CountingWith = counting::CountingWith(roles::count);

const WARM_UP: u64 = 300;
const MESSAGES: u64 = 2000;

/// Allocations on each side over one measured stretch.
#[derive(Clone, Copy, Debug)]
struct Tally {
    client: u64,
    /// Of `client`, those made while one-way loops sent.
    sending: u64,
    server: u64,
    other: u64,
}

/// The server and client managers, each on its own runtime.
struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    handled: Arc<AtomicU64>,
    /// While false, `sink_gated` holds the server's reader (the ring fills).
    gate: Arc<AtomicBool>,
    /// The client's allocations while its one-way loops sent (not while
    /// they polled for the server's count afterwards).
    sending: AtomicU64,
}

fn builder(tcp: bool) -> ActiveMessageManagerBuilder {
    let base = ActiveMessageManagerBuilder::new().default_timeout(Duration::from_secs(20));
    match tcp {
        true => base
            .endpoint("tcp://127.0.0.1:0")
            .transport_policy(TransportPolicy::TcpOnly),
        false => base
            .endpoint("local://")
            .transport_policy(TransportPolicy::ShmOnly),
    }
}

async fn register(server: &ActiveMessageManager, handled: &Arc<AtomicU64>, gate: &Arc<AtomicBool>) {
    let (h, g) = (Arc::clone(handled), Arc::clone(gate));
    let gated = archived_unary_handler("sink_gated", move |c: ArchivedContext<'_, Vec<u8>>| {
        // Acquire: pairs with the Release store that opens the gate.
        while !g.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        std::hint::black_box(c.input.len());
        h.fetch_add(1, Ordering::Release);
        Ok(())
    });
    server.register_handler("sink_gated", gated).await.unwrap();
    let h = Arc::clone(handled);
    let sink = am_handler("sink", move |_ctx| {
        let h = Arc::clone(&h);
        async move {
            h.fetch_add(1, Ordering::Release);
            Ok(())
        }
    });
    let h = Arc::clone(handled);
    let sink_zc = archived_unary_handler("sink_zc", move |c: ArchivedContext<'_, Vec<u8>>| {
        std::hint::black_box(c.input.len());
        h.fetch_add(1, Ordering::Release);
        Ok(())
    });
    let echo = typed_unary_handler("echo64", |c: TypedContext<[u8; 64]>| Ok(c.input));
    let echo_async =
        typed_unary_handler_async("echo64_async", |c: TypedContext<[u8; 64]>| async move {
            Ok(c.input)
        });
    for (name, handler) in [
        ("sink", sink),
        ("sink_zc", sink_zc),
        ("echo64", echo),
        ("echo64_async", echo_async),
    ] {
        server.register_handler(name, handler).await.unwrap();
    }
}

impl Sides {
    fn start(tcp: bool) -> Self {
        ROLE.set(CLIENT);
        let server_rt = runtime(SERVER);
        let client_rt = runtime(CLIENT);
        let handled = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(AtomicBool::new(true));
        let server = server_rt.block_on(async {
            let server = builder(tcp).build().await.unwrap();
            register(&server, &handled, &gate).await;
            server
        });
        let info = server_rt.block_on(server.peer_info());
        let client = client_rt.block_on(async {
            let client = builder(tcp).build().await.unwrap();
            client.client().connect_to_peer(info).await.unwrap();
            client
        });
        Self {
            server_rt,
            client_rt,
            server,
            client,
            handled,
            gate,
            sending: AtomicU64::new(0),
        }
    }

    fn target(&self) -> InstanceId {
        self.server.instance_id()
    }

    /// Sends `n` one-way messages to `sink` (raw 64 B) or `sink_zc` (an
    /// archived 64-byte vector) and waits until the server handled them all.
    fn one_way(&self, n: u64, zero_copy: bool) {
        let start = self.handled.load(Ordering::Acquire);
        let raw = Bytes::from(vec![5u8; 64]);
        let typed = vec![5u8; 64];
        self.client_rt.block_on(async {
            let c = self.client.client();
            let before = snapshot()[CLIENT];
            for _ in 0..n {
                let m = c.active_message(if zero_copy { "sink_zc" } else { "sink" });
                let m = m.unwrap();
                let m = match zero_copy {
                    true => m.payload(&typed).unwrap(),
                    false => m.raw_payload(raw.clone()),
                };
                m.target_instance(self.target()).execute().await.unwrap();
            }
            self.count_sending(before);
            // Waits on the handler's count, yielding between looks.
            while self.handled.load(Ordering::Acquire) < start + n {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        });
    }

    /// As [`Self::one_way`], through a prepared `OneWaySender` (made once
    /// per stretch, outside the messages).
    fn one_way_prepared(&self, n: u64, zero_copy: bool) {
        let start = self.handled.load(Ordering::Acquire);
        let body = vec![5u8; 64];
        self.client_rt.block_on(async {
            let c = self.client.client();
            let name = if zero_copy { "sink_zc" } else { "sink" };
            let sender = c.one_way_sender(name, self.target()).unwrap();
            let before = snapshot()[CLIENT];
            for _ in 0..n {
                match zero_copy {
                    true => sender.send(&body).await.unwrap(),
                    false => sender.send_raw(&body).await.unwrap(),
                }
            }
            self.count_sending(before);
            while self.handled.load(Ordering::Acquire) < start + n {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        });
    }

    /// As [`Self::one_way_prepared`], in batches of 64 (`send_batch` /
    /// `send_raw_batch`; the batches' values are made once per stretch).
    fn one_way_batched(&self, n: u64, zero_copy: bool) {
        let start = self.handled.load(Ordering::Acquire);
        let archived = vec![vec![5u8; 64]; 64];
        let raw = vec![[5u8; 64]; 64];
        self.client_rt.block_on(async {
            let c = self.client.client();
            let name = if zero_copy { "sink_zc" } else { "sink" };
            let sender = c.one_way_sender(name, self.target()).unwrap();
            let before = snapshot()[CLIENT];
            let mut left = n as usize;
            while left > 0 {
                let k = left.min(64);
                match zero_copy {
                    true => sender.send_batch(&archived[..k]).await.unwrap(),
                    false => sender.send_raw_batch(&raw[..k]).await.unwrap(),
                }
                left -= k;
            }
            self.count_sending(before);
            while self.handled.load(Ordering::Acquire) < start + n {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        });
    }

    /// `n` archived 64-byte vectors to `sink_gated` through a prepared sender
    /// (`prepared`) or the builder, with the server's reader held until the
    /// client's link has found its ring full and waited: the stretch runs
    /// through the full-ring path. Returns the ring waits it saw and the
    /// client's allocations while it sent (not while it waited for the
    /// server to count them: that polling loop's timers are the test's).
    fn one_way_through_full_ring(&self, n: u64, prepared: bool) -> (u64, u64) {
        let start = self.handled.load(Ordering::Acquire);
        let waits_before = self.full_waits();
        self.gate.store(false, Ordering::Release);
        let body = vec![5u8; 64];
        let sent = AtomicBool::new(false);
        let mut sending = 0;
        std::thread::scope(|scope| {
            // Opens the gate once the client waited, or sent everything
            // without waiting (a thread of neither side).
            scope.spawn(|| {
                while self.full_waits() == waits_before && !sent.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                // Release: pairs with the handler's Acquire load.
                self.gate.store(true, Ordering::Release);
            });
            self.client_rt.block_on(async {
                let c = self.client.client();
                let sender = c.one_way_sender("sink_gated", self.target()).unwrap();
                let before = snapshot()[CLIENT];
                for _ in 0..n {
                    match prepared {
                        true => sender.send(&body).await.unwrap(),
                        false => {
                            let m = c.active_message("sink_gated").unwrap();
                            let m = m.payload(&body).unwrap().target_instance(self.target());
                            m.execute().await.unwrap();
                        }
                    }
                }
                sending = snapshot()[CLIENT] - before;
                // Release: pairs with the watcher's Acquire load.
                sent.store(true, Ordering::Release);
                while self.handled.load(Ordering::Acquire) < start + n {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            });
        });
        (self.full_waits() - waits_before, sending)
    }

    /// Adds the client's allocations since `before` to `sending`.
    fn count_sending(&self, before: u64) {
        // Relaxed: read on this same thread by `measure`.
        self.sending
            .fetch_add(snapshot()[CLIENT] - before, Ordering::Relaxed);
    }

    /// Waits of the client's links for room in a full ring.
    fn full_waits(&self) -> u64 {
        let peers = self.client.stats().peers;
        peers.iter().map(|p| p.counters.ring_full_waits).sum()
    }

    /// `n` typed 64-byte requests to `handler`, each awaited.
    fn requests(&self, n: u64, handler: &str) {
        self.client_rt.block_on(async {
            let c = self.client.client();
            for i in 0..n {
                let input = [i as u8; 64];
                let out = c
                    .active_message(handler)
                    .unwrap()
                    .payload(&input)
                    .unwrap()
                    .expect_response::<[u8; 64]>()
                    .send(self.target())
                    .await
                    .unwrap()
                    .await_response()
                    .await
                    .unwrap();
                assert_eq!(out, input);
            }
        });
    }

    /// Allocations of `work(MESSAGES)` after `work(WARM_UP)`.
    fn measure(&self, mut work: impl FnMut(u64)) -> Tally {
        work(WARM_UP);
        let before = snapshot();
        let sending = self.sending.load(Ordering::Relaxed);
        work(MESSAGES);
        let after = snapshot();
        Tally {
            sending: self.sending.load(Ordering::Relaxed) - sending,
            other: after[OTHER] - before[OTHER],
            client: after[CLIENT] - before[CLIENT],
            server: after[SERVER] - before[SERVER],
        }
    }

    fn shutdown(self) {
        self.client_rt.block_on(self.client.shutdown()).unwrap();
        self.server_rt.block_on(self.server.shutdown()).unwrap();
    }
}

fn per_message(n: u64) -> f64 {
    n as f64 / MESSAGES as f64
}

fn report(case: &str, t: Tally) {
    eprintln!(
        "{case}: allocations per message: server {:.3}, client {:.3} ({:.3} while sending), \
         other {:.3}",
        per_message(t.server),
        per_message(t.client),
        per_message(t.sending),
        per_message(t.other)
    );
}

/// At most this many allocations over the whole measured stretch count as
/// none per message: the runtime's own timers (heartbeats, liveness probes)
/// allocate now and then, whatever the traffic. One allocation per message
/// would be `MESSAGES`.
const BACKGROUND: u64 = MESSAGES / 50;

/// Messages of the full-ring stretches: several ring-fulls.
const FULL_RING_MESSAGES: u64 = 30_000;

#[test]
fn serving_side_allocations_per_pattern() {
    let shm = Sides::start(false);
    let async_one_way = shm.measure(|n| shm.one_way(n, false));
    report("shm one-way, async am_handler", async_one_way);
    let zc_one_way = shm.measure(|n| shm.one_way(n, true));
    report("shm one-way, zero-copy handler", zc_one_way);
    let prep_one_way = shm.measure(|n| shm.one_way_prepared(n, false));
    report(
        "shm one-way, prepared sender, async am_handler",
        prep_one_way,
    );
    let prep_zc_one_way = shm.measure(|n| shm.one_way_prepared(n, true));
    report(
        "shm one-way, prepared sender, zero-copy handler",
        prep_zc_one_way,
    );
    let batch_one_way = shm.measure(|n| shm.one_way_batched(n, false));
    report(
        "shm one-way, batches of 64, async am_handler",
        batch_one_way,
    );
    let batch_zc_one_way = shm.measure(|n| shm.one_way_batched(n, true));
    report(
        "shm one-way, batches of 64, zero-copy handler",
        batch_zc_one_way,
    );
    // A default (1 MiB) ring holds several thousand such frames: the
    // stretch is long enough to fill it and wait for room more than once.
    let mut full = Vec::new();
    for prepared in [false, true] {
        shm.one_way_through_full_ring(FULL_RING_MESSAGES / 2, prepared);
        let before = snapshot();
        let (waits, client) = shm.one_way_through_full_ring(FULL_RING_MESSAGES, prepared);
        let after = snapshot();
        eprintln!(
            "shm one-way through a full ring (prepared: {prepared}): {waits} waits, \
             allocations per message: client {:.4} (while sending), server {:.4}",
            client as f64 / FULL_RING_MESSAGES as f64,
            (after[SERVER] - before[SERVER]) as f64 / FULL_RING_MESSAGES as f64
        );
        assert!(waits > 0, "the client never waited for room");
        full.push((prepared, client));
    }
    let sync_rt = shm.measure(|n| shm.requests(n, "echo64"));
    report("shm request, sync typed handler", sync_rt);
    let async_rt = shm.measure(|n| shm.requests(n, "echo64_async"));
    report("shm request, async typed handler", async_rt);
    shm.shutdown();

    let tcp = Sides::start(true);
    let tcp_one_way = tcp.measure(|n| tcp.one_way(n, false));
    report("tcp one-way, async am_handler", tcp_one_way);
    let tcp_prep_one_way = tcp.measure(|n| tcp.one_way_prepared(n, false));
    report("tcp one-way, prepared sender", tcp_prep_one_way);
    let tcp_rt = tcp.measure(|n| tcp.requests(n, "echo64"));
    report("tcp request, sync typed handler", tcp_rt);
    let tcp_async_rt = tcp.measure(|n| tcp.requests(n, "echo64_async"));
    report("tcp request, async typed handler", tcp_async_rt);
    tcp.shutdown();

    // Server side, per message: none for one-way messages (any handler kind,
    // either transport) and for requests, synchronous or async, over either
    // transport (an async request's cancellation slot is reused, its token
    // made only if the handler asks for it).
    for (case, t) in [
        ("shm one-way async", async_one_way),
        ("shm one-way zero-copy", zc_one_way),
        ("shm one-way prepared", prep_one_way),
        ("shm one-way batches", batch_one_way),
        ("shm one-way batches zero-copy", batch_zc_one_way),
        ("shm request sync", sync_rt),
        ("shm request async", async_rt),
        ("tcp one-way async", tcp_one_way),
        ("tcp request sync", tcp_rt),
        ("tcp request async", tcp_async_rt),
    ] {
        assert!(
            t.server <= BACKGROUND,
            "{case}: {:.3} allocations per message on the server",
            per_message(t.server)
        );
    }
    // The client of a TCP request allocates nothing per call either, nor do
    // the I/O threads (ours and libzmq's).
    assert!(
        tcp_rt.client + tcp_rt.other <= BACKGROUND,
        "tcp request: {:.3} on the client, {:.3} on other threads",
        per_message(tcp_rt.client),
        per_message(tcp_rt.other)
    );
    // Client side, per one-way message: none, through the builder or a
    // prepared sender, over shm and over TCP (the ZeroMQ link's queue to its
    // I/O thread is preallocated). The I/O threads of a TCP one-way stream
    // are held to none per message in tests/alloc_tcp.rs.
    for (case, t) in [
        ("shm one-way async", async_one_way),
        ("shm one-way zero-copy", zc_one_way),
        ("shm one-way prepared", prep_one_way),
        ("shm one-way prepared zero-copy", prep_zc_one_way),
        ("shm one-way batches", batch_one_way),
        ("shm one-way batches zero-copy", batch_zc_one_way),
        ("tcp one-way async", tcp_one_way),
        ("tcp one-way prepared", tcp_prep_one_way),
    ] {
        assert!(
            t.sending <= BACKGROUND,
            "{case}: {:.3} allocations per message on the client",
            per_message(t.sending)
        );
    }
    // Waiting for room in a full ring allocates nothing either (the sender
    // waits in its own future: `PeerLink::poll_writable`; tests/alloc_wait.rs
    // makes every send wait).
    for (prepared, client) in full {
        assert!(
            client <= BACKGROUND,
            "through a full ring (prepared: {prepared}): {client} allocations \
             on the client for {FULL_RING_MESSAGES} messages"
        );
    }
}
