//! Per-rank stream gather: one streamed call per rank, merged into one
//! stream of items tagged with their rank.

use std::pin::Pin;

use futures::stream::{self, Stream, StreamExt};

use super::super::Rank;
use super::super::error::{CohortError, RankError};
use super::super::leader::LeaderWorkerCohort;
use crate::codec::{Decode, Payload};

/// Items of every rank's stream as they arrive, each with its rank. A rank
/// whose stream could not start yields one `Err`; a rank whose stream fails
/// yields its items, then one `Err`; the merged stream ends once every
/// rank's stream ended. Dropping it cancels every rank's handler.
pub type RankItems<R> = Pin<Box<dyn Stream<Item = (Rank, Result<R, RankError>)> + Send>>;

impl LeaderWorkerCohort {
    /// Calls the streaming `handler` with `payload` on every rank and merges
    /// the items (at most `window` unread per rank), tagged with their rank.
    /// Items of one rank keep their order; ranks interleave as they arrive.
    /// A lost rank ends its part with [`RankError::Lost`] (the failure policy
    /// applies to opening the streams, as for any operation).
    pub async fn stream_gather<T, R>(
        &self,
        handler: &str,
        payload: &T,
        window: u32,
    ) -> Result<RankItems<R>, CohortError>
    where
        T: Payload,
        R: Decode + Send + 'static,
    {
        let opened = self
            .on_all(None, |t| async move {
                let items = t
                    .client
                    .active_message(handler)?
                    .payload(payload)?
                    .timeout(t.timeout)
                    .expect_stream::<R>()
                    .window(window)
                    .send(t.instance)
                    .await?;
                Ok((t.rank, items))
            })
            .await?;
        let mut failed = Vec::new();
        let mut parts = Vec::new();
        for (rank, outcome) in (0..).zip(opened) {
            match outcome {
                Ok((rank, items)) => parts.push(
                    items
                        .map(move |item| (rank, item.map_err(RankError::from)))
                        .boxed(),
                ),
                Err(err) => failed.push((rank, Err(err))),
            }
        }
        let merged = stream::iter(failed).chain(stream::select_all(parts));
        Ok(Box::pin(merged))
    }
}
