//! The dispatcher: takes invocations from the transports' shared inbox, runs
//! handlers under a concurrency limit, and sends every reply.
//!
//! Backpressure: a permit is taken *before* the next invocation is read, so
//! when every permit is in use the inbox fills, the transports stop reading,
//! and senders wait. Nothing queues without bound.

mod inline;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use dashmap::DashMap;
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use tokio::time::Instant;

use crate::client::NetworkClient;
use crate::codec::Body;
use crate::handler::registry::HandlerRegistry;
use crate::handler::{HandlerContext, HandlerError, HandlerOutcome, HandlerRef};
use crate::ids::{InstanceId, MessageId, is_system_name};
use crate::runtime::{deadline, trace};
use crate::stats::{Counters, HandlerStats};
use crate::transport::{Inbound, OutFrame};
use crate::wire::{ErrorCode, Header, Kind, flags};

/// Runs handlers for inbound invocations.
pub(crate) struct Dispatcher {
    pub(crate) registry: Arc<HandlerRegistry>,
    pub(crate) client: Arc<NetworkClient>,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the drain deadline passes: running handlers are told to stop.
    pub(crate) handlers_cancel: CancellationToken,
    /// The same token, shared by the calls that get no token of their own
    /// (a clone is an atomic increment, not the token's mutex).
    pub(crate) shared_cancel: crate::handler::HandlerCancel,
    pub(crate) running: DashMap<(InstanceId, MessageId), crate::handler::HandlerCancel>,
    /// Per-call cancellation slots for calls that may wait, reused.
    pub(crate) cancel_pool: crate::handler::cancel::CancelPool,
    /// Streamed responses in progress and the credit their readers granted.
    pub(crate) streams: Arc<crate::stream::Streams>,
}

