//! Heap allocations on the client while its sends wait for room on a full
//! in-process link (the loopback transport between two managers of one
//! process), counted by a global allocator that tags each thread with the
//! manager it works for (as in `alloc_wait.rs` and `alloc_wait_tcp.rs`).
//!
//! The server takes one invocation at a time into an inbox of two, and its
//! async handlers each take a ticket before they return; a controller
//! thread hands out one ticket at a time, and only while the client is
//! blocked (`common/gate.rs`). So the server's inbox is full whenever the
//! client writes past it, and every stretch runs through the waiting path
//! again and again: 64 B one-way messages through the builder and a
//! prepared sender; eight requests at once, then four confirmed sends and
//! four requests at once (the requests' futures end once their frame is
//! handed over, so their waits show the inbox was full as the round went
//! out).
//!
//! The in-process link allocates nothing per message once warm
//! (`alloc_local.rs` asserts that for every pattern). Asserted: the client
//! waited, and its waits added no allocation to what the same messages cost
//! without waiting. Its own test binary: the allocator counts every thread
//! of the process.

// For its allocator that calls this test's own counting function only.
#[allow(dead_code)]
#[path = "common/counting.rs"]
mod counting;
#[path = "common/gate.rs"]
mod gate;
#[path = "common/roles.rs"]
mod roles;

use gate::{Gate, counted, observed};
use roles::{CLIENT, ROLE, SERVER, runtime, snapshot};

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::handler_impls::{TypedContext, am_handler, typed_unary_handler_async};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, OneWaySender};
use bytes::Bytes;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: counting::CountingWith = counting::CountingWith(roles::count);

fn client_allocations() -> u64 {
    snapshot()[CLIENT]
}

/// Takes a ticket, unless the handler runs in place on the client's own
/// thread (an idle server may run a small one-way there): the client cannot
/// be blocked while it runs the handler itself.
fn held(gate: &Gate) {
    if ROLE.with(Cell::get) != CLIENT {
        gate.take();
    }
}

/// In process only; the server takes one invocation at a time into an
/// inbox of two.
fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(60))
        .endpoint("local://")
        .shm(false)
        .max_concurrent_handlers(1)
        .inbox_capacity(2)
}

struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    gate: Arc<Gate>,
    /// Messages the server's handlers finished.
    handled: Arc<AtomicU64>,
}

/// What one stretch sends.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// 64 B one-way, through the builder or a prepared sender.
    OneWay { prepared: bool },
    /// Eight calls at once: requests, or (`confirmed`) every other one a
    /// confirmed send.
    Calls { confirmed: bool },
}

