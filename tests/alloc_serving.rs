//! Heap allocations per message on the serving side, per pattern and handler
//! kind, counted by a global allocator that tags each thread with the
//! manager it works for: the server manager and the client manager run on
//! runtimes of their own, whose threads say which side they are. Threads of
//! neither runtime (libzmq's and the ZeroMQ transport's I/O threads) count
//! as "other". Allocation counts do not depend on the machine's speed.
//!
//! Its own test binary: the allocator counts every thread of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Which side a thread works for.
const OTHER: usize = 0;
const CLIENT: usize = 1;
const SERVER: usize = 2;

thread_local! {
    static ROLE: Cell<usize> = const { Cell::new(OTHER) };
}

static ALLOCATIONS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

struct Counting;

fn count() {
    // A thread being torn down has no role left: it counts as other.
    let role = ROLE.try_with(Cell::get).unwrap_or(OTHER);
    // Relaxed: a tally, read after the measured messages were handled.
    ALLOCATIONS[role].fetch_add(1, Ordering::Relaxed);
}

// SAFETY: forwards every call unchanged to the system allocator, which
// upholds `GlobalAlloc`'s contract; counting touches only a const-initialised
// thread-local cell and atomics, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout obligations pass straight through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator (i.e. from `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (i.e. from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: u64 = 300;
const MESSAGES: u64 = 2000;

/// Allocations on each side over one measured stretch.
#[derive(Clone, Copy, Debug)]
struct Tally {
    client: u64,
    server: u64,
    other: u64,
}

fn snapshot() -> [u64; 3] {
    [0, 1, 2].map(|i| ALLOCATIONS[i].load(Ordering::Relaxed))
}

fn runtime(role: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || ROLE.set(role))
        .build()
        .unwrap()
}

/// The server and client managers, each on its own runtime.
struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    handled: Arc<AtomicU64>,
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

async fn register(server: &ActiveMessageManager, handled: &Arc<AtomicU64>) {
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
        let server = server_rt.block_on(async {
            let server = builder(tcp).build().await.unwrap();
            register(&server, &handled).await;
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
            for _ in 0..n {
                let m = c.active_message(if zero_copy { "sink_zc" } else { "sink" });
                let m = m.unwrap();
                let m = match zero_copy {
                    true => m.payload(&typed).unwrap(),
                    false => m.raw_payload(raw.clone()),
                };
                m.target_instance(self.target()).execute().await.unwrap();
            }
            // Waits on the handler's count, yielding between looks.
            while self.handled.load(Ordering::Acquire) < start + n {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        });
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
        work(MESSAGES);
        let after = snapshot();
        Tally {
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
        "{case}: allocations per message: server {:.3}, client {:.3}, other {:.3}",
        per_message(t.server),
        per_message(t.client),
        per_message(t.other)
    );
}

/// At most this many allocations over the whole measured stretch count as
/// none per message: the runtime's own timers (heartbeats, liveness probes)
/// allocate now and then, whatever the traffic. One allocation per message
/// would be `MESSAGES`.
const BACKGROUND: u64 = MESSAGES / 50;

#[test]
fn serving_side_allocations_per_pattern() {
    let shm = Sides::start(false);
    let async_one_way = shm.measure(|n| shm.one_way(n, false));
    report("shm one-way, async am_handler", async_one_way);
    let zc_one_way = shm.measure(|n| shm.one_way(n, true));
    report("shm one-way, zero-copy handler", zc_one_way);
    let sync_rt = shm.measure(|n| shm.requests(n, "echo64"));
    report("shm request, sync typed handler", sync_rt);
    let async_rt = shm.measure(|n| shm.requests(n, "echo64_async"));
    report("shm request, async typed handler", async_rt);
    shm.shutdown();

    let tcp = Sides::start(true);
    let tcp_one_way = tcp.measure(|n| tcp.one_way(n, false));
    report("tcp one-way, async am_handler", tcp_one_way);
    let tcp_rt = tcp.measure(|n| tcp.requests(n, "echo64"));
    report("tcp request, sync typed handler", tcp_rt);
    let tcp_async_rt = tcp.measure(|n| tcp.requests(n, "echo64_async"));
    report("tcp request, async typed handler", tcp_async_rt);
    tcp.shutdown();

    // Server side, per message: none for one-way messages (any handler kind,
    // either transport) and for synchronous handlers over either transport.
    for (case, t) in [
        ("shm one-way async", async_one_way),
        ("shm one-way zero-copy", zc_one_way),
        ("shm request sync", sync_rt),
        ("tcp one-way async", tcp_one_way),
        ("tcp request sync", tcp_rt),
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
    // Still allocating, per message: an async request's cancellation token
    // (a tokio-util child token: 2), over either transport (its archived
    // response comes from a reused buffer, its running-call entry from the
    // table's spare room).
    for (case, t, most) in [
        ("shm request async", async_rt, 2),
        ("tcp request async", tcp_async_rt, 2),
    ] {
        assert!(
            t.server <= most * MESSAGES + BACKGROUND,
            "{case}: {:.3} allocations per message on the server, was {most}",
            per_message(t.server)
        );
    }
}
