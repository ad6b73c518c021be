//! A transport carrying frames over Unix-domain stream sockets, written only
//! against the public API of `active_message` (see
//! `docs/writing-a-transport.md`). Endpoints are `uds://<socket path>`.
//!
//! - Handshake: the connecting side sends its instance id and frame limit;
//!   the listener answers with its own. A connection to another instance
//!   than the one asked for fails with `PeerLost`, as on the built-in
//!   transports.
//! - Framing: a little-endian `u32` length, then one wire frame. A length
//!   over our limit cannot be skipped safely: that link is closed.
//! - Backpressure: each link has a bounded queue drained by one writer task;
//!   `send` waits for room, `try_send` fails with `Full`. The reader stops
//!   reading while the dispatcher's inbox is full, so the peer's socket
//!   buffer and then its queue fill up and its `send` waits.
//! - Link loss: the kernel closes the socket of a dead process, so EOF is
//!   the peer's death; no heartbeats are needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use active_message::ids::MessageIdGen;
use active_message::transport::{
    BoxFuture, BoxedLink, BoxedTransport, Inbound, Inbox, OutFrame, PeerLink, ThinTransport,
    TransportKind,
};
use active_message::wire::{self, ErrorCode, Header, Kind, ProtocolError};
use active_message::{Error, InstanceId, Result};
use bytes::Bytes;
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The endpoint scheme this transport serves.
pub const SCHEME: &str = "uds";
/// Frames queued per link before `send` waits.
const QUEUE: usize = 64;
/// Bound on connecting and on each handshake step.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// How long shutdown waits for each link to flush its queue.
const FLUSH: Duration = Duration::from_secs(2);
/// Handshake message: instance id, then the largest frame accepted (u64 LE).
const HELLO_LEN: usize = 24;

/// State shared by the transport, its accept loop and its links.
struct Shared {
    local: InstanceId,
    inbox: Inbox,
    ids: MessageIdGen,
    links: DashMap<u64, Arc<UdsLink>>,
    serial: std::sync::atomic::AtomicU64,
}

/// The transport of one manager: a listening socket and the links it made.
pub struct UdsTransport {
    shared: Arc<Shared>,
    path: PathBuf,
    accept: JoinHandle<()>,
    closed: AtomicBool,
}

impl UdsTransport {
    /// Listens on `path` (which must not exist yet). Call from inside a Tokio runtime.
    pub fn bind(path: impl Into<PathBuf>, local: InstanceId, inbox: Inbox) -> Result<Arc<Self>> {
        let path = path.into();
        let listener = UnixListener::bind(&path)?;
        let shared = Arc::new(Shared {
            local,
            inbox,
            ids: MessageIdGen::new(),
            links: DashMap::new(),
            serial: Default::default(),
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        Ok(Arc::new(Self {
            shared,
            path,
            accept,
            closed: AtomicBool::new(false),
        }))
    }

    /// A factory for `ActiveMessageManagerBuilder::transport` listening on `path`.
    pub fn factory(
        path: impl Into<PathBuf>,
    ) -> impl Fn(InstanceId, Inbox) -> Result<BoxedTransport> + Send + Sync + 'static {
        let path = path.into();
        move |local, inbox| Ok(Self::bind(path.clone(), local, inbox)? as BoxedTransport)
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "uds: accept failed");
                continue;
            }
        };
        // The handshake runs in its own task so a silent client stalls no one.
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, answer_hello(&shared, stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%err, "uds: handshake failed"),
                Err(_) => tracing::debug!("uds: handshake timed out"),
            }
        });
    }
}

async fn answer_hello(shared: &Arc<Shared>, mut stream: UnixStream) -> Result<()> {
    let (peer, limit) = read_hello(&mut stream).await?;
    stream.write_all(&hello(shared)).await?;
    start_link(shared, peer, limit, stream);
    Ok(())
}

fn hello(shared: &Shared) -> [u8; HELLO_LEN] {
    let mut out = [0; HELLO_LEN];
    out[..16].copy_from_slice(shared.local.as_bytes());
    out[16..].copy_from_slice(&(shared.inbox.max_frame as u64).to_le_bytes());
    out
}

async fn read_hello(stream: &mut UnixStream) -> Result<(InstanceId, usize)> {
    let mut buf = [0; HELLO_LEN];
    stream.read_exact(&mut buf).await?;
    let (id, limit) = buf.split_at(16);
    let id = InstanceId::from_bytes(id.try_into().expect("16 bytes"));
    let limit = u64::from_le_bytes(limit.try_into().expect("8 bytes"));
    Ok((id, usize::try_from(limit).unwrap_or(usize::MAX)))
}