impl Sides {
    fn start() -> Self {
        ROLE.set(CLIENT);
        let server_rt = runtime(SERVER);
        let client_rt = runtime(CLIENT);
        let gate = Arc::new(Gate::default());
        let handled = Arc::new(AtomicU64::new(0));
        let server = server_rt.block_on(async {
            let server = builder().build().await.unwrap();
            let (g, h) = (Arc::clone(&gate), Arc::clone(&handled));
            let sink = am_handler("gated_sink", move |_| {
                let (g, h) = (Arc::clone(&g), Arc::clone(&h));
                async move {
                    held(&g);
                    // Release: pairs with the client's Acquire load.
                    h.fetch_add(1, Ordering::Release);
                    Ok(())
                }
            });
            server.register_handler("gated_sink", sink).await.unwrap();
            let g = Arc::clone(&gate);
            let echo = typed_unary_handler_async("gated_echo", move |c: TypedContext<[u8; 64]>| {
                let g = Arc::clone(&g);
                async move {
                    held(&g);
                    Ok(c.input)
                }
            });
            server.register_handler("gated_echo", echo).await.unwrap();
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
            gate,
            handled,
        }
    }

    fn target(&self) -> InstanceId {
        self.server.instance_id()
    }

    /// Runs `send` on the client beside the controller, the gate closed
    /// (`gated`) or open; returns the client's allocations while it ran.
    fn stretch(&self, gated: bool, send: impl Future<Output = ()>) -> u64 {
        let gate = &*self.gate;
        gate.set_open(!gated);
        std::thread::scope(|scope| {
            scope.spawn(|| gate.control());
            // Counted inside: `block_on` boxes a future as large as this one.
            let spent = self.client_rt.block_on(async {
                let before = client_allocations();
                send.await;
                client_allocations() - before
            });
            gate.set_open(true);
            spent
        })
    }

    /// `n` messages (or rounds of eight calls) of `pattern`: behind the
    /// closed gate (`gated`), or else one at a time, each handled before
    /// the next is sent (so none waits); returns (sends that waited,
    /// allocations).
    fn run(&self, pattern: Pattern, n: u64, gated: bool) -> (u64, u64) {
        let waits = Cell::new(0);
        let spent = match pattern {
            Pattern::OneWay { prepared } => self.one_way(n, prepared, gated, &waits),
            Pattern::Calls { confirmed } => self.calls(n, confirmed, gated, &waits),
        };
        (waits.get(), spent)
    }

    fn one_way(&self, n: u64, prepared: bool, gated: bool, waits: &Cell<u64>) -> u64 {
        let payload = Bytes::from(vec![7u8; 64]);
        // One clone made ahead: the first clone of a `Bytes` from a `Vec`
        // allocates its shared owner.
        drop(payload.clone());
        let c = self.client.client();
        let sender: OneWaySender = c.one_way_sender("gated_sink", self.target()).unwrap();
        self.stretch(gated, async {
            for _ in 0..n {
                // Acquire: pairs with the handler's Release increment.
                let before = self.handled.load(Ordering::Acquire);
                let sent = match prepared {
                    true => observed(sender.send_raw(&payload), &self.gate, waits).await,
                    false => {
                        let m = c.active_message("gated_sink").unwrap();
                        let m = m
                            .raw_payload(payload.clone())
                            .target_instance(self.target());
                        observed(m.execute(), &self.gate, waits).await
                    }
                };
                sent.unwrap();
                if !gated {
                    self.handled_past(before).await;
                }
            }
        })
    }

    /// Waits until the server handled more than `before` messages.
    async fn handled_past(&self, before: u64) {
        // Acquire: pairs with the handler's Release increment.
        while self.handled.load(Ordering::Acquire) <= before {
            tokio::task::yield_now().await;
        }
    }

    fn calls(&self, rounds: u64, confirmed: bool, gated: bool, waits: &Cell<u64>) -> u64 {
        let c = self.client.client();
        let target = self.target();
        let call = |i: u8| {
            let c = &c;
            async move {
                let input = [i; 64];
                let m = c.active_message("gated_echo").unwrap();
                let m = m.payload(&input).unwrap();
                if confirmed && i.is_multiple_of(2) {
                    // Its future also waits for the handler's acceptance:
                    // the requests beside it count the waits for room.
                    m.send(target).await.unwrap();
                } else {
                    let sent = counted(m.expect_response::<[u8; 64]>().send(target), waits);
                    let status = sent.await.unwrap();
                    assert_eq!(status.await_response().await.unwrap(), [i; 64]);
                }
            }
        };
        let unused = Cell::new(0);
        self.stretch(gated, async {
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
                match gated {
                    true => observed(all, &self.gate, &unused).await,
                    // One at a time: each is answered before the next.
                    false => {
                        for i in 0..8 {
                            call(i).await;
                        }
                    }
                }
            }
        })
    }

    fn shutdown(self) {
        self.client_rt.block_on(self.client.shutdown()).unwrap();
        self.server_rt.block_on(self.server.shutdown()).unwrap();
    }
}

/// Allocations a stretch may make whatever its length: buffers that grow
/// once more on a client thread that first meets them in the stretch (the
/// link's receive arena taking a spare chunk, say).
const ONE_OFF: u64 = 4;

/// Messages per stretch (rounds of eight calls: an eighth as many).
const MESSAGES: u64 = 800;

/// One test: the allocator's tally is per thread role, and a second test
/// running beside it would count as the same roles.
#[test]
fn senders_wait_for_room_on_a_full_in_process_link_without_allocating() {
    let sides = Sides::start();
    let patterns = [
        Pattern::OneWay { prepared: false },
        Pattern::OneWay { prepared: true },
        Pattern::Calls { confirmed: false },
        Pattern::Calls { confirmed: true },
    ];
    for pattern in patterns {
        let n = match pattern {
            Pattern::OneWay { .. } => MESSAGES,
            Pattern::Calls { .. } => MESSAGES / 8,
        };
        // Warm-up, both ways: the tables and buffers reach their sizes.
        sides.run(pattern, n / 4, true);
        sides.run(pattern, n / 4, false);
        let (free_waits, free) = sides.run(pattern, n, false);
        let (waits, spent) = sides.run(pattern, n, true);
        eprintln!(
            "in process {pattern:?}: {waits} waits, {spent} allocations on the client \
             for {MESSAGES} messages; open gate: {free_waits} waits, {free} allocations"
        );
        assert!(waits > 0, "{pattern:?}: the client never waited for room");
        assert!(
            spent <= free + ONE_OFF,
            "{pattern:?}: {spent} allocations while it waited, {free} without"
        );
    }
    sides.shutdown();
}
