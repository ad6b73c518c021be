//! The send path shared by every message pattern: admission, the header,
//! a write without waiting, and a write that waits for room on a full link
//! within the caller's deadline (see [`super::wait`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::{Call, NetworkClient, OutPayload, link_cache};
use crate::error::{Error, Result};
use crate::ids::MessageId;
use crate::runtime::call::PendingCall;
use crate::runtime::trace;
use crate::stats::Counters;
use crate::transport::{BoxedLink, OutFrame, PeerLink};
use crate::wire::{Header, flags};

impl NetworkClient {
    pub(crate) fn admit(&self, call: &Call<'_>) -> Result<BoxedLink> {
        // Acquire: pairs with the Release store in `stop_admitting`.
        if !self.admitting.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let size = call.body.raw_len().unwrap_or(0);
        if size > self.limits.max_payload {
            return Err(Error::PayloadTooLarge {
                size,
                max: self.limits.max_payload,
            });
        }
        link_cache::link(self.instance_id, call.target, || self.link(call.target))
    }

    pub(crate) fn header(&self, call: &Call<'_>, id: MessageId) -> Header {
        let mut header = Header::new(call.kind, id, self.instance_id);
        header.flags = call.flags
            | if matches!(call.body, OutPayload::Bytes(_) | OutPayload::Loan(_)) {
                flags::RAW
            } else {
                0
            };
        header.timeout_us = u64::try_from(call.timeout.as_micros()).unwrap_or(u64::MAX);
        header
    }

    /// Sends a fire-and-forget invocation if the link takes it now: no
    /// future, no timer, nothing but the write (`Full` when the link has no
    /// room; the caller then sends it with [`Self::send_one_way`], which
    /// waits). Errors other than `Full` are counted on the link.
    pub(crate) fn try_send_one_way(&self, call: &Call<'_>) -> Result<()> {
        let link = self.admit(call)?;
        let header = self.header(call, self.next_id());
        let frame = OutFrame {
            header,
            name: call.name,
            payload: call.body.as_ref(),
        };
        let span = trace::outbound(&header, call.name, call.target, &*link);
        let sent = span.in_scope(|| link.try_send(frame));
        self.tally_try_send(&*link, sent, call.body.raw_len().unwrap_or(0))
    }

    /// Counts what a send without waiting did: a message sent (`raw_len`
    /// payload bytes), or a send error on the link; `Full` is neither (the
    /// caller waits and tries again).
    pub(crate) fn tally_try_send(
        &self,
        link: &dyn PeerLink,
        sent: Result<()>,
        raw_len: usize,
    ) -> Result<()> {
        match sent {
            Ok(()) => {
                self.count_sent(raw_len);
                Ok(())
            }
            Err(Error::Full) => Err(Error::Full),
            Err(err) => {
                if let Some(c) = link.counters() {
                    c.record_send_error();
                }
                Err(err)
            }
        }
    }

    /// Sends a fire-and-forget invocation; returns once the link took it,
    /// or fails with `Timeout` if the link stayed full past the call's budget.
    pub(crate) async fn send_one_way(&self, call: Call<'_>) -> Result<()> {
        let link = self.admit(&call)?;
        let header = self.header(&call, self.next_id());
        // No deadline yet: the budget only matters if the link is full, and
        // the clock is then read once (`write_frame`).
        self.send_until(&link, None, &call, header).await?;
        self.count_sent(call.body.raw_len().unwrap_or(0));
        Ok(())
    }

    /// Writes the invocation, waiting for room on the link at most until
    /// `deadline` (`None`: the call's budget from the moment the link is
    /// found full): a stopped or wedged peer never holds a caller longer
    /// than its own budget. Cancelling the write is safe: a frame is either
    /// wholly written or not at all.
    async fn send_until(
        &self,
        link: &BoxedLink,
        deadline: Option<Instant>,
        call: &Call<'_>,
        header: Header,
    ) -> Result<()> {
        let frame = OutFrame {
            header,
            name: call.name,
            payload: call.body.as_ref(),
        };
        let span = trace::outbound(&header, call.name, call.target, &**link);
        self.write_frame(link, frame, span, deadline, call.timeout)
            .await
    }

    /// Writes one frame on `link`: at once when it has room (no future to
    /// box, no timer to arm, no clock read), else waiting for room within
    /// `deadline` (`None`: `timeout` from the moment the link is found
    /// full). Counts send errors and timeouts on the link and the client.
    pub(crate) async fn write_frame(
        &self,
        link: &BoxedLink,
        frame: OutFrame<'_>,
        span: tracing::Span,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<()> {
        let now = span.in_scope(|| link.try_send(frame));
        let sent = match now {
            Err(Error::Full) => {
                let deadline = deadline.unwrap_or_else(|| Instant::now() + timeout);
                super::wait::send_when_writable(&**link, frame, deadline)
                    .instrument(span)
                    .await
            }
            now => Some(now),
        };
        let counters = link.counters();
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(err)) => {
                if let Some(c) = counters {
                    c.record_send_error();
                }
                Err(err)
            }
            None => {
                Counters::bump(&self.counters.timeouts);
                if let Some(c) = counters {
                    c.record_timeout();
                }
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// Sends a call that expects a reply and returns what to await it with.
    pub(crate) async fn start_call(&self, call: Call<'_>) -> Result<PendingCall> {
        let link = self.admit(&call)?;
        let id = self.next_id();
        let deadline = Instant::now() + call.timeout;
        self.pending
            .register(id, call.target, call.flags & flags::RECEIPT != 0);
        let pending = PendingCall {
            table: Arc::clone(&self.pending),
            id,
            link: Arc::clone(&link),
            local: self.instance_id,
            cancel_id: self.next_id(),
            counters: Arc::clone(&self.counters),
            deadline,
            timeout: call.timeout,
            armed: true,
        };
        let header = self.header(&call, id);
        if let Err(err) = self.send_until(&link, Some(deadline), &call, header).await {
            // Never written (or the link broke): there is nothing to cancel.
            pending.disarm();
            return Err(err);
        }
        self.count_sent(call.body.raw_len().unwrap_or(0));
        Ok(pending)
    }

    pub(crate) fn count_sent(&self, raw_bytes: usize) {
        Counters::bump(&self.counters.messages_sent);
        Counters::add(&self.counters.raw_bytes_sent, raw_bytes);
    }

    /// Counts `messages` sent messages with `raw_bytes` of raw payload in
    /// all (a batch, counted once).
    pub(crate) fn count_sent_many(&self, messages: usize, raw_bytes: usize) {
        Counters::add(&self.counters.messages_sent, messages);
        Counters::add(&self.counters.raw_bytes_sent, raw_bytes);
    }
}
