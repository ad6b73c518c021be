//! A raw shared-memory peer: the link handshake and both rings, with no
//! runtime behind them, for tests that send what a well-behaved peer never
//! would.

use std::time::Duration;

use active_message::transport::shm::endpoint_path;
use active_message::transport::shm::raw::{self as handshake, HandshakeParams, RawLink};
use active_message::{ActiveMessageManager, InstanceId, WaitPolicy};
use shm_ring::{Consumer, Producer};

/// The raw peer: its id, the link (socket, region) and both ring ends.
pub struct RawPeer {
    /// The instance id it says hello with.
    pub id: InstanceId,
    /// The handshake's result: socket, shared region, ring geometry.
    pub link: RawLink,
    /// Our ring towards the server.
    pub tx: Producer,
    /// The server's ring towards us.
    pub rx: Consumer,
}

/// Connects a raw peer to `server`'s shared-memory transport.
pub async fn raw_peer(server: &ActiveMessageManager) -> RawPeer {
    let info = server.peer_info().await;
    let path = endpoint_path(info.shm_endpoint.as_deref().unwrap()).unwrap();
    let params = HandshakeParams {
        local: InstanceId::new_random(),
        max_frame: 1 << 20,
        policy: WaitPolicy::default(),
        allowed_uids: Vec::new(),
        timeout: Duration::from_secs(5),
    };
    let link = handshake::connect(&path, info.instance_id, &params)
        .await
        .unwrap();
    assert_eq!(link.peer, info.instance_id);
    let tx = Producer::attach(&link.region, link.tx.offset, link.tx_bells.clone()).unwrap();
    let rx = Consumer::attach(&link.region, link.rx.offset, link.rx_bells.clone()).unwrap();
    RawPeer {
        id: params.local,
        link,
        tx,
        rx,
    }
}
