//! Handlers run on the transport's own thread ([`InlineDispatch`]), and the
//! late-bound slot that holds the dispatcher ([`InlineSlot`]).

use std::sync::{Arc, OnceLock, Weak};

use super::{BoxedLink, InPlaceRun, OutFrame};
#[cfg(doc)]
use super::{Inbox, PeerLink};
use crate::handler::PayloadBuf;
use crate::wire::Header;

/// Runs cheap handlers on the transport's own thread or task, over the
/// payload in place: no channel hop, no task, no copy.
///
/// Only transports whose links are all trusted (see
/// [`PeerLink::is_trusted`]: shared memory, in-process) may call it: a
/// handler run inline is told its caller is trusted.
pub trait InlineDispatch: Send + Sync + 'static {
    /// Runs the invocation inline if it can (a synchronous or zero-copy
    /// handler, a concurrency permit free, no receipt asked, admitting),
    /// handing the reply frame, if any, to `reply` before returning true.
    /// Returns false, having done nothing, when the invocation must go
    /// through [`Inbox::invocations`] instead. `Cancel` and `Credit` frames
    /// are always handled here (they must not wait behind the concurrency
    /// limit), and so
    /// are requests whose caller's deadline has passed (dropped, counted).
    fn try_inline(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool;

    /// Like [`try_inline`](Self::try_inline), and may also run async
    /// handlers in place: `owned` gives the payload as a shared [`PayloadBuf`] (made
    /// at most once, only if a handler needs it), `reply_link` the link a
    /// reply that cannot be given at once goes back on. By default the same
    /// as `try_inline`.
    fn try_in_place(
        &self,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        let _ = (owned, reply_link);
        self.try_inline(header, name, payload, reply)
    }

    /// Like [`try_in_place`](Self::try_in_place), for a frame of a run read
    /// back to back: what only matters in aggregate (counters, handler
    /// statistics, the handler lookup) may be gathered in `run` until
    /// [`end_run`](Self::end_run), which the reader calls before it waits.
    /// By default the same as `try_in_place`.
    #[allow(clippy::too_many_arguments)]
    fn try_in_run(
        &self,
        run: &mut InPlaceRun,
        header: &Header,
        name: &str,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
        reply_link: &dyn Fn() -> BoxedLink,
        reply: &mut dyn FnMut(OutFrame<'_>),
    ) -> bool {
        let _ = run;
        self.try_in_place(header, name, payload, owned, reply_link, reply)
    }

    /// Runs again, the same way, a one-way frame of the same shape as the
    /// run's last frame (the same kind, flags and handler name, byte for
    /// byte), which [`try_in_run`](Self::try_in_run) ran in place: only
    /// the checks that can change between two such frames are made again.
    /// Returns false, having done nothing, when the frame must take
    /// `try_in_run` (the default: always).
    fn repeat_in_run(
        &self,
        run: &mut InPlaceRun,
        header: &Header,
        payload: &[u8],
        owned: &mut dyn FnMut() -> PayloadBuf,
    ) -> bool {
        let _ = (run, header, payload, owned);
        false
    }

    /// Publishes what `run` gathered (see [`try_in_run`](Self::try_in_run)).
    fn end_run(&self, run: &mut InPlaceRun) {
        let _ = run;
    }
}

/// Late-bound [`InlineDispatch`] (the dispatcher is built after the transports).
#[derive(Default)]
pub struct InlineSlot(OnceLock<Weak<dyn InlineDispatch>>);

impl InlineSlot {
    /// Sets the dispatcher; later calls are ignored.
    pub fn set(&self, dispatch: Weak<dyn InlineDispatch>) {
        let _ = self.0.set(dispatch);
    }

    /// The dispatcher, while it lives.
    pub fn get(&self) -> Option<Arc<dyn InlineDispatch>> {
        self.0.get().and_then(Weak::upgrade)
    }
}
