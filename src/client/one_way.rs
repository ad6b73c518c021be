//! `OneWaySender`: a prepared stream of fire-and-forget messages to one
//! handler on one peer.
//!
//! The builder (`active_message(name)?.payload(..)?.target_instance(..)
//! .execute()`) resolves everything per message: the name is validated and
//! copied, the link is looked up in the peer map (and its `Arc` cloned and
//! dropped), the deadline is read from the clock. A sender does all of that
//! once, and encodes the frame's header and name once ([`EncodedHead`]);
//! each [`OneWaySender::send`] then takes a message id and has the link copy
//! the encoded head into its buffer (a shared-memory ring slot), patch the
//! id, deadline and length, and copy or archive the payload right behind it. Ordering,
//! backpressure and errors are the builder's: frames of one link arrive in
//! the order they were sent, a full link waits at most the sender's timeout
//! (then `Timeout`), a lost peer gives `PeerLost`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::client::NetworkClient;
use crate::codec::{Payload, PayloadSource};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, validate_user_handler_name};
use crate::runtime::trace;
use crate::transport::{BoxedLink, OutFrame, PayloadRef};
use crate::wire::{EncodedHead, Header, Kind};

/// A batch that stopped at an error: the messages before it were sent.
#[derive(Debug, thiserror::Error)]
#[error("one-way batch stopped after {sent} messages: {source}")]
pub struct BatchError {
    /// Messages of the batch sent (taken by the link) before the error.
    pub sent: usize,
    /// Why the next one was not.
    #[source]
    pub source: Error,
}

/// Sends one-way messages to one handler on one peer, with the name, the
/// link and the header resolved once ([`NetworkClient::one_way_sender`]).
///
/// ```no_run
/// # async fn f(client: std::sync::Arc<active_message::NetworkClient>,
/// #            peer: active_message::InstanceId) -> active_message::Result<()> {
/// let sink = client.one_way_sender("sink", peer)?;
/// for i in 0..1000u64 {
///     sink.send(&i).await?; // archived straight into the link's buffer
/// }
/// sink.send_raw(b"done").await?;
/// # Ok(()) }
/// ```
pub struct OneWaySender {
    client: Arc<NetworkClient>,
    /// The link found when the sender was made; looked up again only once
    /// it closes (a reconnected peer gets a new link).
    link: BoxedLink,
    target: InstanceId,
    timeout: Duration,
    /// The header and handler name, encoded once: everything of a frame's
    /// head but the message id, the payload's kind and length, the deadline.
    head: EncodedHead,
}

impl fmt::Debug for OneWaySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneWaySender")
            .field("target", &self.target)
            .field("handler", &self.head.name())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NetworkClient {
    /// A prepared sender of one-way messages to the user handler `name` on
    /// `target` (which must be connected): the cheapest way to send a stream
    /// of messages. Fails like [`Self::active_message`] for a reserved name
    /// and like a send for an unknown, lost or unresponsive peer.
    pub fn one_way_sender(
        self: &Arc<Self>,
        name: &str,
        target: InstanceId,
    ) -> Result<OneWaySender> {
        validate_user_handler_name(name)?;
        let link = self.link(target)?;
        let header = Header::new(Kind::OneWay, crate::ids::MessageId(0), self.instance_id);
        Ok(OneWaySender {
            client: Arc::clone(self),
            link,
            target,
            timeout: Duration::ZERO,
            head: EncodedHead::new(header, name),
        }
        .timeout(self.default_timeout()))
    }
}

