//! One connection of the UDS transport: a bounded queue drained by a writer
//! task, and a reader task that routes what arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use active_message::transport::{
    BoxFuture, BoxedLink, Inbound, Inbox, OutFrame, PeerLink, TransportKind,
};
use active_message::wire::{self, ErrorCode, Header, Kind, ProtocolError};
use active_message::{Error, InstanceId, Result};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{QUEUE, SCHEME, Shared};

/// Starts the reader and writer tasks of a handshaken connection.
pub(super) fn start_link(
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

/// One connection to a peer; frames are written by one task, in order.
pub(super) struct UdsLink {
    peer: InstanceId,
    serial: u64,
    queue: mpsc::Sender<Vec<u8>>,
    peer_max_frame: usize,
    /// Cancelled by `close`: the writer flushes and half-closes, the reader stops.
    closing: CancellationToken,
    lost: AtomicBool,
    pub(super) writer: parking_lot::Mutex<Option<JoinHandle<()>>>,
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