/// Starts the reader and writer tasks of a handshaken connection.
fn start_link(
    shared: &Arc<Shared>,
    peer: InstanceId,
    limit: usize,
    stream: UnixStream,
) -> Arc<UdsLink> {
    let (rd, wr) = stream.into_split();
    let (queue, rx) = mpsc::channel(QUEUE);
    let link = Arc::new(UdsLink {
        peer,
        serial: shared.serial.fetch_add(1, Ordering::Relaxed),
        queue,
        peer_max_frame: limit,
        closing: CancellationToken::new(),
        lost: AtomicBool::new(false),
        writer: parking_lot::Mutex::new(None),
        shared: Arc::clone(shared),
    });
    shared.links.insert(link.serial, Arc::clone(&link));
    let writer = tokio::spawn(write_loop(Arc::clone(&link), rx, wr));
    *link.writer.lock() = Some(writer);
    tokio::spawn(read_loop(Arc::clone(&link), rd));
    link
}

impl ThinTransport for UdsTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::custom(SCHEME)
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(format!("{SCHEME}://{}", self.path.display()))
    }

    fn connect<'a>(
        &'a self,
        peer: InstanceId,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<BoxedLink>> {
        Box::pin(async move {
            let path = endpoint.strip_prefix("uds://").ok_or_else(|| {
                let why = format!("{endpoint:?} is not a uds:// endpoint");
                Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, why))
            })?;
            let handshake = async {
                let mut stream = UnixStream::connect(path).await?;
                stream.write_all(&hello(&self.shared)).await?;
                read_hello(&mut stream).await.map(|hello| (hello, stream))
            };
            let ((found, limit), stream) = tokio::time::timeout(HANDSHAKE, handshake)
                .await
                .map_err(|_| Error::Io(std::io::ErrorKind::TimedOut.into()))??;
            if found != peer {
                // Dropping the stream closes it: the other side sees EOF.
                return Err(Error::PeerLost(peer));
            }
            Ok(start_link(&self.shared, peer, limit, stream) as BoxedLink)
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            self.accept.abort();
            let _ = std::fs::remove_file(&self.path);
            let links: Vec<_> = self
                .shared
                .links
                .iter()
                .map(|e| Arc::clone(e.value()))
                .collect();
            for link in &links {
                link.close();
            }
            // Replies already queued (a drained handler's answer) still go out.
            for link in links {
                let writer = link.writer.lock().take();
                if let Some(writer) = writer {
                    let _ = tokio::time::timeout(FLUSH, writer).await;
                }
            }
        })
    }
}

