//! A run of frames read back to back by one reader, and what the dispatcher
//! gathers over it.
//!
//! A reader that drains several ring records per wake-up (the shared-memory
//! reader) hands them to the dispatcher as one run. What only matters in
//! aggregate is then paid once per run instead of once per message:
//! - the handler is looked up once per run of frames for one name and held
//!   for the run; each frame only compares the name and the registry's
//!   generation (one atomic load), with no hash, shard lock or reference
//!   count per message;
//! - one-way calls finished in place are counted in the run and published at
//!   its end: the manager's received counters, and the handler's statistics
//!   (calls, errors, and the run's time split evenly over its calls: one
//!   clock read at the run's first call and one at its end, instead of two
//!   per call).
//!
//! Everything that guards correctness stays per frame: the name and flag
//! checks, the manager's admission state, the concurrency limit, the
//! handler's outcome and its error log. Requests, confirmed messages,
//! cancels and credit take the dispatcher's per-frame path unchanged (they
//! need the clock for their deadline anyway, and their replies are ordered
//! after their statistics).
//!
//! The reader ends a run before it waits for anything (an empty ring, a full
//! inbox, a park) and after a bounded number of frames, so the counters lag
//! the handlers by at most one run.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::handler::PayloadBuf;
use tokio::time::Instant;

use crate::handler::in_place::RunSlot;
use crate::handler::{HandlerCall, HandlerContext, HandlerError, HandlerKind, HandlerRef};
use crate::ids::is_system_name;
use crate::runtime::dispatcher::Dispatcher;
use crate::stats::{Counters, HandlerStats};
use crate::transport::OutFrame;
use crate::wire::{Header, Kind, flags};

/// What a dispatcher gathers over one run of frames (see the module docs).
/// Opaque: a transport keeps one per reader, passes it to
/// [`InlineDispatch::try_in_run`](crate::transport::InlineDispatch::try_in_run)
/// for every frame of a run, and hands it to
/// [`InlineDispatch::end_run`](crate::transport::InlineDispatch::end_run)
/// before it waits.
#[derive(Default)]
pub struct InPlaceRun {
    /// The name of the handler held (kept across runs for its buffer).
    name: String,
    held: Option<Held>,
    /// When the run's first tallied call started.
    started: Option<Instant>,
    /// One-way messages finished in place in this run, and their bytes.
    messages: u64,
    bytes: u64,
    /// The run's last frame was a one-way call the held handler ran in
    /// place: a frame of the same shape may take [`Dispatcher::repeat`].
    armed: bool,
}

impl std::fmt::Debug for InPlaceRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlaceRun")
            .field("handler", &self.name)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl InPlaceRun {
    /// Whether the run's last frame ran in place as a one-way call, so a
    /// frame of the same shape may be repeated (see [`Dispatcher::repeat`]).
    #[inline]
    pub(crate) fn is_armed(&self) -> bool {
        self.armed
    }
}

/// The handler a run holds, and its calls in this run.
struct Held {
    /// The registry's generation when it was looked up.
    generation: u64,
    handler: HandlerRef,
    /// The handler's kind and its limit exemption (fixed for a handler).
    kind: HandlerKind,
    exempt: bool,
    stats: Arc<HandlerStats>,
    /// The context a synchronous handler borrows, made at the run's first
    /// call and reused (its reference counts taken once per run).
    ctx: Option<HandlerContext>,
    /// An async handler's future slot, borrowed for the run (see
    /// [`Handler::call_in_run`](crate::handler::Handler::call_in_run)).
    slot: RunSlot,
    calls: u64,
    errors: u64,
}

impl Drop for Held {
    /// The run's end (or a handler change): its borrowed slot goes back.
    fn drop(&mut self) {
        self.handler.end_run(&mut self.slot);
    }
}

impl Dispatcher {
    /// Runs an invocation in place within a run (see the module docs); false,
    /// having done nothing, when it must take the regular path.
    pub(crate) fn in_run(
        &self,
        run: &mut InPlaceRun,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        // Armed again below only by a one-way call that runs in place.
        run.armed = false;
        if header.kind != Kind::OneWay {
            return self.in_place(header, name, payload, Some(owned), reply);
        }
        // Anything unusual takes the regular path, which answers it properly.
        // One-way messages never expire: no clock read for them.
        if header.has(flags::RECEIPT)
            || header.has(flags::STREAM)
            || is_system_name(name) != header.has(flags::SYSTEM)
            || !self.client.is_admitting()
            // A saturated limit sends the message the regular way, which
            // waits for a permit (a handler that finishes here needs none).
            || self.limit.available_permits() == 0
        {
            return false;
        }
        if !self.hold(run, name) {
            return false;
        }
        let (Some(held), started) = (run.held.as_mut(), &mut run.started) else {
            return false;
        };
        if held.exempt {
            return false;
        }
        // The run's clock starts at its first call.
        started.get_or_insert_with(Instant::now);
        let ran = self.call_held(held, header, name, payload, owned);
        if ran {
            run.messages += 1;
            run.bytes += payload.len() as u64;
        }
        run.armed = ran;
        ran
    }

    /// A one-way frame shaped like the run's last one, which ran in place
    /// (`run.armed`): the frame's kind, flags and name are those of that
    /// frame, byte for byte, so the checks on them gave the same answer and
    /// the held handler is the one for its name. What can change from one
    /// frame to the next is checked again: the registry (a handler replaced
    /// mid-run), the manager's admission state and the concurrency limit.
    /// False, having done nothing and disarmed the run, when the frame must
    /// take [`Dispatcher::in_run`].
    pub(crate) fn repeat(
        &self,
        run: &mut InPlaceRun,
        header: &Header,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
    ) -> bool {
        let ok = run.armed
            && self.client.is_admitting()
            && self.limit.available_permits() != 0
            && run
                .held
                .as_ref()
                .is_some_and(|h| h.generation == self.registry.generation());
        let InPlaceRun {
            name, held, armed, ..
        } = run;
        let Some(held) = held.as_mut().filter(|_| ok) else {
            *armed = false;
            return false;
        };
        let ran = self.call_held(held, header, name, payload, owned);
        if ran {
            run.messages += 1;
            run.bytes += payload.len() as u64;
        }
        run.armed = ran;
        ran
    }

