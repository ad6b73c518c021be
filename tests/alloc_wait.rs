//! Heap allocations on the client while its sends wait for room on a full
//! shared-memory link, counted by a global allocator that tags each thread
//! with the manager it works for (as in `alloc_serving.rs`).
//!
//! The server's handlers run in place on its reader and each takes a ticket
//! before it returns; a controller thread (of neither side) hands out one
//! ticket at a time, and only while the client's sends are blocked. So the
//! link is full whenever the client writes past it, and every stretch runs
//! through the waiting path again and again, whatever the machine's speed:
//! - 64 B one-way messages through the builder and a prepared sender, in a
//!   ring of 512 bytes (three such frames);
//! - 1 MiB one-way messages in 4 MiB rings (a ring record each), and
//!   through the pooled area of a default ring (an area of 8 MiB);
//! - requests and confirmed sends, eight at once into the small ring.
//!
//! Asserted: the client waited, and allocated nothing while it did. Its own
//! test binary: the allocator counts every thread of the process.

// For its allocator that calls this test's own counting function only.
#[allow(dead_code)]
#[path = "common/counting.rs"]
mod counting;
#[path = "common/gate.rs"]
mod gate;
#[path = "common/roles.rs"]
mod roles;

use gate::{Gate, observed};
use roles::{CLIENT, ROLE, SERVER, runtime, snapshot};

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use active_message::handler_impls::{TypedContext, typed_unary_handler, unary_handler};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, ShmConfig, TransportPolicy,
};
use bytes::Bytes;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: counting::CountingWith = counting::CountingWith(roles::count);

fn client_allocations() -> u64 {
    snapshot()[CLIENT]
}

struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    gate: Arc<Gate>,
}

fn builder(config: ShmConfig) -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(30))
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .shm_config(config)
}

impl Sides {
    fn start(config: ShmConfig) -> Self {
        ROLE.set(CLIENT);
        let server_rt = runtime(SERVER);
        let client_rt = runtime(CLIENT);
        let gate = Arc::new(Gate::default());
        let server = server_rt.block_on(async {
            let server = builder(config.clone()).build().await.unwrap();
            let g = Arc::clone(&gate);
            let sink = unary_handler("gated_sink", move |_| {
                g.take();
                Ok(None)
            });
            server.register_handler("gated_sink", sink).await.unwrap();
            let g = Arc::clone(&gate);
            let echo = typed_unary_handler("gated_echo", move |c: TypedContext<[u8; 64]>| {
                g.take();
                Ok(c.input)
            });
            server.register_handler("gated_echo", echo).await.unwrap();
            server
        });
        let info = server_rt.block_on(server.peer_info());
        let client = client_rt.block_on(async {
            let client = builder(config).build().await.unwrap();
            client.client().connect_to_peer(info).await.unwrap();
            client
        });
        Self {
            server_rt,
            client_rt,
            server,
            client,
            gate,
        }
    }

    fn target(&self) -> InstanceId {
        self.server.instance_id()
    }

    /// Runs `send` (on the client, the gate closed) beside the controller;
    /// returns the client's allocations while it ran.
    fn gated(&self, send: impl Future<Output = ()>) -> u64 {
        let gate = &*self.gate;
        gate.set_open(false);
        std::thread::scope(|scope| {
            scope.spawn(|| gate.control());
            // Counted inside: `block_on` boxes a future as large as this one.
            let spent = self.client_rt.block_on(async {
                let before = client_allocations();
                send.await;
                client_allocations() - before
            });
            // Release: pairs with the handler's and controller's Acquire loads.
            gate.set_open(true);
            spent
        })
    }

    /// `n` one-way messages of `payload` to `gated_sink`, through a
    /// prepared sender or the builder; returns (sends that waited,
    /// allocations).
    fn one_way(&self, n: u64, payload: &Bytes, prepared: bool) -> (u64, u64) {
        let waits = Cell::new(0);
        let c = self.client.client();
        let sender = c.one_way_sender("gated_sink", self.target()).unwrap();
        // One clone made ahead: the first clone of a `Bytes` from a `Vec`
        // allocates its shared owner.
        drop(payload.clone());
        let spent = self.gated(async {
            for _ in 0..n {
                let sent = match prepared {
                    true => observed(sender.send_raw(payload), &self.gate, &waits).await,
                    false => {
                        let m = c.active_message("gated_sink").unwrap();
                        let m = m
                            .raw_payload(payload.clone())
                            .target_instance(self.target());
                        observed(m.execute(), &self.gate, &waits).await
                    }
                };
                sent.unwrap();
            }
        });
        (waits.get(), spent)
    }

