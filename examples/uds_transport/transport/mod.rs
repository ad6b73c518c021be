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

mod link;

use active_message::MessageIdGen;
use active_message::transport::{
    BoxFuture, BoxedLink, BoxedTransport, Inbox, PeerLink, ThinTransport, TransportKind,
};
use active_message::{Error, InstanceId, Result};
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use link::{UdsLink, start_link};

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
