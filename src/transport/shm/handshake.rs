//! Link setup over the rendezvous socket.
//!
//! ```text
//! client -> server  hello (64 bytes)
//!   0  magic "AMSHMHEL"      8  version u16   10  wait policy u8 (0 spin, 1 adaptive, 2 park)
//!  16  client instance id   32  expected server instance id   48  max frame u64   56  zero
//! server -> client  ack (128 bytes) + SCM_RIGHTS [memfd, c2s data, c2s space, s2c data, s2c space]
//!   0  magic "AMSHMACK"      8  version u16   10  status u16   12  wait policy u8
//!  16  server instance id   32  max frame u64   40  region size u64
//!  48  c2s offset, capacity, max record (3 x u64)   72  s2c offset, capacity, max record
//!  96  zero
//! ```
//! All integers little-endian. The server checks the client's uid
//! (`SO_PEERCRED`) and that it is the instance the client expects; the
//! client checks the server's uid, identity, seals and ring geometry. Every
//! step is bounded by the handshake timeout. A refusal is answered with a
//! non-zero status (and no descriptors) before the server hangs up, so the
//! client learns why at once.

mod client;
mod server;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shm_ring::{Bells, Region, RingConfig, RingError, WaitPolicy};
use tokio::net::UnixStream;

use super::config::own_uid;
use crate::error::{Error, Result};
use crate::ids::InstanceId;

pub use client::connect;
pub(crate) use server::accept;

/// Version of the link protocol (handshake, ring records, socket messages).
pub(crate) const PROTOCOL_VERSION: u16 = 1;
pub(super) const HELLO_MAGIC: [u8; 8] = *b"AMSHMHEL";
pub(super) const ACK_MAGIC: [u8; 8] = *b"AMSHMACK";
/// Size of the client's hello.
pub(crate) const HELLO_LEN: usize = 64;
/// Size of the server's answer.
pub(crate) const ACK_LEN: usize = 128;
/// Descriptors passed with a successful answer.
const LINK_FDS: usize = 5;

/// Outcome the server reports in its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
enum Status {
    Ok = 0,
    WrongInstance = 1,
    UidRefused = 2,
    Version = 3,
    ShuttingDown = 4,
    BadHello = 5,
    Internal = 6,
}

impl Status {
    fn into_error(code: u16, path: &Path, expected: InstanceId) -> Error {
        let at = path.display();
        match code {
            1 => Error::Refused(format!("the instance at {at} is not {expected}")),
            2 => Error::Refused(format!("{at} refused our uid {}", own_uid())),
            3 => Error::Transport(format!(
                "{at} does not speak shm link version {PROTOCOL_VERSION}"
            )),
            4 => Error::Transport(format!("{at} is shutting down")),
            5 => Error::Transport(format!("{at} rejected our hello")),
            _ => Error::Transport(format!("{at} failed to set up the link (status {code})")),
        }
    }
}

/// What one side brings to a handshake.
#[derive(Clone, Debug)]
pub struct HandshakeParams {
    /// Our instance id.
    pub local: InstanceId,
    /// Largest frame we accept.
    pub max_frame: usize,
    /// Our wait policy (the link spins only if both sides spin).
    pub policy: WaitPolicy,
    /// Peer uids accepted besides our own.
    pub allowed_uids: Vec<u32>,
    /// Bound on each step.
    pub timeout: Duration,
}

/// One ring of a link: where it is and its geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// Offset of the ring header in the region.
    pub offset: usize,
    /// Capacity and largest record.
    pub config: RingConfig,
}

/// A link right after a successful handshake, before anything runs on it.
///
/// [`super::ShmTransport`] turns it into a working link; tests use it to play
/// a raw peer (attach `shm_ring` handles to `tx`/`rx` themselves).
#[derive(Debug)]
pub struct RawLink {
    /// The rendezvous connection; it stays open for the link's life.
    pub stream: UnixStream,
    /// The shared memory holding both rings.
    pub region: Arc<Region>,
    /// The peer's instance id.
    pub peer: InstanceId,
    /// The peer's uid (`SO_PEERCRED`).
    pub peer_uid: u32,
    /// Largest frame the peer accepts.
    pub peer_max_frame: usize,
    /// Whether the peer asked for the `Spin` policy.
    pub peer_spins: bool,
    /// The ring we write.
    pub tx: RingSpec,
    /// Doorbells of the ring we write.
    pub tx_bells: Bells,
    /// The ring we read.
    pub rx: RingSpec,
    /// Doorbells of the ring we read.
    pub rx_bells: Bells,
}

pub(super) fn policy_byte(policy: WaitPolicy) -> u8 {
    match policy {
        WaitPolicy::Spin => 0,
        WaitPolicy::Adaptive { .. } => 1,
        WaitPolicy::Park => 2,
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

pub(super) fn id_at(b: &[u8], at: usize) -> InstanceId {
    let mut w = [0u8; 16];
    w.copy_from_slice(&b[at..at + 16]);
    InstanceId::from_bytes(w)
}

fn ring_io(e: RingError) -> io::Error {
    match e {
        RingError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

pub(super) fn hs_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport(format!("shm handshake: {what}: {e}"))
}

/// Runs `fut` under the handshake timeout.
pub(super) async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(hs_err(what, e)),
        Err(_) => Err(hs_err(what, format!("no answer within {timeout:?}"))),
    }
}

fn peer_uid(stream: &UnixStream) -> Result<u32> {
    Ok(stream
        .peer_cred()
        .map_err(|e| hs_err("SO_PEERCRED", e))?
        .uid())
}