impl Drop for UdsTransport {
    fn drop(&mut self) {
        self.accept.abort();
        if !self.closed.load(Ordering::Acquire) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One connection to a peer; frames are written by one task, in order.
struct UdsLink {
    peer: InstanceId,
    serial: u64,
    queue: mpsc::Sender<Vec<u8>>,
    peer_max_frame: usize,
    /// Cancelled by `close`: the writer flushes and half-closes, the reader stops.
    closing: CancellationToken,
    lost: AtomicBool,
    writer: parking_lot::Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl UdsLink {
    fn encode(&self, frame: &OutFrame<'_>) -> Result<Vec<u8>> {
        if self.is_closed() {
            return Err(Error::PeerLost(self.peer));
        }
        let bytes = frame.to_vec()?;
        if bytes.len() > self.peer_max_frame {
            return Err(Error::PayloadTooLarge {
                size: bytes.len(),
                max: self.peer_max_frame,
            });
        }
        Ok(bytes)
    }

    /// The link broke under us: report it once (not when we closed it ourselves).
    fn lost(&self, why: &str) {
        let ours = self.closing.is_cancelled();
        self.closing.cancel();
        self.shared.links.remove(&self.serial);
        if !ours && !self.lost.swap(true, Ordering::AcqRel) {
            tracing::debug!(peer = %self.peer, why, "uds: link lost");
            self.shared.inbox.events.on_link_lost(self.peer);
        }
    }

    /// An `Error` answer to the invocation `to`.
    fn error_reply(&self, to: &Header, text: &str) -> Vec<u8> {
        let mut header = Header::new(Kind::Error, self.shared.ids.next(), self.shared.local);
        header.correlation_id = to.message_id;
        header.error_code = ErrorCode::Codec as u8;
        wire::encode_to_vec(&header, "", text.as_bytes())
    }
}

impl PeerLink for UdsLink {
    fn peer(&self) -> InstanceId {
        self.peer
    }

    fn kind(&self) -> TransportKind {
        TransportKind::custom(SCHEME)
    }

    fn send<'a>(&'a self, frame: OutFrame<'a>) -> BoxFuture<'a, Result<()>> {
        let encoded = self.encode(&frame);
        Box::pin(async move {
            let bytes = encoded?;
            tokio::select! {
                sent = self.queue.send(bytes) => sent.map_err(|_| Error::PeerLost(self.peer)),
                () = self.closing.cancelled() => Err(Error::PeerLost(self.peer)),
            }
        })
    }

    fn try_send(&self, frame: OutFrame<'_>) -> Result<()> {
        let bytes = self.encode(&frame)?;
        self.queue.try_send(bytes).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Error::Full,
            mpsc::error::TrySendError::Closed(_) => Error::PeerLost(self.peer),
        })
    }

    fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    fn close(&self) {
        self.closing.cancel();
    }
}

/// Writes queued frames, length-prefixed, batching what is ready into one
/// flush. On `close` it flushes what was queued, then half-closes the socket.
async fn write_loop(link: Arc<UdsLink>, mut rx: mpsc::Receiver<Vec<u8>>, wr: OwnedWriteHalf) {
    let mut wr = BufWriter::new(wr);
    let result: std::io::Result<()> = async {
        loop {
            let frame = tokio::select! {
                biased;
                frame = rx.recv() => frame,
                () = link.closing.cancelled() => None,
            };
            let Some(frame) = frame else { break };
            write_frame(&mut wr, &frame).await?;
            while let Ok(frame) = rx.try_recv() {
                write_frame(&mut wr, &frame).await?;
            }
            wr.flush().await?;
        }
        while let Ok(frame) = rx.try_recv() {
            write_frame(&mut wr, &frame).await?;
        }
        wr.flush().await?;
        wr.shutdown().await
    }
    .await;
    // Breaks the cycle link -> shared -> links -> link once nothing more is written.
    link.shared.links.remove(&link.serial);
    if let Err(err) = result {
        link.lost(&err.to_string());
    }
}

async fn write_frame(wr: &mut BufWriter<OwnedWriteHalf>, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    wr.write_all(&len.to_le_bytes()).await?;
    wr.write_all(frame).await
}

/// Reads frames until EOF, an I/O error, bad framing, or `close`.
async fn read_loop(link: Arc<UdsLink>, mut rd: OwnedReadHalf) {
    let why = loop {
        let frame = tokio::select! {
            () = link.closing.cancelled() => return,
            frame = read_frame(&link, &mut rd) => frame,
        };
        match frame {
            Ok(Some(frame)) => {
                if let Err(why) = deliver(&link, frame).await {
                    break why;
                }
            }
            Ok(None) => break "end of stream",
            Err(_) => break "read failed or bad length prefix",
        }
    };
    link.lost(why);
}

/// One length-prefixed frame; `None` at a clean end of stream.
async fn read_frame(link: &UdsLink, rd: &mut OwnedReadHalf) -> std::io::Result<Option<Bytes>> {
    let mut len = [0; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_le_bytes(len) as usize;
    let max = link.shared.inbox.max_frame;
    if len > max {
        let err = ProtocolError::TooLarge {
            size: len as u64,
            max,
        };
        link.shared
            .inbox
            .events
            .on_protocol_error(Some(link.peer), &err);
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut frame = vec![0; len];
    rd.read_exact(&mut frame).await?;
    Ok(Some(Bytes::from(frame)))
}

/// Routes one frame: replies to the response table at once, invocations to
/// an inline handler or the bounded inbox (waiting while it is full).
async fn deliver(link: &Arc<UdsLink>, frame: Bytes) -> Result<(), &'static str> {
    let inbox = &link.shared.inbox;
    let view = match wire::decode(&frame, inbox.max_frame) {
        Ok(view) if view.header.sender == link.peer => view,
        Ok(_) => {
            let err = ProtocolError::Link("frame sender is not the link's peer".into());
            inbox.events.on_protocol_error(Some(link.peer), &err);
            return Ok(());
        }
        Err(err) => {
            inbox.events.on_protocol_error(Some(link.peer), &err);
            if let Ok(header) = wire::decode_header(&frame)
                && matches!(header.kind, Kind::Confirm | Kind::Request)
            {
                let _ = link
                    .queue
                    .send(link.error_reply(&header, &err.to_string()))
                    .await;
            }
            return Ok(());
        }
    };
    match view.header.kind {
        kind if kind.is_reply() => inbox.events.on_reply(&view.header, view.payload),
        Kind::Heartbeat => {}
        Kind::Goodbye => return Err("goodbye"),
        _ => {
            if let Some(reply) = run_inline(inbox, &view) {
                return match reply {
                    Some(reply) => link.queue.send(reply).await.map_err(|_| "closed"),
                    None => Ok(()),
                };
            }
            let inbound = Inbound::from_frame(frame.clone(), &view, Arc::clone(link) as BoxedLink);
            tokio::select! {
                sent = inbox.invocations.send(inbound) => sent.map_err(|_| "manager gone")?,
                () = link.closing.cancelled() => {}
            }
        }
    }
    Ok(())
}

/// Offers the invocation to the inline dispatcher: `Some(reply)` when it ran there.
fn run_inline(inbox: &Inbox, view: &wire::FrameRef<'_>) -> Option<Option<Vec<u8>>> {
    let inline = inbox.inline.get()?;
    let mut reply = None;
    let ran = inline.try_inline(&view.header, view.name, view.payload, &mut |frame| {
        reply = frame.to_vec().ok();
    });
    ran.then_some(reply)
}