    /// Calls the held handler for a one-way frame; false if this kind of
    /// handler cannot run in place.
    fn call_held(
        &self,
        held: &mut Held,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
    ) -> bool {
        match held.kind {
            HandlerKind::ActiveMessage => {
                // A small payload inline: no shared buffer to count holders
                // of (an async handler only gets the payload by value).
                let payload = PayloadBuf::inline(payload).unwrap_or_else(owned);
                self.call_one_way(held, header, payload);
                true
            }
            _ => self.call_inline_one_way(held, header, name, payload, owned),
        }
    }

    /// Publishes what `run` gathered and lets go of its handler.
    pub(crate) fn end_run(&self, run: &mut InPlaceRun) {
        settle(run);
        run.held = None;
        run.armed = false;
        if run.messages != 0 {
            Counters::add(
                &self.client.counters.messages_received,
                run.messages as usize,
            );
            Counters::add(&self.client.counters.bytes_received, run.bytes as usize);
            run.messages = 0;
            run.bytes = 0;
        }
    }

    /// Holds the run's handler for `name` (false: none), looked up again
    /// only when the name or the registry changed.
    fn hold(&self, run: &mut InPlaceRun, name: &str) -> bool {
        let generation = self.registry.generation();
        let fresh = run
            .held
            .as_ref()
            .is_some_and(|h| h.generation == generation);
        if fresh && run.name == name {
            return true;
        }
        settle(run);
        run.held = None;
        // The generation read before the lookup: a change in between makes
        // the next frame look up again. The thread's last lookup answers a
        // run that starts with the same name as the last (no hash, no lock).
        let Some((handler, stats)) = self.registry.get_cached(name) else {
            return false;
        };
        run.name.clear();
        run.name.push_str(name);
        run.held = Some(Held {
            generation,
            kind: handler.kind(),
            exempt: handler.exempt_from_limit(),
            handler,
            stats,
            ctx: None,
            slot: RunSlot::default(),
            calls: 0,
            errors: 0,
        });
        true
    }

    fn handler_context(&self, header: &Header) -> HandlerContext {
        HandlerContext {
            message_id: header.message_id,
            sender_id: header.sender,
            client: Arc::clone(&self.client),
            cancel: self.shared_cancel.clone(),
            // Only transports with trusted links run handlers in place.
            caller_trusted: true,
        }
    }

    /// An async handler's one-way call, polled once here; one that waits
    /// goes on as a task and records its own statistics.
    fn call_one_way(&self, held: &mut Held, header: &Header, payload: PayloadBuf) {
        let ctx = self.handler_context(header);
        let handler = &held.handler;
        let slot = &mut held.slot;
        // A run's first call locks the handler's spare slots as any call
        // does; from its second on, the run borrows a slot until it ends
        // (one lock to take it, one to give it back, however long the run),
        // so a run of one call (a reader that keeps up with a slow sender)
        // costs no more than before.
        let first = held.calls == 0;
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| match first {
            true => handler.call(ctx, payload),
            false => handler.call_in_run(slot, ctx, payload),
        }));
        let failed = match call {
            Ok(HandlerCall::Ready(outcome)) => outcome.err(),
            Ok(HandlerCall::Pending(fut)) => {
                self.finish_pending(Arc::clone(&held.stats), Instant::now(), fut);
                return;
            }
            Err(_) => Some(HandlerError::handler("handler panicked")),
        };
        held.calls += 1;
        if let Some(err) = failed {
            held.errors += 1;
            Counters::bump(&self.client.counters.handler_errors);
            tracing::debug!(handler = handler.name(), code = ?err.code, error = %err.message, "one-way message failed");
        }
    }

    /// A synchronous handler's one-way call over the bytes in place; false
    /// if this kind of handler cannot run so.
    fn call_inline_one_way(
        &self,
        held: &mut Held,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
    ) -> bool {
        // The run's context, with this call's ids (a borrowed context: the
        // handler cannot keep it, only clone it).
        let ctx = held.ctx.get_or_insert_with(|| self.handler_context(header));
        ctx.message_id = header.message_id;
        ctx.sender_id = header.sender;
        let ctx = &*ctx;
        let mut failed = false;
        let mut deliver = |outcome: crate::handler::InlineOutcome<'_>| {
            if let Err(err) = &outcome {
                failed = true;
                Counters::bump(&self.client.counters.handler_errors);
                tracing::debug!(handler = name, error = %err.message, "handler failed");
            }
        };
        let handler = &held.handler;
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            handler.call_inline_shared(ctx, payload, owned, &mut deliver)
        }))
        .unwrap_or_else(|_| {
            deliver(Err(HandlerError::handler(format!(
                "handler {name:?} panicked"
            ))));
            true
        });
        if ran {
            held.calls += 1;
            held.errors += u64::from(failed);
        }
        ran
    }
}

/// Records the held handler's calls of this run in its statistics.
fn settle(run: &mut InPlaceRun) {
    let started = run.started.take();
    if let Some(held) = &mut run.held
        && held.calls != 0
    {
        let total = started.map(|s| s.elapsed()).unwrap_or_default();
        held.stats.record_run(held.calls, held.errors, total);
        held.calls = 0;
        held.errors = 0;
    }
}
