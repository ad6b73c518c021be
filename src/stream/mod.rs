//! Streamed responses: a handler yields many items, the caller reads them as
//! a [`futures::Stream`].
//!
//! Wire (`docs/wire.md`, section 16): the caller sends a `Request` with flag
//! `STREAM` whose payload opens with a 16-byte preamble (the initial credit
//! window); the handler answers with `StreamItem` frames, then one
//! `StreamEnd` (or an `Error`); the reader grants more items with `Credit`
//! frames as it consumes them, and cancels with the ordinary `Cancel`.
//!
//! Memory is bounded on both sides: the producer sends an item only against
//! a unit of credit (it waits otherwise, holding only the item it is
//! sending), and the reader's queue holds at most one window of items.
//!
//! - [`table`]: the caller's stream table (items routed like replies);
//! - [`handle`]: the caller's [`ResponseStream`];
//! - [`producer`]: the handler's side, credit and the item sender;
//! - [`serve`]: how the dispatcher runs a streaming handler.

pub(crate) mod buffers;
pub(crate) mod handle;
pub(crate) mod preamble;
pub(crate) mod producer;
pub(crate) mod serve;
pub(crate) mod stats;
pub(crate) mod table;

pub use handle::{ArchivedItem, BytesStream, ResponseStream};
pub use producer::{ItemSink, StreamSender};
pub use stats::StreamStats;

/// Items the reader lets the producer run ahead by default.
pub const DEFAULT_WINDOW: u32 = 64;
/// The largest window (and the most credit a producer holds at once):
/// bounds what a hostile reader's credit frames can grant.
pub const MAX_WINDOW: u32 = 1 << 16;
/// Streams a manager serves at once; more are refused at once.
pub(crate) const MAX_PRODUCERS: usize = 4096;

/// Both halves of streaming in one manager: the streams it reads and the
/// streams its handlers produce.
#[derive(Default)]
pub(crate) struct Streams {
    pub(crate) calls: table::StreamTable,
    pub(crate) producers: producer::Producers,
}