impl Dispatcher {
    /// Reads invocations until `stop` is cancelled.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut inbox: crate::transport::InvocationReceiver,
        stop: CancellationToken,
    ) {
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.limit).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = stop.cancelled() => return,
            };
            let inbound = tokio::select! {
                inbound = inbox.recv() => match inbound {
                    Some(inbound) => inbound,
                    None => return,
                },
                () = stop.cancelled() => return,
            };
            self.accept(inbound, permit);
        }
    }

    fn accept(self: &Arc<Self>, inbound: Inbound, permit: OwnedSemaphorePermit) {
        Counters::bump(&self.client.counters.messages_received);
        Counters::add(
            &self.client.counters.bytes_received,
            inbound.payload().len(),
        );
        if inbound.header.kind == Kind::Cancel {
            self.cancel(&inbound.header);
            return;
        }
        if inbound.header.kind == Kind::Credit {
            self.streams
                .producers
                .grant(&inbound.header, inbound.payload());
            return;
        }
        let span = trace::inbound(&inbound.header, inbound.name(), &*inbound.reply_link);
        let Some((inbound, permit)) = span.in_scope(|| self.accept_in_place(inbound, permit))
        else {
            return;
        };
        let this = Arc::clone(self);
        self.tracker
            .spawn(async move { this.process(inbound, permit).await }.instrument(span));
    }

    /// A caller gave up on a call: its handler's token fires.
    fn cancel(&self, header: &Header) {
        let key = (header.sender, header.correlation_id);
        if let Some(token) = self.running.get(&key) {
            token.cancel_call();
        }
    }

    async fn process(&self, inbound: Inbound, permit: OwnedSemaphorePermit) {
        if deadline::expired(&inbound.header, inbound.deadline) {
            // The caller has given up: running it would only waste work.
            Counters::bump(&self.client.counters.expired);
            return;
        }
        let (handler, stats) = match self.admit(&inbound) {
            Ok(found) => found,
            Err(err) => return self.reply_error(&inbound, err).await,
        };
        // A one-way message gets nothing back, ever (not even a receipt).
        if inbound.header.has(flags::RECEIPT) && inbound.header.kind != Kind::OneWay {
            self.reply(&inbound, Kind::Receipt, 0, &[]).await;
        }
        if inbound.header.has(flags::STREAM) {
            // Streams are bounded on their own (see `stream::serve`).
            drop(permit);
            let started = Instant::now();
            let failed = crate::stream::serve::run(self, &inbound, &handler).await;
            stats.record(started.elapsed(), failed);
            return;
        }
        let permit = if handler.exempt_from_limit() {
            drop(permit);
            None
        } else {
            Some(permit)
        };
        let started = Instant::now();
        let outcome = self.run_handler(&inbound, &handler).await;
        stats.record(started.elapsed(), outcome.is_err());
        drop(permit);
        self.conclude(&inbound, outcome).await;
    }

    /// Answers an invocation with its handler's outcome.
    pub(crate) async fn conclude(&self, inbound: &Inbound, outcome: HandlerOutcome) {
        match (inbound.header.kind, outcome) {
            (_, Err(err)) => {
                Counters::bump(&self.client.counters.handler_errors);
                tracing::debug!(handler = inbound.name(), error = %err.message, "handler failed");
                self.reply_error(inbound, err).await;
            }
            (Kind::Confirm, Ok(_)) => self.reply(inbound, Kind::Ack, 0, &[]).await,
            (Kind::Request, Ok(body)) => {
                self.reply(inbound, Kind::Response, 0, body.as_slice())
                    .await;
            }
            _ => {}
        }
    }

    /// Checks the name, the handler and the manager state.
    pub(crate) fn admit(
        &self,
        inbound: &Inbound,
    ) -> Result<(HandlerRef, Arc<HandlerStats>), HandlerError> {
        let name = inbound.name();
        let system_flag = inbound.header.has(flags::SYSTEM);
        if is_system_name(name) != system_flag {
            Counters::bump(&self.client.counters.refused);
            return Err(HandlerError {
                code: ErrorCode::Refused,
                message: format!(
                    "{name:?}: reserved names need the system flag and only reserved names may carry it"
                ),
            });
        }
        let Some(found) = self.registry.get_counted(name) else {
            Counters::bump(&self.client.counters.unknown_handler);
            return Err(HandlerError {
                code: ErrorCode::NoSuchHandler,
                message: name.to_owned(),
            });
        };
        if !self.client.is_admitting() {
            Counters::bump(&self.client.counters.refused);
            return Err(HandlerError {
                code: ErrorCode::ShuttingDown,
                message: "shutting down".into(),
            });
        }
        Ok(found)
    }

    async fn run_handler(
        &self,
        inbound: &Inbound,
        handler: &HandlerRef,
    ) -> Result<Body, HandlerError> {
        let key = (inbound.header.sender, inbound.header.message_id);
        // A one-way message cannot be cancelled by its caller: it sees the
        // drain token only.
        let tracked = inbound.header.kind != Kind::OneWay;
        let cancel = if tracked {
            let cancel = self.cancel_pool.take();
            self.running.insert(key, cancel.clone());
            cancel
        } else {
            self.shared_cancel.clone()
        };
        let ctx = HandlerContext {
            message_id: inbound.header.message_id,
            sender_id: inbound.header.sender,
            client: Arc::clone(&self.client),
            cancel,
            caller_trusted: inbound.reply_link.is_trusted(),
        };
        let payload = inbound.payload_bytes();
        // A panicking handler must answer its caller, not leave it waiting.
        let outcome = AssertUnwindSafe(async { handler.call(ctx, payload).outcome().await })
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(HandlerError::handler(format!(
                    "handler {:?} panicked",
                    inbound.name()
                )))
            });
        if tracked {
            self.end_call(&key);
        }
        outcome
    }

    /// Removes a finished call from the table of running calls and gives
    /// its cancellation slot back (the handler has dropped its copy).
    pub(crate) fn end_call(&self, key: &(InstanceId, MessageId)) {
        if let Some((_, cancel)) = self.running.remove(key) {
            self.cancel_pool.give_back(cancel);
        }
    }

    async fn reply_error(&self, inbound: &Inbound, err: HandlerError) {
        if inbound.header.kind == Kind::OneWay {
            tracing::debug!(handler = inbound.name(), code = ?err.code, error = %err.message, "one-way message failed");
            return;
        }
        self.reply(inbound, Kind::Error, err.code as u8, err.message.as_bytes())
            .await;
    }

    async fn reply(&self, inbound: &Inbound, kind: Kind, error_code: u8, payload: &[u8]) {
        let mut header = Header::new(kind, self.client.next_id(), self.client.instance_id);
        header.correlation_id = inbound.header.message_id;
        header.error_code = error_code;
        let frame = OutFrame::bytes(header, "", payload);
        match inbound.reply_link.send(frame).await {
            Ok(()) => Counters::bump(&self.client.counters.replies_sent),
            Err(err) => tracing::debug!(peer = %inbound.header.sender, %err, "reply not delivered"),
        }
    }
}