impl OneWaySender {
    /// Sets how long one send may wait for room on a full link (default from
    /// the manager, 30 s); also the budget the handler sees.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.set_budget(timeout);
        self
    }

    fn set_budget(&mut self, timeout: Duration) {
        self.timeout = timeout;
        let mut header = *self.head.header();
        header.timeout_us = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
        self.head = EncodedHead::new(header, self.head.name());
    }

    /// The peer this sender sends to.
    pub fn target(&self) -> InstanceId {
        self.target
    }

    /// The handler this sender sends to.
    pub fn handler(&self) -> &str {
        self.head.name()
    }

    /// Sends `value` (any payload type, or `str`), archived straight into
    /// the link's buffer; returns once the link took the frame (waiting while
    /// it is full, at most the sender's timeout).
    pub async fn send<P: PayloadSource + ?Sized>(&self, value: &P) -> Result<()> {
        let value = value.payload_ref();
        self.write(PayloadRef::Archive(value.as_dyn()), 0).await
    }

    /// Sends raw bytes (the handler sees a raw payload), copied once into
    /// the link's buffer; returns once the link took the frame.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.client.limits.max_payload {
            return Err(Error::PayloadTooLarge {
                size: bytes.len(),
                max: self.client.limits.max_payload,
            });
        }
        self.write(PayloadRef::Bytes(bytes), bytes.len()).await
    }

    /// Sends every value of `values`, in order, as one batch; returns once
    /// the link took them all. Over shared memory the frames are written back
    /// to back under one lock, with one clock read, and published to the peer
    /// together (one store of the ring's tail and at most one doorbell per
    /// batch, or per wait for room), so the serving side reads them as one
    /// run. Ordering, backpressure (a full link waits at most the sender's
    /// timeout per wait, then `Timeout`) and errors are those of [`send`](Self::send)
    /// in a loop; the error says how many messages were sent before it.
    pub async fn send_batch<P: Payload>(&self, values: &[P]) -> Result<(), BatchError> {
        let payload = |i: usize| PayloadRef::Archive(&values[i] as &dyn Payload);
        // Archives count no raw bytes.
        self.write_batch(values.len(), &payload, &|_| 0).await
    }

    /// Sends every payload of `payloads` as raw bytes, in order, as one batch
    /// ([`send_batch`](Self::send_batch)). A payload over the limit fails the
    /// batch before anything is sent.
    pub async fn send_raw_batch<B: AsRef<[u8]> + Sync>(
        &self,
        payloads: &[B],
    ) -> Result<(), BatchError> {
        let max = self.client.limits.max_payload;
        if let Some(big) = payloads.iter().find(|b| b.as_ref().len() > max) {
            let size = big.as_ref().len();
            let source = Error::PayloadTooLarge { size, max };
            return Err(BatchError { sent: 0, source });
        }
        let payload = |i: usize| PayloadRef::Bytes(payloads[i].as_ref());
        let raw_bytes = |sent: Range<usize>| payloads[sent].iter().map(|b| b.as_ref().len()).sum();
        self.write_batch(payloads.len(), &payload, &raw_bytes).await
    }

    /// The batch loop: as many frames as the link takes at once, then the
    /// next one the regular way (which waits for room), and so on.
    /// `raw_bytes` sums the raw payload bytes of the messages in a range
    /// (for the counters, without a second call of `payload` per message).
    async fn write_batch<'v>(
        &self,
        n: usize,
        payload: &(dyn Fn(usize) -> PayloadRef<'v> + Sync),
        raw_bytes: &(dyn Fn(Range<usize>) -> usize + Sync),
    ) -> Result<(), BatchError> {
        let mut sent = 0;
        while sent < n {
            let failed = |source| BatchError { sent, source };
            if !self.client.is_admitting() {
                return Err(failed(Error::ShuttingDown));
            }
            let link = self.current_link().map_err(failed)?;
            // One span per batch written at once (its id: the batch's first).
            let span = trace::outbound(self.head.header(), self.head.name(), self.target, &*link);
            let wrote = span.in_scope(|| {
                // One atomic add for the batch's ids, not one per frame.
                let ids = self.client.ids.block(n - sent);
                let next_id = || ids.take().unwrap_or_else(|| self.client.next_id());
                link.try_send_encoded_batch(&self.head, &next_id, payload, sent, n)
            });
            match wrote {
                Ok(k) if k > 0 => {
                    self.client.count_sent_many(k, raw_bytes(sent..sent + k));
                    sent += k;
                }
                Ok(_) | Err(Error::Full) => {
                    let p = payload(sent);
                    self.write(p, raw_len(&p)).await.map_err(failed)?;
                    sent += 1;
                }
                Err(e) => return Err(failed(e)),
            }
        }
        Ok(())
    }

    /// The link to send on: the one found at first, or the peer map's
    /// current one once that closed (lost, reconnected, ...).
    fn current_link(&self) -> Result<BoxedLink> {
        if self.link.is_closed() || self.link.is_unresponsive() {
            self.client.link(self.target)
        } else {
            Ok(Arc::clone(&self.link))
        }
    }

    /// Sends one frame: at once through the encoded head when the link has
    /// room (no future, no timer), else the regular way, waiting for room at
    /// most the sender's timeout.
    async fn write(&self, payload: PayloadRef<'_>, raw_len: usize) -> Result<()> {
        match self.try_write(payload, raw_len) {
            // Not boxed: a wait allocates nothing (`client::wait`).
            Err(Error::Full) => self.write_waiting(payload, raw_len).await,
            done => done,
        }
    }

    /// The frame written now, or `Full`.
    fn try_write(&self, payload: PayloadRef<'_>, raw_len: usize) -> Result<()> {
        if !self.client.is_admitting() {
            return Err(Error::ShuttingDown);
        }
        let id = self.client.next_id();
        let relinked;
        let link = if self.link.is_closed() || self.link.is_unresponsive() {
            // The peer map says what became of it (lost, reconnected, ...).
            relinked = self.client.link(self.target)?;
            &relinked
        } else {
            &self.link
        };
        let header = self
            .head
            .header_for(id, !matches!(payload, PayloadRef::Archive(_)));
        let span = trace::outbound(&header, self.head.name(), self.target, &**link);
        let sent = span.in_scope(|| link.try_send_encoded(&self.head, id, payload));
        self.client.tally_try_send(&**link, sent, raw_len)
    }

    /// The frame written the regular way, waiting for room.
    async fn write_waiting(&self, payload: PayloadRef<'_>, raw_len: usize) -> Result<()> {
        let link = self.current_link()?;
        let raw = !matches!(payload, PayloadRef::Archive(_));
        let header = self.head.header_for(self.client.next_id(), raw);
        let frame = OutFrame {
            header,
            name: self.head.name(),
            payload,
        };
        let span = trace::outbound(&header, frame.name, self.target, &*link);
        self.client
            .write_frame(&link, frame, span, None, self.timeout)
            .await?;
        self.client.count_sent(raw_len);
        Ok(())
    }
}

/// The raw bytes a batch's payload counts as sent (an archived value: none,
/// as [`OneWaySender::send`] counts it).
fn raw_len(payload: &PayloadRef<'_>) -> usize {
    match payload {
        PayloadRef::Bytes(bytes) => bytes.len(),
        PayloadRef::Archive(_) | PayloadRef::Loan(_) => 0,
    }
}
