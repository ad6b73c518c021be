//! Heap allocations per message on an in-process link (the loopback
//! transport between two managers of one process, endpoint `local://`), on
//! every thread of the process, for every pattern: one-way (builder and
//! prepared sender, async and zero-copy handlers), confirmed, and
//! request/response (synchronous and async handlers). The server and client
//! managers run on runtimes of their own whose threads say which side they
//! are; every other thread counts as "other". A handler the idle server runs
//! in place runs on the sending thread, so its allocations count for the
//! client. Allocation counts do not depend on the machine's speed.
//!
//! Each stretch is counted inside the client's future, after its prepared
//! sender exists and until the server has handled every message, so the
//! count holds the messages' own allocations only; the asserted bound is
//! none per message (a few one-offs per stretch, named at [`ONE_OFFS`]).
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

use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, OneWaySender};
use bytes::Bytes;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: counting::CountingWith = counting::CountingWith(alloc_trace::count);

const WARM_UP: u64 = 1000;
const MESSAGES: u64 = 10_000;

/// At most this many allocations over a whole measured stretch, on each
/// side, count as none per message (one per message would be `MESSAGES`):
/// one-off events that a busy machine brings about now and then, and that
/// do not grow with the stretch (60 000 messages show no more than 10 000):
/// the receive arena of the link's router taking a fresh 64 KiB chunk (the
/// chunk and its shared header) while each chunk it keeps still holds a
/// frame that lives on, until it holds its full set of spares; tokio's list
/// of deferred wake-ups growing in a worker that yields for the first time
/// under load; `parking_lot` registering a thread the first time it waits
/// on a contended lock.
const ONE_OFFS: u64 = 8;

/// In process only, without the shared-memory rendezvous (its listener
/// would allocate for whatever other processes of the host connect to it).
fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(20))
        .endpoint("local://")
        .shm(false)
}

/// The server and client managers, each on its own runtime, in process.
struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    handled: Arc<Handled>,
    /// Prepared senders to `sink` and `sink_zc`, made once.
    senders: [OneWaySender; 2],
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
        let target = server.instance_id();
        let senders = ["sink", "sink_zc"].map(|sink| {
            let c = client.client();
            client_rt.block_on(async { c.one_way_sender(sink, target).unwrap() })
        });
        Self {
            senders,
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

    /// Sends `n` messages of `pattern`, waits until the server ran them
    /// and returns the allocations meanwhile, per side.
    fn run(&self, pattern: Pattern, n: u64, trace: bool) -> [u64; 3] {
        let start = self.handled.now();
        let (raw, typed) = (&self.raw, &self.typed);
        let sink = |zero_copy| if zero_copy { "sink_zc" } else { "sink" };
        let target = self.target();
        let c = self.client.client();
        // Counted inside: `block_on` boxes a future as large as this one.
        self.client_rt.block_on(async {
            let before = snapshot();
            TRACE.store(trace, Ordering::Relaxed);
            match pattern {
                Pattern::OneWay { zero_copy } => {
                    for _ in 0..n {
                        let m = c.active_message(sink(zero_copy)).unwrap();
                        let m = match zero_copy {
                            true => m.payload(typed).unwrap(),
                            false => m.raw_payload(raw.clone()),
                        };
                        m.target_instance(target).execute().await.unwrap();
                    }
                }
                Pattern::Prepared { zero_copy } => {
                    let sender = &self.senders[usize::from(zero_copy)];
                    for _ in 0..n {
                        sender.send(typed).await.unwrap();
                    }
                }
                Pattern::Confirmed { zero_copy } => {
                    for _ in 0..n {
                        let m = c.active_message(sink(zero_copy)).unwrap();
                        m.payload(typed).unwrap().send(target).await.unwrap();
                    }
                }
                Pattern::Request { handler } => {
                    for i in 0..n {
                        let input = [i as u8; 64];
                        let m = c.active_message(handler).unwrap().payload(&input).unwrap();
                        let status = m.expect_response::<[u8; 64]>().send(target);
                        let out = status.await.unwrap().await_response().await.unwrap();
                        assert_eq!(out, input);
                    }
                }
            }
            if !matches!(pattern, Pattern::Request { .. }) {
                self.handled.reach(start + n).await;
            }
            TRACE.store(false, Ordering::Relaxed);
            let after = snapshot();
            [0, 1, 2].map(|i| after[i] - before[i])
        })
    }

    /// Allocations per side of `MESSAGES` messages after a warm-up.
    fn measure(&self, pattern: Pattern) -> [u64; 3] {
        self.run(pattern, WARM_UP, false);
        let trace = std::env::var_os("AM_ALLOC_TRACE").is_some();
        let counts = self.run(pattern, MESSAGES, trace);
        eprintln!(
            "local {pattern:?}: allocations {counts:?} (other, client, server); per message: \
             server {:.4}, client {:.4}, other {:.4}",
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
fn no_allocations_per_message_in_process_on_any_thread() {
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
            counts.iter().all(|&n| n <= ONE_OFFS),
            "local {pattern:?}: {counts:?} allocations (other, client, server) \
             for {MESSAGES} messages"
        );
    }
}
