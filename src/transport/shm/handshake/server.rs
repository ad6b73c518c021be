//! The server's half of the handshake: check the hello, create the shared
//! memory with both rings and their doorbells, and answer (or refuse, with
//! the reason, before hanging up).

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use shm_ring::fdpass::send_fds;
use shm_ring::{Bells, Region, RegionLayout, RingConfig, RingError, init_ring};
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::UnixStream;

use super::{
    ACK_LEN, ACK_MAGIC, HELLO_LEN, HELLO_MAGIC, HandshakeParams, PROTOCOL_VERSION, RawLink,
    RingSpec, Status, bounded, hs_err, id_at, peer_uid, policy_byte, ring_io, u64_at,
};
use crate::error::Result;
use crate::ids::InstanceId;
use crate::transport::shm::config::own_uid;
use crate::transport::shm::rendezvous::check_peer_uid;

/// Serves one connection on the listener: checks the peer, creates the
/// shared memory and answers. `accepting` says whether new links are welcome.
pub(crate) async fn accept(
    mut stream: UnixStream,
    params: &HandshakeParams,
    ring: RingConfig,
    accepting: impl Fn() -> bool,
) -> Result<RawLink> {
    let t = params.timeout;
    let client_uid = peer_uid(&stream)?;
    // The hello is read even from a peer about to be refused, so its write
    // succeeds and it reads why it was refused.
    let mut hello = [0u8; HELLO_LEN];
    bounded(t, "reading hello", stream.read_exact(&mut hello)).await?;
    if let Err(e) = check_peer_uid(client_uid, own_uid(), &params.allowed_uids) {
        refuse(&stream, params, Status::UidRefused).await;
        return Err(e);
    }
    if hello[0..8] != HELLO_MAGIC {
        return Err(hs_err("hello", "bad magic"));
    }
    if let Some(status) = hello_problem(&hello, params, accepting) {
        refuse(&stream, params, status).await;
        return Err(hs_err("hello refused", format!("{status:?}")));
    }
    let rings = match create_rings(&stream, params, ring).await {
        Ok(rings) => rings,
        Err(e) => {
            refuse(&stream, params, Status::Internal).await;
            return Err(e);
        }
    };
    Ok(RawLink {
        stream,
        region: rings.region,
        peer: id_at(&hello, 16),
        peer_uid: client_uid,
        peer_max_frame: usize::try_from(u64_at(&hello, 48)).unwrap_or(usize::MAX),
        peer_spins: hello[10] == 0,
        tx: rings.s2c,
        tx_bells: rings.s2c_bells,
        rx: rings.c2s,
        rx_bells: rings.c2s_bells,
    })
}

/// Why a hello (magic already checked) is refused, if it is: in this
/// order, its version, the instance it expects, its own fields, and
/// whether new links are welcome.
fn hello_problem(
    hello: &[u8; HELLO_LEN],
    params: &HandshakeParams,
    accepting: impl Fn() -> bool,
) -> Option<Status> {
    let version = u16::from_le_bytes([hello[8], hello[9]]);
    let client = id_at(hello, 16);
    let expected = id_at(hello, 32);
    if version != PROTOCOL_VERSION {
        Some(Status::Version)
    } else if expected != params.local && expected != InstanceId::nil() {
        // Nil: a client that learns who listens here (`connect_to_address`).
        Some(Status::WrongInstance)
    } else if client == InstanceId::nil() || hello[56..64].iter().any(|&b| b != 0) {
        Some(Status::BadHello)
    } else if !accepting() {
        Some(Status::ShuttingDown)
    } else {
        None
    }
}

/// The server's half of a new link.
struct Rings {
    region: Arc<Region>,
    c2s: RingSpec,
    c2s_bells: Bells,
    s2c: RingSpec,
    s2c_bells: Bells,
}

/// A server answer without descriptors (status only).
fn answer(params: &HandshakeParams, status: Status) -> [u8; ACK_LEN] {
    let mut ack = [0u8; ACK_LEN];
    ack[0..8].copy_from_slice(&ACK_MAGIC);
    ack[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    ack[10..12].copy_from_slice(&(status as u16).to_le_bytes());
    ack[12] = policy_byte(params.policy);
    ack[16..32].copy_from_slice(params.local.as_bytes());
    ack[32..40].copy_from_slice(&(params.max_frame as u64).to_le_bytes());
    ack
}

async fn refuse(stream: &UnixStream, params: &HandshakeParams, status: Status) {
    let ack = answer(params, status);
    let write = async {
        let mut sent = 0;
        while sent < ACK_LEN {
            stream.writable().await?;
            match stream.try_write(&ack[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    if let Err(e) = bounded(params.timeout, "sending a refusal", write).await {
        tracing::debug!(%e, "refusal not delivered");
    }
}

/// Creates the memfd with both rings and the doorbells, and sends them.
async fn create_rings(
    stream: &UnixStream,
    params: &HandshakeParams,
    ring: RingConfig,
) -> Result<Rings> {
    let internal = |e: RingError| hs_err("creating the link", e);
    let layout = RegionLayout::new(&[ring, ring]);
    let region = Region::memfd("am-link", layout.size()).map_err(internal)?;
    let (c2s, s2c) = (layout.offsets()[0], layout.offsets()[1]);
    init_ring(&region, c2s, ring).map_err(internal)?;
    init_ring(&region, s2c, ring).map_err(internal)?;
    let c2s_bells = Bells::new().map_err(internal)?;
    let s2c_bells = Bells::new().map_err(internal)?;

    let mut ack = answer(params, Status::Ok);
    ack[40..48].copy_from_slice(&(region.len() as u64).to_le_bytes());
    for (at, offset) in [(48, c2s), (72, s2c)] {
        ack[at..at + 8].copy_from_slice(&(offset as u64).to_le_bytes());
        ack[at + 8..at + 16].copy_from_slice(&(ring.capacity() as u64).to_le_bytes());
        ack[at + 16..at + 24].copy_from_slice(&(ring.max_record() as u64).to_le_bytes());
    }
    let Some(memfd) = region.fd() else {
        return Err(hs_err("creating the link", "region has no descriptor"));
    };
    let fds = [
        memfd,
        c2s_bells.data.as_fd(),
        c2s_bells.space.as_fd(),
        s2c_bells.data.as_fd(),
        s2c_bells.space.as_fd(),
    ];
    let send = stream.async_io(Interest::WRITABLE, || {
        send_fds(stream.as_fd(), &ack, &fds).map_err(ring_io)
    });
    bounded(params.timeout, "sending the answer", send).await?;
    let spec = |offset| RingSpec {
        offset,
        config: ring,
    };
    Ok(Rings {
        c2s: spec(c2s),
        s2c: spec(s2c),
        c2s_bells,
        s2c_bells,
        region,
    })
}
