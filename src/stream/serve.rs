//! How the dispatcher runs a streaming handler for a `STREAM` request.
//!
//! The handler runs outside the dispatcher's concurrency limit (a stream
//! waiting for its reader's credit must not hold a permit other calls on
//! the link need); the streams served at once are bounded separately, and
//! one over the bound is refused at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use crate::handler::{HandlerContext, HandlerError, HandlerRef};
use crate::runtime::dispatcher::Dispatcher;
use crate::stats::Counters;
use crate::stream::preamble;
use crate::stream::producer::ItemSink;
use crate::transport::{Inbound, OutFrame};
use crate::wire::{ErrorCode, Header, Kind};

/// Runs the stream to its end and sends its last frame; true if it failed.
pub(crate) async fn run(d: &Dispatcher, inbound: &Inbound, handler: &HandlerRef) -> bool {
    let Some((window, payload)) = preamble::split(inbound.payload_bytes()) else {
        let err = HandlerError {
            code: ErrorCode::Codec,
            message: "malformed stream preamble".into(),
        };
        finish(d, inbound, Err(err)).await;
        return true;
    };
    let Ok(slot) = Arc::clone(&d.streams.producers.slots).try_acquire_owned() else {
        let err = HandlerError {
            code: ErrorCode::Refused,
            message: "too many streams in progress".into(),
        };
        finish(d, inbound, Err(err)).await;
        return true;
    };
    let key = (inbound.header.sender, inbound.header.message_id);
    let cancel = d.handlers_cancel.child_token();
    d.running.insert(key, cancel.clone().into());
    let link = Arc::clone(&inbound.reply_link);
    let flow = d.streams.producers.open(key, window, cancel.clone(), link);
    let sink = ItemSink::new(flow, inbound.header.message_id, Arc::clone(&d.client));
    let ctx = HandlerContext {
        message_id: inbound.header.message_id,
        sender_id: inbound.header.sender,
        client: Arc::clone(&d.client),
        cancel: cancel.clone().into(),
        caller_trusted: inbound.reply_link.is_trusted(),
    };
    let outcome = match handler.call_stream(ctx, payload, sink) {
        // A panicking handler must end its caller's stream, not leave it waiting.
        Some(fut) => AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(HandlerError::handler(format!(
                    "handler {:?} panicked",
                    inbound.name()
                )))
            }),
        None => Err(HandlerError {
            code: ErrorCode::Refused,
            message: format!("handler {:?} does not stream", inbound.name()),
        }),
    };
    d.running.remove(&key);
    d.streams.producers.close(&key);
    drop(slot);
    let failed = outcome.is_err();
    if d.handlers_cancel.is_cancelled() {
        // The manager is shutting down: not a normal end for the reader.
        let err = HandlerError {
            code: ErrorCode::ShuttingDown,
            message: "shutting down".into(),
        };
        finish(d, inbound, Err(err)).await;
    } else if !cancel.is_cancelled() {
        finish(d, inbound, outcome).await;
    }
    // Else the caller went away: there is nobody to tell.
    failed
}

/// Sends the stream's last frame: `StreamEnd`, or `Error` with the reason.
async fn finish(d: &Dispatcher, inbound: &Inbound, outcome: Result<(), HandlerError>) {
    let client = &d.client;
    let (kind, code, text) = match &outcome {
        Ok(()) => (Kind::StreamEnd, 0, ""),
        Err(err) => {
            Counters::bump(&client.counters.handler_errors);
            (Kind::Error, err.code as u8, err.message.as_str())
        }
    };
    let mut header = Header::new(kind, client.next_id(), client.instance_id);
    header.correlation_id = inbound.header.message_id;
    header.error_code = code;
    match inbound
        .reply_link
        .send(OutFrame::bytes(header, "", text.as_bytes()))
        .await
    {
        Ok(()) => Counters::bump(&client.counters.replies_sent),
        Err(err) => {
            tracing::debug!(peer = %inbound.header.sender, %err, "end of stream not delivered")
        }
    }
}
