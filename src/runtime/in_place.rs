//! Async one-way handlers run in place on the transport's reading thread.
//!
//! A one-way message to an async handler ([`am_handler`](crate::handler_impls::am_handler))
//! used to be copied into `Bytes`, queued, taken by the dispatcher and run on
//! a task of its own: an allocation for the copy, one for the task and one
//! for the boxed future, plus two task wake-ups per message. Here the
//! handler is called right where the frame was read: its payload comes from
//! the reader's arena, its future is polled once in the handler's reused
//! slot, and only a handler that really waits gets a task.
//!
//! Only one-way messages take this path: nothing answers them, so no reply
//! has to wait for room on the link, and no per-call cancellation token is
//! needed (a one-way message cannot be cancelled; the handler sees the
//! manager's drain token like every other handler).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::time::Instant;

use crate::handler::{HandlerCall, HandlerContext, HandlerOutcome, HandlerRef};
use crate::runtime::dispatcher::Dispatcher;
use crate::stats::{Counters, HandlerStats};
use crate::transport::BoxFuture;
use crate::wire::Header;

impl Dispatcher {
    /// Runs a one-way message's async handler in place; false, having done
    /// nothing, when it must take the regular path (see
    /// [`InlineDispatch::try_in_place`](crate::transport::InlineDispatch::try_in_place)).
    /// The caller ([`Dispatcher`]'s `in_place`) has checked the name, the
    /// flags and the manager's state, and looked `handler` up.
    pub(crate) fn one_way_in_place(
        &self,
        header: &Header,
        name: &str,
        (handler, stats): (HandlerRef, Arc<HandlerStats>),
        payload: &mut dyn FnMut() -> crate::handler::PayloadBuf,
    ) -> bool {
        if handler.exempt_from_limit() {
            return false;
        }
        // A handler that finishes here holds no permit (taking and giving
        // one back costs the semaphore's mutex per message); a saturated
        // limit still sends the message the regular way, which waits.
        if self.limit.available_permits() == 0 {
            return false;
        }
        let payload = payload();
        Counters::bump(&self.client.counters.messages_received);
        Counters::add(&self.client.counters.bytes_received, payload.len());
        let ctx = HandlerContext {
            message_id: header.message_id,
            sender_id: header.sender,
            client: Arc::clone(&self.client),
            cancel: self.shared_cancel.clone(),
            // Only transports with trusted links run handlers in place.
            caller_trusted: true,
        };
        let started = Instant::now();
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(ctx, payload)));
        match call {
            Ok(HandlerCall::Ready(outcome)) => self.finish(&stats, started, name, &outcome),
            Ok(HandlerCall::Pending(fut)) => {
                self.finish_pending(stats, started, fut);
                return true;
            }
            Err(_) => self.finish(&stats, started, name, &Err(panicked())),
        }
        true
    }

    /// Lets a handler that waits finish on a task of its own. Only such a
    /// handler takes a permit. Another caller may have taken the last one
    /// since the check: the handler has started, so it waits for the next
    /// one before going on.
    pub(crate) fn finish_pending(
        &self,
        stats: Arc<HandlerStats>,
        started: Instant,
        fut: BoxFuture<'static, HandlerOutcome>,
    ) {
        let client = Arc::clone(&self.client);
        let permit = Arc::clone(&self.limit).try_acquire_owned().ok();
        let limit = Arc::clone(&self.limit);
        self.tracker.spawn(async move {
            let permit = match permit {
                Some(permit) => Some(permit),
                None => limit.acquire_owned().await.ok(),
            };
            let outcome = AssertUnwindSafe(fut).catch_unwind().await;
            let outcome = outcome.unwrap_or_else(|_| Err(panicked()));
            stats.record(started.elapsed(), outcome.is_err());
            if let Err(err) = &outcome {
                Counters::bump(&client.counters.handler_errors);
                tracing::debug!(code = ?err.code, error = %err.message, "one-way message failed");
            }
            drop(permit);
        });
    }

    fn finish(&self, stats: &HandlerStats, started: Instant, name: &str, outcome: &HandlerOutcome) {
        stats.record(started.elapsed(), outcome.is_err());
        if let Err(err) = outcome {
            Counters::bump(&self.client.counters.handler_errors);
            tracing::debug!(handler = name, code = ?err.code, error = %err.message, "one-way message failed");
        }
    }
}

fn panicked() -> crate::handler::HandlerError {
    crate::handler::HandlerError::handler("handler panicked")
}
