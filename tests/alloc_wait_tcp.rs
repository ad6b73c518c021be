//! Heap allocations on the client while its sends wait for room on a full
//! TCP link, counted by a global allocator that tags each thread with the
//! manager it works for (as in `alloc_wait.rs`, which covers shared memory).
//!
//! Both managers use one-frame-deep libzmq pipes and a send queue of two
//! frames, so a held server backs up into the client's queue after what the
//! kernel's socket buffers hold. The server's handlers run in place and each
//! takes a ticket before it returns; a controller thread hands out one ticket
//! at a time, and only while the client is blocked (`common/gate.rs`). So
//! the client's queue is full whenever it writes past it, and every stretch
//! runs through the waiting path again and again, whatever the machine's
//! speed:
//! - 64 B one-way messages through the builder and a prepared sender;
//! - eight requests at once, then four confirmed sends and four requests at
//!   once (the requests' futures end once their frame is written, so their
//!   waits show the link was full as the round went out), each round behind
//!   one-way frames of 64 KiB that fill the pipeline first.
//!
//! Asserted: the client waited, and allocated nothing per message while it
//! did. Its own test binary: the allocator counts every thread of the process.

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
use std::time::Duration;

use active_message::handler_impls::{TypedContext, typed_unary_handler, unary_handler};
use active_message::transport::zmq::{ZmqConfig, ZmqTransport};
use active_message::transport::{BoxedTransport, Inbox};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, OneWaySender};
use bytes::Bytes;
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: counting::CountingWith = counting::CountingWith(roles::count);

fn client_allocations() -> u64 {
    snapshot()[CLIENT]
}

/// TCP with the shallowest queues: one-frame libzmq pipes, a send queue of
/// two. Heartbeats every 2 s: a server held by the gate answers late, and a
/// busy machine must not make that a lost link.
fn builder() -> ActiveMessageManagerBuilder {
    let factory = |local: InstanceId, inbox: Inbox| -> active_message::Result<BoxedTransport> {
        let config = ZmqConfig::new("tcp://127.0.0.1:0")
            .send_queue(2)
            .high_water_mark(1)
            .heartbeat_interval(Duration::from_secs(2));
        Ok(ZmqTransport::bind(config, local, inbox)?)
    };
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(60))
        .endpoint("local://")
        .shm(false)
        .transport(factory)
}

struct Sides {
    server_rt: Runtime,
    client_rt: Runtime,
    server: ActiveMessageManager,
    client: ActiveMessageManager,
    gate: Arc<Gate>,
    /// One-way frames that fill the pipeline ahead of the calls.
    filler: Bytes,
}

impl Sides {
    fn start() -> Self {
        ROLE.set(CLIENT);
        let server_rt = runtime(SERVER);
        let client_rt = runtime(CLIENT);
        let gate = Arc::new(Gate::default());
        let server = server_rt.block_on(async {
            let server = builder().build().await.unwrap();
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
            let client = builder().build().await.unwrap();
            client.client().connect_to_peer(info).await.unwrap();
            client
        });
        let filler = Bytes::from(vec![3u8; 64 << 10]);
        // One clone made ahead: the first clone of a `Bytes` from a `Vec`
        // allocates its shared owner.
        drop(filler.clone());
        Self {
            server_rt,
            client_rt,
            server,
            client,
            gate,
            filler,
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
            gate.set_open(true);
            spent
        })
    }

    /// One one-way message of `payload` to `gated_sink`, through a prepared
    /// sender or the builder, observed by the gate.
    async fn one(&self, payload: &Bytes, prepared: Option<&OneWaySender>, waits: &Cell<u64>) {
        let sent = match prepared {
            Some(sender) => observed(sender.send_raw(payload), &self.gate, waits).await,
            None => {
                let m = self.client.client().active_message("gated_sink").unwrap();
                let m = m
                    .raw_payload(payload.clone())
                    .target_instance(self.target());
                observed(m.execute(), &self.gate, waits).await
            }
        };
        sent.unwrap();
    }

    /// Fills the pipeline to the server with one-way messages of `payload`
    /// until one of them waited for room.
    async fn fill(&self, payload: &Bytes) {
        let waits = Cell::new(0);
        while waits.get() == 0 {
            self.one(payload, None, &waits).await;
        }
    }

    /// `n` one-way messages of 64 B behind a full pipeline; returns (sends
    /// that waited, allocations).
    fn one_way(&self, n: u64, prepared: bool) -> (u64, u64) {
        let payload = Bytes::from(vec![7u8; 64]);
        drop(payload.clone());
        let c = self.client.client();
        let sender = c.one_way_sender("gated_sink", self.target()).unwrap();
        let sender = prepared.then_some(&sender);
        let waits = Cell::new(0);
        let spent = self.gated(async {
            self.fill(&self.filler).await;
            for _ in 0..n {
                self.one(&payload, sender, &waits).await;
            }
        });
        (waits.get(), spent)
    }

    /// `rounds` of eight requests (`confirmed`: every other one a confirmed
    /// send) polled together, each round behind a full pipeline; returns
    /// (requests that waited for room, allocations).
    fn calls(&self, rounds: u64, confirmed: bool) -> (u64, u64) {
        let c = self.client.client();
        let target = self.target();
        let waits = Cell::new(0);
        let call = |i: u8| {
            let (c, waits) = (&c, &waits);
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
        let spent = self.gated(async {
            for _ in 0..rounds {
                self.fill(&self.filler).await;
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
        (waits.get(), spent)
    }

    fn shutdown(self) {
        self.client_rt.block_on(self.client.shutdown()).unwrap();
        self.server_rt.block_on(self.server.shutdown()).unwrap();
    }
}

/// Allocations a stretch may make whatever its length: buffers that grow
/// once more on a client thread that first meets them in the stretch (a
/// thread's scratch buffer for archives, the I/O thread's list of links
/// with work, a reply buffer). Per message, none: on a link that waits
/// through a boxed future, each of the hundreds of waits allocates.
const ONE_OFF: u64 = 4;

/// Calls in flight at once in the concurrent cases; each may take a reply
/// buffer of its own the first time that many replies are held at once (a
/// one-off per call in flight, as in `alloc_wait.rs`).
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
fn senders_wait_for_room_on_a_full_tcp_link_without_allocating() {
    let sides = Sides::start();
    for prepared in [false, true] {
        // Warm-up: the link's first frames, the runtime's first timers.
        sides.one_way(100, prepared);
        let n = 1000;
        let case = format!("tcp: 64 B one-way behind a full link (prepared: {prepared})");
        check(&case, n, ONE_OFF, sides.one_way(n, prepared));
    }
    for confirmed in [false, true] {
        // Warm-up: the tables of calls in flight reach the size eight
        // calls at once need (they grow once, on a peak).
        sides.calls(5, confirmed);
        let rounds = 20;
        let case =
            format!("tcp: eight calls at once behind a full link (half confirmed: {confirmed})");
        check(
            &case,
            rounds * IN_FLIGHT,
            IN_FLIGHT + ONE_OFF,
            sides.calls(rounds, confirmed),
        );
    }
    sides.shutdown();
}
