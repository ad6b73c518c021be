//! How transports report back into the runtime.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::error::Error;
use crate::handler::PayloadBuf;
use crate::ids::InstanceId;
use crate::runtime::pending::PendingTable;
use crate::runtime::rate_limit::RateLimit;
use crate::stats::Counters;
use crate::transport::{BoxedLink, LinkEvents};
use crate::wire::{Header, ProtocolError};

/// Routes replies to the response table and link loss to the peer registry.
pub(crate) struct RuntimeEvents {
    pub(crate) pending: Arc<PendingTable>,
    pub(crate) links: Arc<DashMap<InstanceId, BoxedLink>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) streams: Arc<crate::stream::Streams>,
}

impl LinkEvents for RuntimeEvents {
    fn on_reply(&self, header: &Header, payload: &[u8]) {
        if self.streams.calls.routes(header) {
            return self.streams.calls.deliver(header, payload, None);
        }
        self.pending.complete(header, payload, None);
    }

    fn on_reply_shared(&self, header: &Header, payload: &[u8], frame: &PayloadBuf) {
        if self.streams.calls.routes(header) {
            let frame = frame.to_bytes();
            return self.streams.calls.deliver(header, payload, Some(&frame));
        }
        self.pending.complete(header, payload, Some(frame));
    }

    fn on_link_lost(&self, peer: InstanceId) {
        // Streams this peer reads from us stop if their link is the one lost.
        self.streams.producers.cancel_lost(peer);
        // A peer can be reachable over several links (an outbound link per
        // transport, reverse links for its calls to us). Only the loss of the
        // link our calls ride on fails them: until that one has reported its
        // own loss (a closed shm link first drains what the peer committed,
        // replies included), the report concerns another link.
        if self
            .links
            .get(&peer)
            .is_some_and(|link| !link.loss_reported())
        {
            tracing::debug!(%peer, "a secondary link to the peer closed; the link in use is up");
            return;
        }
        let removed = self
            .links
            .remove_if(&peer, |_, link| link.is_closed())
            .is_some();
        self.pending.note_lost(peer);
        let failed = self.pending.fail_peer(peer)
            + self.streams.calls.fail_peer(peer, || Error::PeerLost(peer));
        if removed || failed > 0 {
            Counters::bump(&self.counters.peers_lost);
            tracing::debug!(%peer, failed, "peer lost");
        }
    }

    fn on_peer_unresponsive(&self, peer: InstanceId) {
        let failed = self.pending.fail_unresponsive(peer)
            + self
                .streams
                .calls
                .fail_peer(peer, || Error::PeerUnresponsive(peer));
        tracing::warn!(%peer, failed, "peer not responding");
    }

    fn on_protocol_error(&self, peer: Option<InstanceId>, error: &ProtocolError) {
        // A peer can send garbage at line rate: warn once a second at most.
        static MALFORMED: RateLimit = RateLimit::new(Duration::from_secs(1));
        // The transport counted it on the link it arrived on (inbound or outbound).
        Counters::bump(&self.counters.protocol_errors);
        match MALFORMED.allow() {
            Some(suppressed) => {
                tracing::warn!(?peer, %error, suppressed, "malformed frame dropped");
            }
            None => tracing::debug!(?peer, %error, "malformed frame dropped"),
        }
    }

    fn on_refused(&self, peer: Option<InstanceId>) {
        Counters::bump(&self.counters.refused);
        tracing::debug!(?peer, "frame from an unauthenticated peer refused");
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
