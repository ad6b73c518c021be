//! What a manager's streams look like right now (tests, `_stats` readers).

use crate::client::NetworkClient;

/// Counts of a manager's streamed responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Streams this manager is reading (open handles).
    pub reading: usize,
    /// Streams this manager's handlers are producing.
    pub producing: usize,
    /// Items, ends or errors that arrived for no open stream (after a
    /// cancel or a timeout): ignored.
    pub late_frames: u64,
    /// Credit frames that matched no running stream: ignored.
    pub late_credits: u64,
    /// Streams ended because their producer sent more than its credit.
    pub overruns: u64,
}

impl NetworkClient {
    /// The state of this manager's streamed responses.
    pub fn stream_stats(&self) -> StreamStats {
        let streams = &self.streams;
        StreamStats {
            reading: streams.calls.len(),
            producing: streams.producers.len(),
            late_frames: streams.calls.late_items(),
            late_credits: streams.producers.late_credits(),
            overruns: streams.calls.overruns(),
        }
    }
}
