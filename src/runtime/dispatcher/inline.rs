//! The dispatcher's in-place path: invocations run on the transport's own
//! thread ([`InlineDispatch`]), with their reply frames built there.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::time::Instant;

use super::Dispatcher;
use crate::handler::{HandlerContext, HandlerError, HandlerKind, InlineOutcome};
use crate::ids::is_system_name as reserved;
use crate::runtime::deadline;
use crate::stats::Counters;
use crate::transport::{BoxedLink, InlineDispatch, OutFrame, PayloadRef};
use crate::wire::{Header, Kind, flags};

impl Dispatcher {
    /// The reply frame for an invocation's outcome (none for one-way messages).
    pub(crate) fn reply_frame<'a>(
        &self,
        request: &Header,
        outcome: &'a InlineOutcome<'a>,
    ) -> Option<OutFrame<'a>> {
        let (kind, code, payload) = match (request.kind, outcome) {
            (Kind::OneWay, _) => return None,
            (_, Err(err)) => (
                Kind::Error,
                err.code as u8,
                PayloadRef::Bytes(err.message.as_bytes()),
            ),
            (Kind::Confirm, Ok(_)) => (Kind::Ack, 0, PayloadRef::Bytes(&[])),
            (_, Ok(payload)) => (Kind::Response, 0, *payload),
        };
        let mut header = Header::new(kind, self.client.next_id(), self.client.instance_id);
        header.correlation_id = request.message_id;
        header.error_code = code;
        Some(OutFrame {
            header,
            name: "",
            payload,
        })
    }
}

impl InlineDispatch for Dispatcher {
    fn try_inline(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        self.in_place(header, name, payload, None, reply)
    }

    fn try_in_place(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> crate::handler::PayloadBuf,
        _reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        self.in_place(header, name, payload, Some(owned), reply)
    }

    fn try_in_run(
        &self,
        run: &mut crate::runtime::run::InPlaceRun,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> crate::handler::PayloadBuf,
        _reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        self.in_run(run, header, name, payload, owned, reply)
    }

    fn repeat_in_run(
        &self,
        run: &mut crate::runtime::run::InPlaceRun,
        header: &Header,
        payload: &[u8],
        owned: &mut dyn FnMut() -> crate::handler::PayloadBuf,
    ) -> bool {
        self.repeat(run, header, payload, owned)
    }

    fn end_run(&self, run: &mut crate::runtime::run::InPlaceRun) {
        Dispatcher::end_run(self, run);
    }
}

impl Dispatcher {
    /// Runs an invocation on the transport's thread if it can (see
    /// [`InlineDispatch::try_in_place`]); `owned`, when given, lets a one-way
    /// message to an async handler run here too.
    pub(crate) fn in_place(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: Option<&mut dyn FnMut() -> crate::handler::PayloadBuf>,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        // Cancels never wait behind the concurrency limit.
        if header.kind == Kind::Cancel {
            self.cancel(header);
            return true;
        }
        if header.kind == Kind::Credit {
            self.streams.producers.grant(header, payload);
            return true;
        }
        // One-way messages never expire: no clock read for them. The one
        // read for a deadline also starts the handler's stats.
        let now = (header.kind != Kind::OneWay).then(Instant::now);
        if let Some(now) = now
            && deadline::expired(header, deadline::deadline_of(header, now))
        {
            Counters::bump(&self.client.counters.expired);
            return true;
        }
        // Anything unusual takes the regular path, which answers it properly.
        if !header.kind.is_invocation()
            || header.has(flags::RECEIPT)
            || header.has(flags::STREAM)
            || reserved(name) != header.has(flags::SYSTEM)
            || !self.client.is_admitting()
        {
            return false;
        }
        let Some((handler, stats)) = self.registry.get_cached(name) else {
            return false;
        };
        // Async one-way handlers never run inline; with the payload owned
        // they run in place.
        if handler.kind() == HandlerKind::ActiveMessage {
            return match owned {
                Some(owned) if header.kind == Kind::OneWay => {
                    self.one_way_in_place(header, name, (handler, stats), owned)
                }
                _ => false,
            };
        }
        // A synchronous handler finishes here: it needs no permit, only a
        // limit that is not saturated (taking and giving one back costs the
        // semaphore's mutex per message).
        if self.limit.available_permits() == 0 {
            return false;
        }
        let ctx = HandlerContext {
            message_id: header.message_id,
            sender_id: header.sender,
            client: Arc::clone(&self.client),
            cancel: self.shared_cancel.clone(),
            // Only transports with trusted links run handlers inline.
            caller_trusted: true,
        };
        let started = now.unwrap_or_else(Instant::now);
        let mut deliver = |outcome: InlineOutcome<'_>| {
            stats.record(started.elapsed(), outcome.is_err());
            if let Err(err) = &outcome {
                Counters::bump(&self.client.counters.handler_errors);
                tracing::debug!(handler = name, error = %err.message, "handler failed");
            }
            if let Some(frame) = self.reply_frame(header, &outcome) {
                reply(frame);
                Counters::bump(&self.client.counters.replies_sent);
            }
        };
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| match owned {
            Some(owned) => handler.call_inline_shared(&ctx, payload, owned, &mut deliver),
            None => handler.call_inline(&ctx, payload, &mut deliver),
        }))
        .unwrap_or_else(|_| {
            deliver(Err(HandlerError::handler(format!(
                "handler {name:?} panicked"
            ))));
            true
        });
        if ran {
            Counters::bump(&self.client.counters.messages_received);
            Counters::add(&self.client.counters.bytes_received, payload.len());
        }
        ran
    }
}
