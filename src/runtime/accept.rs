//! Queued invocations finished in place by the dispatcher, without a task.
//!
//! The dispatcher used to spawn a task for every invocation it took from the
//! inbox (links whose thread does not run handlers: ZeroMQ, or a shm frame
//! that found no free permit). Most handlers finish at once: synchronous
//! ones always, async ones whenever they do not wait. Here the dispatcher
//! runs the handler right away (a synchronous one over the payload in
//! place, an async one polled once in its reused slot) and hands the reply
//! to the link without waiting ([`PeerLink::try_send`]). Only a handler that
//! really waits, or a reply that finds the link full, gets a task.
//!
//! Anything unusual (expired, receipt asked, refused, unknown handler,
//! exempt from the limit) takes the regular path, which answers it.
//!
//! [`PeerLink::try_send`]: crate::transport::PeerLink::try_send

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::error::Error;
use crate::handler::{HandlerCall, HandlerContext, HandlerError, HandlerKind, HandlerOutcome};
use crate::ids::is_system_name;
use crate::runtime::deadline;
use crate::runtime::dispatcher::Dispatcher;
use crate::stats::Counters;
use crate::transport::{BoxFuture, Inbound, OutFrame, PayloadRef};
use crate::wire::{self, Kind, flags};

impl Dispatcher {
    /// Runs `inbound` in place if it can (`None`); gives it back with its
    /// permit for the regular path otherwise.
    pub(crate) fn accept_in_place(
        self: &Arc<Self>,
        inbound: Inbound,
        permit: OwnedSemaphorePermit,
    ) -> Option<(Inbound, OwnedSemaphorePermit)> {
        let header = inbound.header;
        // Receipts and streams take the regular path (streams are bounded on their own).
        if deadline::expired(&header, inbound.deadline)
            || header.has(flags::RECEIPT)
            || header.has(flags::STREAM)
        {
            return Some((inbound, permit));
        }
        // The regular path counts and answers refusals: only look here.
        let name = inbound.name();
        if is_system_name(name) != header.has(flags::SYSTEM) || !self.client.is_admitting() {
            return Some((inbound, permit));
        }
        let (handler, stats) = match self.registry.get_cached(name) {
            Some(found) if !found.0.exempt_from_limit() => found,
            _ => return Some((inbound, permit)),
        };
        // In flight for the shutdown drain until answered, as a spawned
        // handler is: a handler that shuts its own manager down
        // (`_request_shutdown`) must see its answer leave before the links
        // close. Two atomic increments, no allocation.
        let _in_flight = self.tracker.token();
        let started = Instant::now();
        let mut delivered = false;
        // A synchronous handler runs to its end right here, so it needs no
        // per-call cancellation token nor an entry in the table of running
        // calls (a cancel could only arrive once it has answered): it sees
        // the manager's drain token, as on the shm in-place path. Neither
        // allocates. A bytes handler takes its payload as shared `Bytes`:
        // calling it inline would copy it.
        let in_place = handler.kind() != HandlerKind::UnaryBytes;
        let inline_ctx = || HandlerContext {
            message_id: header.message_id,
            sender_id: header.sender,
            client: Arc::clone(&self.client),
            cancel: self.shared_cancel.clone(),
            caller_trusted: inbound.reply_link.is_trusted(),
        };
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            in_place
                && handler.call_inline(&inline_ctx(), inbound.payload(), &mut |outcome| {
                    stats.record(started.elapsed(), outcome.is_err());
                    self.answer(&inbound, outcome);
                    delivered = true;
                })
        }));
        // Only a handler that may wait gets its own token and table entry.
        let tracked = matches!(ran, Ok(false)) && header.kind != Kind::OneWay;
        let key = (header.sender, header.message_id);
        let call = match ran {
            Ok(true) => None,
            Ok(false) => {
                let mut ctx = inline_ctx();
                if tracked {
                    let cancel = self.cancel_pool.take();
                    self.running.insert(key, cancel.clone());
                    ctx.cancel = cancel;
                }
                Some(std::panic::catch_unwind(AssertUnwindSafe(|| {
                    handler.call(ctx, inbound.payload_bytes())
                })))
            }
            Err(_) if delivered => None,
            Err(_) => Some(Ok(HandlerCall::Ready(Err(panicked(&inbound))))),
        };
        let outcome = match call {
            None => Ok(()),
            Some(Ok(HandlerCall::Ready(outcome))) => {
                stats.record(started.elapsed(), outcome.is_err());
                self.answer(
                    &inbound,
                    outcome
                        .as_ref()
                        .map(|b| PayloadRef::Bytes(b.as_slice()))
                        .map_err(Clone::clone),
                );
                if let Ok(body) = outcome {
                    crate::handler::out_buffers::recycle(body);
                }
                Ok(())
            }
            Some(Ok(HandlerCall::Pending(fut))) => Err(fut),
            Some(Err(_)) => {
                stats.record(started.elapsed(), true);
                self.answer(&inbound, Err(panicked(&inbound)));
                Ok(())
            }
        };
        match outcome {
            Ok(()) => {
                if tracked {
                    self.end_call(&key);
                }
                drop(permit);
            }
            Err(fut) => {
                let this = Arc::clone(self);
                self.tracker.spawn(async move {
                    let outcome = finish(fut, &inbound).await;
                    stats.record(started.elapsed(), outcome.is_err());
                    if tracked {
                        this.end_call(&key);
                    }
                    drop(permit);
                    this.conclude(&inbound, outcome).await;
                });
            }
        }
        None
    }

    /// Sends the reply for `outcome` without waiting; a reply the link has
    /// no room for now is sent by a task.
    fn answer(&self, inbound: &Inbound, outcome: Result<PayloadRef<'_>, HandlerError>) {
        if let Err(err) = &outcome {
            Counters::bump(&self.client.counters.handler_errors);
            tracing::debug!(handler = inbound.name(), error = %err.message, "handler failed");
        }
        let Some(frame) = self.reply_frame(&inbound.header, &outcome) else {
            return;
        };
        match inbound.reply_link.try_send(frame) {
            Ok(()) => Counters::bump(&self.client.counters.replies_sent),
            Err(Error::Full) => self.answer_later(inbound, &frame),
            Err(err) => {
                tracing::debug!(peer = %inbound.header.sender, %err, "reply not delivered");
            }
        }
    }

    /// Copies a reply the link had no room for and sends it from a task.
    fn answer_later(&self, inbound: &Inbound, frame: &OutFrame<'_>) {
        let encoded = match frame.to_vec() {
            Ok(encoded) => encoded,
            Err(err) => return tracing::warn!(%err, "reply could not be encoded"),
        };
        let link = Arc::clone(&inbound.reply_link);
        let client = Arc::clone(&self.client);
        self.tracker.spawn(async move {
            let Ok(view) = wire::decode(&encoded, usize::MAX) else {
                return;
            };
            let frame = OutFrame::bytes(view.header, "", view.payload);
            match link.send(frame).await {
                Ok(()) => Counters::bump(&client.counters.replies_sent),
                Err(err) => tracing::debug!(%err, "reply not delivered"),
            }
        });
    }
}

fn panicked(inbound: &Inbound) -> HandlerError {
    HandlerError::handler(format!("handler {:?} panicked", inbound.name()))
}

/// Awaits a handler's future, turning a panic into a handler error.
async fn finish(fut: BoxFuture<'static, HandlerOutcome>, inbound: &Inbound) -> HandlerOutcome {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(panicked(inbound)))
}
