//! The receive side of the pooled path: reads the path's ring records
//! (a frame reference, a new segment with its descriptor, a retired one),
//! checks them against the receiver's table and hands frames over in place;
//! and how this side's receiver rings the peer's sender.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use shm_ring::ReadGrant;
use tokio::sync::mpsc;

use super::{FLAG_POOL, FLAG_RETIRE, FLAG_SEGMENT, RECORD_LEN};
use crate::transport::shm::link::{MSG_RETURNED, ShmLink};
use crate::transport::shm::pool::{self, Held, Ref, RxPool, SEG_HEADER};
use crate::wire::ProtocolError;

/// How long a segment record may wait for its descriptor (sent before it).
const FD_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest segment a receiver accepts for frames of at most `max_frame` bytes.
pub(crate) fn max_segment(max_frame: usize) -> usize {
    SEG_HEADER + pool::capacity_for(max_frame)
}

/// How this side's receiver rings the peer's sender when it returns a
/// segment the sender waits for: one byte on the link's socket, sent from
/// whichever thread drops the last view (never blocking; a lost ring only
/// delays the sender until its next poll).
pub(crate) fn bell(link: &Arc<ShmLink>) -> pool::Bell {
    let link = Arc::downgrade(link);
    Arc::new(move || {
        if let Some(link) = link.upgrade() {
            link.send_byte_now(MSG_RETURNED);
        }
    })
}
/// What one record of this path asks of the reader.
pub(crate) enum Step {
    /// A frame to handle, read in place.
    Frame(Held),
    /// Bookkeeping done.
    Done,
    /// The link must end (violation already reported).
    Stop,
}

fn words_of(grant: &ReadGrant<'_>) -> Option<[u64; 4]> {
    if grant.len() != RECORD_LEN {
        return None;
    }
    let mut raw = [0u8; RECORD_LEN];
    grant.copy_to_slice(&mut raw);
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(raw.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    Some(words)
}

/// Reads one pool record (the grant is released here) and applies it.
pub(crate) async fn on_record(
    link: &ShmLink,
    rx: &mut RxPool,
    fds: &mut mpsc::Receiver<OwnedFd>,
    grant: ReadGrant<'_>,
) -> Step {
    let flags = grant.flags();
    let words = words_of(&grant);
    grant.release();
    let Some([w0, w1, w2, w3]) = words else {
        return stop(link, "malformed pool record".into());
    };
    let id = u32::try_from(w0).ok();
    let applied = match (flags, id) {
        (FLAG_POOL, Some(id)) => {
            let reference = Ref {
                id,
                gen_: w1,
                offset: usize::try_from(w2).unwrap_or(usize::MAX),
                len: usize::try_from(w3).unwrap_or(usize::MAX),
            };
            return match rx.take(reference) {
                Ok(held) => Step::Frame(held),
                Err(why) => stop(link, why),
            };
        }
        (FLAG_SEGMENT, Some(id)) if w2 == 0 && w3 == 0 => {
            let size = usize::try_from(w1).unwrap_or(usize::MAX);
            match take_fd(link, fds).await {
                Some(fd) => pool::map_peer_segment(fd, size, rx.max_segment())
                    .map_err(|e| e.to_string())
                    .and_then(|seg| rx.add(id, seg)),
                None => return Step::Stop,
            }
        }
        (FLAG_RETIRE, Some(id)) if w1 == 0 && w2 == 0 && w3 == 0 => rx.retire(id),
        _ => Err(format!("malformed pool record (flags {flags:#06x})")),
    };
    match applied {
        Ok(()) => Step::Done,
        Err(why) => stop(link, why),
    }
}

fn stop(link: &ShmLink, why: String) -> Step {
    link.violation(ProtocolError::Link(why));
    Step::Stop
}

/// Takes the descriptor announced by a segment record and acknowledges it.
async fn take_fd(link: &ShmLink, fds: &mut mpsc::Receiver<OwnedFd>) -> Option<OwnedFd> {
    match tokio::time::timeout(FD_TIMEOUT, fds.recv()).await {
        Ok(Some(fd)) => {
            link.ack_large().await;
            Some(fd)
        }
        Ok(None) | Err(_) => {
            if !link.lost.is_cancelled() {
                link.violation(ProtocolError::Link(
                    "pool segment record without a descriptor".into(),
                ));
            }
            None
        }
    }
}
