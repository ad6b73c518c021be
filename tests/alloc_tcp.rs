//! Heap allocations per message over TCP, on every thread of the process,
//! for every pattern: one-way (builder and prepared sender, async and
//! zero-copy handlers), confirmed, and request/response (synchronous and
//! async handlers). The server and client managers run on runtimes of their
//! own whose threads say which side they are; every other thread (libzmq's
//! I/O threads, each transport's own I/O thread) counts as "other", and all
//! three are asserted. Allocation counts do not depend on the machine's
//! speed.
//!
//! With `AM_ALLOC_TRACE=1` the allocations of each measured stretch are
//! printed with the thread that made them and a backtrace (the first few).
//!
//! Its own test binary: the allocator counts every thread of the process.

// For its allocator that calls this test's own counting function only.
#[path = "common/alloc_trace.rs"]
mod alloc_trace;
#[allow(dead_code)]
#[path = "common/counting.rs"]
mod counting;
#[path = "common/roles.rs"]
mod roles;
#[path = "common/sinks.rs"]
mod sinks;

use alloc_trace::{TRACE, TRACES};
use sinks::{Handled, register};

use roles::{CLIENT, OTHER, ROLE, SERVER, runtime, snapshot};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, TransportPolicy,
};
use bytes::Bytes;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: counting::CountingWith = counting::CountingWith(alloc_trace::count);

const WARM_UP: u64 = 1000;
const MESSAGES: u64 = 10_000;

/// At most this many allocations over a whole measured stretch, on the
/// server's threads and the I/O threads together, count as none per
/// message: one-off events (a thread's first wait on a lock registers it
/// with `parking_lot`) and the runtime's timers. One allocation per message
/// would be `MESSAGES`; one per 1000 messages would be 10.
const BACKGROUND: u64 = 8;

/// The client's threads may allocate this many. A one-way stream that finds
/// its link's queue full waits for room (about once per 512 messages: a
/// wait lasts until the I/O thread has taken half the queue), and such a
/// wait allocates nothing now (`alloc_wait_tcp.rs` makes every send wait);
/// what is left here are one-offs, a few per stretch.
const CLIENT_WAITS: u64 = MESSAGES / 200;

/// TCP only, without the shared-memory rendezvous: its listener accepts
/// (and allocates for) whatever other processes of the host connect to it,
/// which has nothing to do with the messages measured here.
fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(20))
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        .shm(false)
}

/// The server and client managers, each on its own runtime, over TCP.
struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    handled: Arc<Handled>,
    /// The payloads, made once (not in the measured stretches).
    raw: Bytes,
    typed: Vec<u8>,
}

/// What one measured stretch sends.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// Builder, `.execute()`, to `sink` (async) or `sink_zc` (zero-copy).
    OneWay { zero_copy: bool },
    /// A prepared `OneWaySender`, to `sink` or `sink_zc`.
    Prepared { zero_copy: bool },
    /// Builder, `.send(target)`: waits for the handler's acceptance.
    Confirmed { zero_copy: bool },
    /// Typed request and response through `echo64` or `echo64_async`.
    Request { handler: &'static str },
}

impl Sides {
    fn start() -> Self {
        ROLE.set(CLIENT);
        let server_rt = runtime(SERVER);
        let client_rt = runtime(CLIENT);
        let handled = Arc::new(Handled::default());
        let server = server_rt.block_on(async {
            let server = builder().build().await.unwrap();
            register(&server, &handled).await;
            server
        });
        let info = server_rt.block_on(server.peer_info());
        let client = client_rt.block_on(async {
            let client = builder().build().await.unwrap();
            client.client().connect_to_peer(info).await.unwrap();
            client
        });
        Self {
            server_rt,
            client_rt,
            server,
            client,
            handled,
            raw: Bytes::from(vec![5u8; 64]),
            typed: vec![5u8; 64],
        }
    }

    fn target(&self) -> InstanceId {
        self.server.instance_id()
    }

