//! Optional liveness probes on a shared-memory link.
//!
//! End of file on the rendezvous socket tells at once that a peer died; a
//! peer that is alive but stopped or wedged says nothing. When probing is on
//! ([`ShmConfig::with_liveness_timeout`](super::ShmConfig::with_liveness_timeout)),
//! each side sends a ping byte over the socket every quarter of the timeout
//! and the peer's socket watcher answers with a pong byte. Nothing is added
//! per message. A peer that answered nothing for the timeout is reported
//! unresponsive once (pending calls fail, new ones fail at once) until its
//! next pong.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::link::{MSG_PING, ShmLink};

/// Notes a sign of life from the peer (a pong).
pub(crate) fn heard(link: &ShmLink) {
    link.heard_ms.store(since(link.born), Ordering::Relaxed);
    // AcqRel: pairs with the swap in `probe` and the load in `is_unresponsive`.
    if link.unresponsive.swap(false, Ordering::AcqRel) {
        tracing::info!(peer = %link.peer, "peer responding again");
    }
}

fn since(born: Instant) -> u64 {
    u64::try_from(born.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Probes the peer until the link goes down.
pub(crate) async fn probe(link: Arc<ShmLink>, timeout: Duration) {
    let interval = timeout / 4;
    let mut last_tick = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = link.lost.cancelled() => return,
        }
        let now = Instant::now();
        if now.duration_since(last_tick) > interval * 2 {
            // This process did not run for a while (stopped, starved): the
            // peer's silence over that time proves nothing.
            heard(&link);
        }
        last_tick = now;
        link.send_byte_now(MSG_PING);
        let silent = since(link.born).saturating_sub(link.heard_ms.load(Ordering::Relaxed));
        if Duration::from_millis(silent) >= timeout
            && !link.unresponsive.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(peer = %link.peer, ?timeout, "peer answers no liveness probe");
            link.events.on_peer_unresponsive(link.peer);
        }
    }
}
