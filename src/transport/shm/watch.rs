//! The watcher of a link's rendezvous socket: descriptors of large frames,
//! acknowledgements, pings and pongs, returned pool buffers, and the end of
//! file that says the peer is gone.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use shm_ring::RingError;
use shm_ring::fdpass::FdReceiver;
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::link::{LARGE_WINDOW, MSG_ACK, MSG_FD, MSG_PING, MSG_PONG, MSG_RETURNED, ShmLink};
use super::liveness;
use crate::wire::ProtocolError;

/// Reads the rendezvous socket until end of file (the peer is gone) or a
/// protocol violation, then shuts the link.
pub(crate) async fn watch_socket(link: Arc<ShmLink>, fds: mpsc::Sender<OwnedFd>) {
    let mut byte = [0u8; 1];
    // Kept across reads: a byte without a descriptor allocates nothing.
    let mut receiver = FdReceiver::new();
    loop {
        let got = link
            .stream
            .async_io(Interest::READABLE, || {
                receiver
                    .recv(link.stream.as_fd(), &mut byte)
                    .map_err(|e| match e {
                        RingError::Io(e) => e,
                        other => std::io::Error::other(other.to_string()),
                    })
            })
            .await;
        let violation = match got {
            Ok((0, _)) => break,
            Ok((_, received)) => match (byte[0], <[OwnedFd; 1]>::try_from(received)) {
                (MSG_FD, Ok([fd])) => match fds.try_send(fd) {
                    Ok(()) => continue,
                    Err(_) => "more large frames in flight than the window allows",
                },
                (MSG_PING, Err(none)) if none.is_empty() => {
                    link.send_byte_now(MSG_PONG);
                    continue;
                }
                (MSG_PONG, Err(none)) if none.is_empty() => {
                    liveness::heard(&link);
                    continue;
                }
                (MSG_RETURNED, Err(none)) if none.is_empty() => {
                    link.pool.on_returned();
                    link.wake_senders();
                    continue;
                }
                (MSG_ACK, Err(none)) if none.is_empty() => {
                    if link.large_window.available_permits() < LARGE_WINDOW {
                        link.large_window.add_permits(1);
                        continue;
                    }
                    "acknowledgement of no large frame"
                }
                _ => "unexpected message on the rendezvous socket",
            },
            Err(e) => {
                tracing::debug!(peer = %link.peer, %e, "rendezvous socket failed");
                break;
            }
        };
        link.violation(ProtocolError::Link(violation.into()));
        break;
    }
    link.shut();
}
