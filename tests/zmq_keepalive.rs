//! docs/wire.md: the server sends unsolicited pongs only while it is
//! stalled or reads a client's stream; an idle client hears pongs only in
//! answer to its own probes.

use std::time::Duration;

use active_message::wire::{self, Header, Kind, flags};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, InstanceId, MessageId, TransportPolicy,
};

const INTERVAL: Duration = Duration::from_millis(20);

/// A frame of `kind` with no payload, from `sender`.
fn frame(kind: Kind, name: &str, sender: InstanceId, id: u64) -> Vec<u8> {
    wire::encode_to_vec(&Header::new(kind, MessageId(id), sender), name, &[])
}

fn probe(sender: InstanceId, id: u64) -> Vec<u8> {
    frame(Kind::Heartbeat, "", sender, id)
}

/// A manager serving over TCP only, with the short heartbeat interval.
async fn tcp_server() -> ActiveMessageManager {
    ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        .heartbeat_interval(INTERVAL)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_gets_pongs_only_to_its_probes() {
    let server = tcp_server().await;
    let endpoint = server.peer_info().await.tcp_endpoint.unwrap();
    let me = InstanceId::new_random();
    tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let raw = ctx.socket(zmq::DEALER).unwrap();
        raw.set_linger(0).unwrap();
        raw.connect(&endpoint).unwrap();
        for id in 1..=3 {
            raw.send(probe(me, id), 0).unwrap();
            assert!(
                raw.poll(zmq::POLLIN, 10_000).unwrap() > 0,
                "probe {id} unanswered"
            );
            let bytes = raw.recv_bytes(0).unwrap();
            let pong = wire::decode(&bytes, 1 << 20).unwrap().header;
            assert!(pong.kind == Kind::Heartbeat && pong.has(flags::PONG));
            assert_eq!(pong.correlation_id, MessageId(id));
            // Ten heartbeat intervals of idleness: nothing unasked arrives.
            let unasked = raw
                .poll(zmq::POLLIN, 10 * INTERVAL.as_millis() as i64)
                .unwrap();
            assert_eq!(unasked, 0, "an idle client was sent an unsolicited frame");
        }
    })
    .await
    .unwrap();
    server.shutdown().await.unwrap();
}

/// A client that streams one-way frames and sends no probe hears keep-alive
/// pongs while the server reads its stream: under load a stream can take the
/// server longer than a heartbeat timeout to read, and the client's probe
/// waits behind it, so without them a busy server is taken for dead (seen:
/// a TCP link "lost" to its heartbeat timeout in the middle of 100 000
/// one-way messages on a loaded host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_stream_is_read_hears_keep_alive_pongs() {
    let server = tcp_server().await;
    server
        .register_handler(
            "sink",
            active_message::handler_impls::am_handler("sink", |_ctx| async { Ok(()) }),
        )
        .await
        .unwrap();
    let endpoint = server.peer_info().await.tcp_endpoint.unwrap();
    let me = InstanceId::new_random();
    let heard = tokio::task::spawn_blocking(move || {
        let ctx = zmq::Context::new();
        let raw = ctx.socket(zmq::DEALER).unwrap();
        raw.set_linger(0).unwrap();
        raw.connect(&endpoint).unwrap();
        // A frame, then a look for input of a tenth of an interval: 500
        // rounds take at least 50 heartbeat intervals, however busy the host.
        for id in 1..=500u64 {
            raw.send(frame(Kind::OneWay, "sink", me, id), 0).unwrap();
            if raw
                .poll(zmq::POLLIN, INTERVAL.as_millis() as i64 / 10)
                .unwrap()
                > 0
            {
                let bytes = raw.recv_bytes(0).unwrap();
                return Some(wire::decode(&bytes, 1 << 20).unwrap().header);
            }
        }
        None
    })
    .await
    .unwrap();
    let pong = heard.expect("a streaming client heard nothing in 50 heartbeat intervals");
    assert!(
        pong.kind == Kind::Heartbeat && pong.has(flags::PONG),
        "{pong:?}"
    );
    assert_eq!(pong.correlation_id, MessageId(0), "a keep-alive pong");
    server.shutdown().await.unwrap();
}