    /// Sends `n` messages of `pattern` and waits until the server ran them.
    fn run(&self, pattern: Pattern, n: u64) {
        let start = self.handled.now();
        let (raw, typed) = (&self.raw, &self.typed);
        let sink = |zero_copy| if zero_copy { "sink_zc" } else { "sink" };
        self.client_rt.block_on(async {
            let c = self.client.client();
            match pattern {
                Pattern::OneWay { zero_copy } => {
                    for _ in 0..n {
                        let m = c.active_message(sink(zero_copy)).unwrap();
                        let m = match zero_copy {
                            true => m.payload(typed).unwrap(),
                            false => m.raw_payload(raw.clone()),
                        };
                        m.target_instance(self.target()).execute().await.unwrap();
                    }
                }
                Pattern::Prepared { zero_copy } => {
                    let sender = c.one_way_sender(sink(zero_copy), self.target()).unwrap();
                    for _ in 0..n {
                        sender.send(typed).await.unwrap();
                    }
                }
                Pattern::Confirmed { zero_copy } => {
                    for _ in 0..n {
                        let m = c.active_message(sink(zero_copy)).unwrap();
                        m.payload(typed).unwrap().send(self.target()).await.unwrap();
                    }
                }
                Pattern::Request { handler } => {
                    for i in 0..n {
                        let input = [i as u8; 64];
                        let m = c.active_message(handler).unwrap().payload(&input).unwrap();
                        let status = m.expect_response::<[u8; 64]>().send(self.target());
                        let out = status.await.unwrap().await_response().await.unwrap();
                        assert_eq!(out, input);
                    }
                    return;
                }
            }
            self.handled.reach(start + n).await;
        });
    }

    /// Allocations per side of `MESSAGES` messages after a warm-up.
    fn measure(&self, pattern: Pattern) -> [u64; 3] {
        self.run(pattern, WARM_UP);
        let trace = std::env::var_os("AM_ALLOC_TRACE").is_some();
        TRACE.store(trace, Ordering::Relaxed);
        let before = snapshot();
        self.run(pattern, MESSAGES);
        let after = snapshot();
        TRACE.store(false, Ordering::Relaxed);
        let counts = [0, 1, 2].map(|i| after[i] - before[i]);
        eprintln!(
            "tcp {pattern:?}: allocations per message: server {:.4}, client {:.4}, other {:.4}",
            per_message(counts[SERVER]),
            per_message(counts[CLIENT]),
            per_message(counts[OTHER])
        );
        let traces = std::mem::take(&mut *TRACES.lock().unwrap());
        for trace in traces {
            eprintln!("{trace}");
        }
        counts
    }

    fn shutdown(self) {
        self.client_rt.block_on(self.client.shutdown()).unwrap();
        self.server_rt.block_on(self.server.shutdown()).unwrap();
    }
}

fn per_message(n: u64) -> f64 {
    n as f64 / MESSAGES as f64
}

#[test]
fn no_allocations_per_message_over_tcp_on_any_thread() {
    let sides = Sides::start();
    let patterns = [
        Pattern::OneWay { zero_copy: false },
        Pattern::OneWay { zero_copy: true },
        Pattern::Prepared { zero_copy: false },
        Pattern::Prepared { zero_copy: true },
        Pattern::Confirmed { zero_copy: false },
        Pattern::Confirmed { zero_copy: true },
        Pattern::Request { handler: "echo64" },
        Pattern::Request {
            handler: "echo64_async",
        },
    ];
    let counts: Vec<_> = patterns.iter().map(|&p| (p, sides.measure(p))).collect();
    sides.shutdown();
    for (pattern, counts) in counts {
        assert!(
            counts[SERVER] + counts[OTHER] <= BACKGROUND,
            "tcp {pattern:?}: {} allocations on the server and {} on the I/O threads \
             for {MESSAGES} messages",
            counts[SERVER],
            counts[OTHER]
        );
        assert!(
            counts[CLIENT] <= CLIENT_WAITS,
            "tcp {pattern:?}: {} allocations on the client for {MESSAGES} messages",
            counts[CLIENT]
        );
    }
}