    /// `rounds` of eight requests (`confirmed`: confirmed sends) polled
    /// together into the small ring; returns (ring waits, allocations).
    fn calls(&self, rounds: u64, confirmed: bool) -> (u64, u64) {
        let c = self.client.client();
        let target = self.target();
        let call = |i: u8| {
            let c = &c;
            async move {
                let input = [i; 64];
                let m = c.active_message("gated_echo").unwrap();
                let m = m.payload(&input).unwrap();
                if confirmed {
                    m.send(target).await.unwrap();
                } else {
                    let status = m.expect_response::<[u8; 64]>().send(target).await.unwrap();
                    assert_eq!(status.await_response().await.unwrap(), [i; 64]);
                }
            }
        };
        let waits_before = self.ring_waits();
        let unused = Cell::new(0);
        let spent = self.gated(async {
            for _ in 0..rounds {
                let all = async {
                    tokio::join!(
                        call(0),
                        call(1),
                        call(2),
                        call(3),
                        call(4),
                        call(5),
                        call(6),
                        call(7)
                    );
                };
                observed(all, &self.gate, &unused).await;
            }
        });
        (self.ring_waits() - waits_before, spent)
    }

    /// Waits of the client's links for room in a full ring.
    fn ring_waits(&self) -> u64 {
        let peers = self.client.stats().peers;
        peers.iter().map(|p| p.counters.ring_full_waits).sum()
    }

    fn shutdown(self) {
        self.client_rt.block_on(self.client.shutdown()).unwrap();
        self.server_rt.block_on(self.server.shutdown()).unwrap();
    }
}

/// Allocations a stretch may make whatever its length: a buffer that grows
/// once more. Per message, none.
const ONE_OFF: u64 = 1;

/// Calls in flight at once in the concurrent cases. Each may take a reply
/// buffer of its own the first time that many replies are held at once,
/// which a loaded host can leave to the measured stretch rather than the
/// warm-up: a one-off per call in flight, not a cost per message.
const IN_FLIGHT: u64 = 8;

/// Asserts the stretch waited and allocated nothing per message on the
/// client (at most `one_off` whatever its length).
fn check(case: &str, n: u64, one_off: u64, (waits, spent): (u64, u64)) {
    eprintln!("{case}: {waits} waits for room, {spent} allocations on the client for {n} messages");
    assert!(waits > 0, "{case}: the client never waited for room");
    assert!(
        spent <= one_off,
        "{case}: {spent} allocations on the client while it waited"
    );
}

/// One test: the allocator's tally is per thread role, and a second test
/// running beside it would count as the same roles.
#[test]
fn senders_wait_for_room_without_allocating() {
    small_frames();
    large_frames();
}

fn small_frames() {
    let sides = Sides::start(ShmConfig::default().with_ring_capacity(512));
    let payload = Bytes::from(vec![7u8; 64]);
    for prepared in [false, true] {
        // Warm-up: the doorbell's registration, the runtime's first timers.
        sides.one_way(200, &payload, prepared);
        let n = 2000;
        let case = format!("64 B one-way, small ring (prepared: {prepared})");
        check(&case, n, ONE_OFF, sides.one_way(n, &payload, prepared));
    }
    for confirmed in [false, true] {
        // Warm-up: long enough for the tables of calls in flight to reach
        // the size eight calls at once need (they grow once, on a peak).
        sides.calls(200, confirmed);
        let rounds = 100;
        let case = format!("eight calls at once, small ring (confirmed: {confirmed})");
        check(
            &case,
            rounds * IN_FLIGHT,
            IN_FLIGHT,
            sides.calls(rounds, confirmed),
        );
    }
    sides.shutdown();
}

fn large_frames() {
    let payload = Bytes::from(vec![7u8; 1 << 20]);
    let cases = [
        (
            "1 MiB one-way, 4 MiB rings",
            ShmConfig::default().with_ring_capacity(4 << 20),
        ),
        (
            "1 MiB one-way, pooled area of 8 MiB",
            ShmConfig::default().with_pool_cap(8 << 20),
        ),
    ];
    for (name, config) in cases {
        let sides = Sides::start(config);
        for prepared in [false, true] {
            // Warm-up: the pool maps its segments, the rings their pages.
            sides.one_way(40, &payload, prepared);
            let n = 200;
            let case = format!("{name} (prepared: {prepared})");
            check(&case, n, ONE_OFF, sides.one_way(n, &payload, prepared));
        }
        sides.shutdown();
    }
}
