//! `stats()` lists the links peers opened to a manager (its callers), with
//! their counters, beside the links it opened itself: a server sees per-peer
//! figures for its callers on every transport, and a raw peer's malformed
//! frames show on its own inbound link.

mod common;

use std::time::Duration;

use active_message::wire::{self, Header, Kind};
use active_message::{ActiveMessageManager, InstanceId, MessageId, PeerStat};
use common::raw_shm::raw_peer;
use common::{Flavor, eventually, pair};

/// Generous bound for conditions that hold as soon as the peers get CPU.
const WITHIN: Duration = Duration::from_secs(10);

/// The server's inbound link from `caller`, if listed.
fn inbound_from(server: &ActiveMessageManager, caller: InstanceId) -> Option<PeerStat> {
    let peers = server.stats().peers;
    peers
        .into_iter()
        .find(|p| p.instance_id == caller && p.inbound)
}

async fn a_server_lists_its_caller(flavor: Flavor) {
    let p = pair(flavor).await;
    let caller = p.client.instance_id();
    assert_eq!(p.echo("warm up").await.unwrap(), "warm up");
    // A shared-memory link counts a frame just after committing it to the
    // ring, so the caller may read a response before the server's counter
    // has moved: there, wait for every request in to have its answer counted
    // out (TCP counts before queueing; its probes make in and out differ).
    // The warm-up request must be among them: a reader preempted between
    // committing the answer and counting it shows 0 in and 0 out, since its
    // run's frames in are published when the run ends.
    let settled = |link: &PeerStat| {
        let c = &link.counters;
        flavor != Flavor::Shm || (c.messages_in >= 1 && c.messages_out == c.messages_in)
    };
    let listed = || async { inbound_from(&p.server, caller).is_some_and(|l| settled(&l)) };
    assert!(
        eventually(WITHIN, listed).await,
        "the server lists its caller"
    );
    let before = inbound_from(&p.server, caller).unwrap();
    assert_eq!(before.transport, flavor.kind());
    for i in 0..3 {
        assert_eq!(
            p.echo(&format!("call {i}")).await.unwrap(),
            format!("call {i}")
        );
    }
    let moved = |link: PeerStat| {
        let c = link.counters;
        let b = &before.counters;
        (
            c.messages_in - b.messages_in,
            c.messages_out - b.messages_out,
        )
    };
    if flavor != Flavor::Local {
        // Three requests in, three responses out, on the caller's own link.
        let three_each = || async { moved(inbound_from(&p.server, caller).unwrap()) == (3, 3) };
        let ok = eventually(WITHIN, three_each).await;
        assert!(ok, "{:?}", moved(inbound_from(&p.server, caller).unwrap()));
    }
    // The caller's own view is unchanged: one outbound link, no inbound one.
    let client_view = p.client.stats().peers;
    assert_eq!(client_view.len(), 1, "{client_view:?}");
    assert!(!client_view[0].inbound);
    let server = p.server.clone();
    p.client.shutdown().await.unwrap();
    assert!(
        eventually(WITHIN, || async { inbound_from(&server, caller).is_none() }).await,
        "a caller that left is no longer listed: {:?}",
        server.stats().peers
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shm_server_lists_its_caller_with_counters() {
    a_server_lists_its_caller(Flavor::Shm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_server_lists_its_caller_with_counters() {
    a_server_lists_its_caller(Flavor::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_server_lists_its_caller() {
    a_server_lists_its_caller(Flavor::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_shm_peers_malformed_frame_counts_on_its_inbound_link() {
    let p = pair(Flavor::Shm).await;
    let mut raw = raw_peer(&p.server).await;
    assert!(
        eventually(WITHIN, || async {
            inbound_from(&p.server, raw.id).is_some()
        })
        .await,
        "the raw peer's link is listed"
    );
    raw.tx.push(b"not a frame at all").await.unwrap();
    let counted = eventually(WITHIN, || async {
        p.server.stats().counters.protocol_errors == 1
    })
    .await;
    assert!(counted, "the server saw the malformed frame");
    // Over shared memory a malformed frame ends that link (the ring is no
    // longer trusted): it leaves the list, the well-behaved caller's stays.
    let id = raw.id;
    assert!(
        eventually(WITHIN, || async { inbound_from(&p.server, id).is_none() }).await,
        "the offending link is dropped"
    );
    let good = inbound_from(&p.server, p.client.instance_id()).unwrap();
    assert_eq!(good.counters.protocol_errors, 0);
    drop(raw);
    p.shutdown().await;
}

/// A raw DEALER client of `server`'s TCP endpoint, introduced by a heartbeat
/// probe (which makes the server list it), that then sends one malformed frame.
fn raw_tcp_client(endpoint: &str, id: InstanceId) -> zmq::Socket {
    let ctx = zmq::Context::new();
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.connect(endpoint).unwrap();
    let probe = Header::new(Kind::Heartbeat, MessageId(1), id);
    let limit = (1u64 << 20).to_le_bytes();
    dealer
        .send(wire::encode_to_vec(&probe, "", &limit), 0)
        .unwrap();
    dealer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_tcp_callers_malformed_frames_count_on_its_inbound_link() {
    let p = pair(Flavor::Tcp).await;
    let endpoint = p.server.peer_info().await.tcp_endpoint.unwrap();
    let id = InstanceId::new_random();
    let raw = raw_tcp_client(&endpoint, id);
    assert!(
        eventually(WITHIN, || async { inbound_from(&p.server, id).is_some() }).await,
        "the raw caller is listed once it said hello"
    );
    assert_eq!(
        inbound_from(&p.server, id)
            .unwrap()
            .counters
            .protocol_errors,
        0
    );
    for _ in 0..2 {
        raw.send(&b"not a frame at all"[..], 0).unwrap();
    }
    let counted = eventually(WITHIN, || async {
        p.server.stats().counters.protocol_errors == 2
    })
    .await;
    assert!(counted, "{:?}", p.server.stats().counters);
    // Counted on the link they came in on, not on anyone else's.
    assert_eq!(
        inbound_from(&p.server, id)
            .unwrap()
            .counters
            .protocol_errors,
        2
    );
    let good = inbound_from(&p.server, p.client.instance_id()).unwrap();
    assert_eq!(good.counters.protocol_errors, 0);
    drop(raw);
    p.shutdown().await;
}

/// Heartbeat probes are for idle links. A caller's requests go straight into
/// its socket, past the thread that probes; they still count as traffic the
/// peer hears, so a link whose calls flow is not probed (it was probed once
/// per interval, whatever the traffic, and every probe counts as a frame in
/// on the server's side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tcp_link_is_not_probed() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let server = common::builder(Flavor::Tcp).build().await.unwrap();
    common::demo::register_demo_handlers(&server).await.unwrap();
    let client = common::builder(Flavor::Tcp)
        .heartbeat_interval(INTERVAL)
        .build()
        .await
        .unwrap();
    let caller = client.instance_id();
    let info = server.peer_info().await;
    client.client().connect_to_peer(info).await.unwrap();
    let p = common::Pair { client, server };
    assert_eq!(p.echo("warm up").await.unwrap(), "warm up");
    let listed = || async { inbound_from(&p.server, caller).is_some() };
    assert!(
        eventually(WITHIN, listed).await,
        "the server lists its caller"
    );
    let before = inbound_from(&p.server, caller)
        .unwrap()
        .counters
        .messages_in;
    // Calls back to back over twenty intervals (the clock only ends the
    // loop; nothing is asserted about time).
    let started = std::time::Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < INTERVAL * 20 {
        assert_eq!(p.echo("busy").await.unwrap(), "busy");
        calls += 1;
    }
    let after = inbound_from(&p.server, caller)
        .unwrap()
        .counters
        .messages_in;
    let extra = after - before - calls;
    // A thread descheduled for a whole interval may still let one through.
    assert!(extra <= 2, "{extra} frames besides {calls} requests");
    p.shutdown().await;
}
