//! The client's half of the handshake: say hello, then check the server's
//! answer (uid, identity, version, descriptors, ring geometry).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use shm_ring::fdpass::recv_fds;
use shm_ring::{Bells, Region, RingConfig};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use super::{
    ACK_LEN, ACK_MAGIC, HELLO_LEN, HELLO_MAGIC, HandshakeParams, LINK_FDS, PROTOCOL_VERSION,
    RawLink, RingSpec, Status, bounded, hs_err, id_at, peer_uid, policy_byte, ring_io, u64_at,
};
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::transport::shm::config::own_uid;
use crate::transport::shm::rendezvous::check_peer_uid;

/// Connects to the rendezvous socket at `path` as a client and sets up a link
/// to `expected`. Fails promptly with `Refused` (uid or identity), or
/// `Transport` (nothing there, timeout, bad answer).
pub async fn connect(
    path: &Path,
    expected: InstanceId,
    params: &HandshakeParams,
) -> Result<RawLink> {
    let t = params.timeout;
    let mut stream = dial(path, t).await?;
    let server_uid = peer_uid(&stream)?;
    check_peer_uid(server_uid, own_uid(), &params.allowed_uids)?;

    let hello = hello(params, expected);
    let sent = bounded(t, "sending hello", stream.write_all(&hello)).await;
    // Even if the hello could not be sent, an answer may be waiting.
    let answer = bounded(t, "reading the answer", read_ack(&stream)).await;
    let (ack, fds) = match (sent, answer) {
        (_, Ok(answer)) => answer,
        (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
    };
    let server = check_ack(&ack, path, expected)?;
    attach(stream, &ack, fds, server, server_uid)
}

/// Reaches the socket at `path` within the handshake timeout.
async fn dial(path: &Path, t: Duration) -> Result<UnixStream> {
    match tokio::time::timeout(t, UnixStream::connect(path)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Error::Transport(format!(
            "cannot reach {}: {e}",
            path.display()
        ))),
        Err(_) => Err(hs_err("connect", format!("no answer within {t:?}"))),
    }
}

/// The client's hello to `expected`.
fn hello(params: &HandshakeParams, expected: InstanceId) -> [u8; HELLO_LEN] {
    let mut hello = [0u8; HELLO_LEN];
    hello[0..8].copy_from_slice(&HELLO_MAGIC);
    hello[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello[10] = policy_byte(params.policy);
    hello[16..32].copy_from_slice(params.local.as_bytes());
    hello[32..48].copy_from_slice(expected.as_bytes());
    hello[48..56].copy_from_slice(&(params.max_frame as u64).to_le_bytes());
    hello
}

/// Checks the answer's magic, status, version and the server's identity;
/// returns that identity.
fn check_ack(ack: &[u8; ACK_LEN], path: &Path, expected: InstanceId) -> Result<InstanceId> {
    if ack[0..8] != ACK_MAGIC {
        return Err(hs_err("answer", "bad magic"));
    }
    let status = u16::from_le_bytes([ack[10], ack[11]]);
    if status != Status::Ok as u16 {
        return Err(Status::into_error(status, path, expected));
    }
    let version = u16::from_le_bytes([ack[8], ack[9]]);
    if version != PROTOCOL_VERSION {
        return Err(hs_err("answer", format!("version {version}")));
    }
    let server = id_at(ack, 16);
    // A nil expectation discovers whoever listens (`connect_to_address`).
    if expected != InstanceId::nil() && server != expected {
        return Err(Error::Refused(format!(
            "the instance at {} is {server}, not {expected}",
            path.display()
        )));
    }
    Ok(server)
}

/// Maps the shared memory and doorbells the answer passed, after checking
/// them against the answer's sizes and ring geometry.
fn attach(
    stream: UnixStream,
    ack: &[u8; ACK_LEN],
    fds: Vec<OwnedFd>,
    server: InstanceId,
    server_uid: u32,
) -> Result<RawLink> {
    let Ok::<[OwnedFd; LINK_FDS], _>([memfd, c2s_data, c2s_space, s2c_data, s2c_space]) =
        fds.try_into()
    else {
        return Err(hs_err("answer", "wrong number of descriptors"));
    };
    let region = Region::from_fd(memfd).map_err(|e| hs_err("shared memory", e))?;
    if region.len() as u64 != u64_at(ack, 40) {
        return Err(hs_err("shared memory", "size differs from the answer"));
    }
    let tx = ring_spec(ack, 48, region.len())?;
    let rx = ring_spec(ack, 72, region.len())?;
    let (lo, hi) = if tx.offset < rx.offset {
        (tx, rx)
    } else {
        (rx, tx)
    };
    if lo.offset + lo.config.footprint() > hi.offset {
        return Err(hs_err("ring geometry", "rings overlap"));
    }
    let bells = |d, s| Bells::from_fds(d, s).map_err(|e| hs_err("doorbells", e));
    Ok(RawLink {
        region,
        peer: server,
        peer_uid: server_uid,
        peer_max_frame: usize::try_from(u64_at(ack, 32)).unwrap_or(usize::MAX),
        peer_spins: ack[12] == 0,
        tx,
        tx_bells: bells(c2s_data, c2s_space)?,
        rx,
        rx_bells: bells(s2c_data, s2c_space)?,
        stream,
    })
}

/// Reads exactly one answer and the descriptors that come with it.
pub(super) async fn read_ack(stream: &UnixStream) -> io::Result<([u8; ACK_LEN], Vec<OwnedFd>)> {
    let mut ack = [0u8; ACK_LEN];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < ACK_LEN {
        let (n, more) = stream
            .async_io(Interest::READABLE, || {
                recv_fds(stream.as_fd(), &mut ack[got..]).map_err(ring_io)
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer hung up during the handshake",
            ));
        }
        got += n;
        fds.extend(more);
    }
    Ok((ack, fds))
}

fn ring_spec(ack: &[u8], at: usize, region_len: usize) -> Result<RingSpec> {
    let field = |at| usize::try_from(u64_at(ack, at)).map_err(|e| hs_err("ring geometry", e));
    let (offset, capacity, max_record) = (field(at)?, field(at + 8)?, field(at + 16)?);
    let config = RingConfig::new(capacity)
        .and_then(|c| c.with_max_record(max_record))
        .map_err(|e| hs_err("ring geometry", e))?;
    match offset.checked_add(config.footprint()) {
        Some(end) if end <= region_len && offset.is_multiple_of(shm_ring::layout::LINE) => {
            Ok(RingSpec { offset, config })
        }
        _ => Err(hs_err("ring geometry", "ring outside the region")),
    }
}
