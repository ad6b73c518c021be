//! docs/wire.md: the server sends unsolicited pongs only while it is
//! stalled; an idle client hears pongs only in answer to its own probes.

use std::time::Duration;

use active_message::wire::{self, Header, Kind, flags};
use active_message::{ActiveMessageManagerBuilder, InstanceId, MessageId, TransportPolicy};

const INTERVAL: Duration = Duration::from_millis(20);

fn probe(sender: InstanceId, id: u64) -> Vec<u8> {
    wire::encode_to_vec(
        &Header::new(Kind::Heartbeat, MessageId(id), sender),
        "",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_gets_pongs_only_to_its_probes() {
    let server = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        .heartbeat_interval(INTERVAL)
        .build()
        .await
        .unwrap();
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
