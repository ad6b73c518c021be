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

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shm_ring::fdpass::{recv_fds, send_fds};
use shm_ring::{Bells, Region, RegionLayout, RingConfig, RingError, WaitPolicy, init_ring};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use super::config::own_uid;
use super::rendezvous::check_peer_uid;
use crate::error::{Error, Result};
use crate::ids::InstanceId;

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

/// Connects to the rendezvous socket at `path` as a client and sets up a link
/// to `expected`. Fails promptly with `Refused` (uid or identity), or
/// `Transport` (nothing there, timeout, bad answer).
pub async fn connect(
    path: &Path,
    expected: InstanceId,
    params: &HandshakeParams,
) -> Result<RawLink> {
    let t = params.timeout;
    let mut stream = match tokio::time::timeout(t, UnixStream::connect(path)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Error::Transport(format!(
                "cannot reach {}: {e}",
                path.display()
            )));
        }
        Err(_) => return Err(hs_err("connect", format!("no answer within {t:?}"))),
    };
    let server_uid = peer_uid(&stream)?;
    check_peer_uid(server_uid, own_uid(), &params.allowed_uids)?;

    let mut hello = [0u8; HELLO_LEN];
    hello[0..8].copy_from_slice(&HELLO_MAGIC);
    hello[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello[10] = policy_byte(params.policy);
    hello[16..32].copy_from_slice(params.local.as_bytes());
    hello[32..48].copy_from_slice(expected.as_bytes());
    hello[48..56].copy_from_slice(&(params.max_frame as u64).to_le_bytes());
    let sent = bounded(t, "sending hello", stream.write_all(&hello)).await;
    // Even if the hello could not be sent, an answer may be waiting.
    let answer = bounded(t, "reading the answer", read_ack(&stream)).await;
    let (ack, fds) = match (sent, answer) {
        (_, Ok(answer)) => answer,
        (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
    };
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
    let server = id_at(&ack, 16);
    // A nil expectation discovers whoever listens (`connect_to_address`).
    if expected != InstanceId::nil() && server != expected {
        return Err(Error::Refused(format!(
            "the instance at {} is {server}, not {expected}",
            path.display()
        )));
    }
    let Ok::<[OwnedFd; LINK_FDS], _>([memfd, c2s_data, c2s_space, s2c_data, s2c_space]) =
        fds.try_into()
    else {
        return Err(hs_err("answer", "wrong number of descriptors"));
    };
    let region = Region::from_fd(memfd).map_err(|e| hs_err("shared memory", e))?;
    if region.len() as u64 != u64_at(&ack, 40) {
        return Err(hs_err("shared memory", "size differs from the answer"));
    }
    let tx = ring_spec(&ack, 48, region.len())?;
    let rx = ring_spec(&ack, 72, region.len())?;
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
        peer_max_frame: usize::try_from(u64_at(&ack, 32)).unwrap_or(usize::MAX),
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
    let version = u16::from_le_bytes([hello[8], hello[9]]);
    let client = id_at(&hello, 16);
    let expected = id_at(&hello, 32);
    let problem = if version != PROTOCOL_VERSION {
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
    };
    if let Some(status) = problem {
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
        peer: client,
        peer_uid: client_uid,
        peer_max_frame: usize::try_from(u64_at(&hello, 48)).unwrap_or(usize::MAX),
        peer_spins: hello[10] == 0,
        tx: rings.s2c,
        tx_bells: rings.s2c_bells,
        rx: rings.c2s,
        rx_bells: rings.c2s_bells,
    })
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
