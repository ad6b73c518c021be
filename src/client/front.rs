//! The channel front: messages in through one bounded channel, outcome
//! notifications out through another, as in the second seed
//! (`dynamo-llm`'s active message handling).
//!
//! A thin layer over the manager, not a second dispatcher: each
//! [`IncomingActiveMessage`] becomes a confirmed active message
//! (`active_message(message_type).raw_payload(data).send(target)`) to the
//! manager's own handlers (or to a chosen peer), so lookup, admission and
//! execution are the dispatcher's. The front adds what the seed describes on
//! top: a limit on messages in flight, and a notification
//! `"<prefix>:ok"` / `"<prefix>:err(<message>)"` per message that asked for
//! one, including unknown message types.
//!
//! Everything is bounded: the message queue, the notification queue, and the
//! messages in flight. A reader that stops draining notifications holds up
//! the front (backpressure), it never makes the front buffer more.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::client::NetworkClient;
use crate::error::{Error, Result};
use crate::handler::HandlerRef;
use crate::handler_impls::am_handler;
use crate::ids::InstanceId;
use crate::manager::ActiveMessageManager;
use crate::peer::PeerInfo;

/// One message for the front: which handler, its bytes, and the prefix of
/// the notification to send back (none: no notification).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingActiveMessage {
    /// The handler to run (the name it was registered under).
    pub message_type: String,
    /// The payload, handed to the handler as is.
    pub message_data: Vec<u8>,
    /// Prefix of the outcome notification, if one is wanted.
    pub response_notification: Option<String>,
}

/// The outcome of one message that asked for a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseNotification {
    /// `"<prefix>:ok"` or `"<prefix>:err(<message>)"`.
    pub notification: String,
    /// Whether the handler ran and succeeded.
    pub is_success: bool,
}

impl ResponseNotification {
    fn new(prefix: &str, outcome: &Result<()>) -> Self {
        match outcome {
            Ok(()) => Self {
                notification: format!("{prefix}:ok"),
                is_success: true,
            },
            Err(err) => Self {
                notification: format!("{prefix}:err({})", error_text(err)),
                is_success: false,
            },
        }
    }
}

/// The handler's own message verbatim; any other failure as the error says it.
fn error_text(err: &Error) -> String {
    match err {
        Error::Handler(message) => message.clone(),
        other => other.to_string(),
    }
}

/// Settings of a [`ChannelFront`].
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Messages in flight (handlers running) at most; at least 1.
    pub max_concurrent: usize,
    /// Capacity of the message queue and of the notification queue.
    pub queue_capacity: usize,
    /// Where messages go: `None` for this manager's own handlers.
    pub target: Option<PeerInfo>,
}

impl FrontConfig {
    /// `max_concurrent` handlers at once, queues of 64, this manager's handlers.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            max_concurrent,
            queue_capacity: 64,
            target: None,
        }
    }
}

/// The channel front over one manager.
///
/// It keeps feeding messages until every sender (its own included: drop the
/// front) is gone and the queue is empty, or until the manager shuts down;
/// messages already in flight then finish and notify.
pub struct ChannelFront {
    manager: ActiveMessageManager,
    sender: mpsc::Sender<IncomingActiveMessage>,
    responses: Option<mpsc::Receiver<ResponseNotification>>,
}

impl fmt::Debug for ChannelFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelFront")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl ChannelFront {
    /// Starts the front: connects to the target (this manager itself by
    /// default) and starts the task that feeds it.
    pub async fn start(manager: &ActiveMessageManager, config: FrontConfig) -> Result<Self> {
        if config.max_concurrent == 0 || config.queue_capacity == 0 {
            return Err(Error::Config(
                "the channel front needs max_concurrent and queue_capacity >= 1".into(),
            ));
        }
        let client = manager.client();
        let target = match config.target {
            Some(peer) => peer,
            None => manager.peer_info().await,
        };
        let target_id = target.instance_id;
        client.connect_to_peer(target).await?;
        let (sender, inbox) = mpsc::channel(config.queue_capacity);
        let (notes, responses) = mpsc::channel(config.queue_capacity);
        let stop = manager.cancel_token();
        let feeder = Feeder {
            client,
            target: target_id,
            limit: Arc::new(Semaphore::new(config.max_concurrent)),
            notes,
        };
        tokio::spawn(feeder.run(inbox, stop));
        Ok(Self {
            manager: manager.clone(),
            sender,
            responses: Some(responses),
        })
    }

    /// Registers every handler of `handlers` on the front's manager, under
    /// its key (with a remote [`FrontConfig::target`], register them there).
    /// Stops at the first name that is refused (taken, or reserved).
    pub async fn register_handlers(&self, handlers: HashMap<String, HandlerRef>) -> Result<()> {
        for (name, handler) in handlers {
            self.manager.register_handler(name, handler).await?;
        }
        Ok(())
    }

    /// A sender for messages (bounded: `send` waits while the queue is full).
    pub fn message_sender(&self) -> mpsc::Sender<IncomingActiveMessage> {
        self.sender.clone()
    }

    /// The notification receiver; `None` after the first call. It ends once
    /// the front is dropped, every sender is gone and the last message finished.
    pub fn take_response_receiver(&mut self) -> Option<mpsc::Receiver<ResponseNotification>> {
        self.responses.take()
    }
}

/// A handler for the front: an async closure over the message bytes that
/// captures whatever it needs (shared resources behind `Arc`). Its error's
/// text is what the notification carries.
pub fn front_handler<F, Fut, E>(name: impl Into<String>, f: F) -> HandlerRef
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    am_handler(name, move |ctx| {
        let fut = f(ctx.payload.to_vec());
        async move { fut.await.map_err(|e| e.to_string()) }
    })
}

/// Feeds queued messages to the manager, at most `limit` at a time.
struct Feeder {
    client: Arc<NetworkClient>,
    target: InstanceId,
    limit: Arc<Semaphore>,
    notes: mpsc::Sender<ResponseNotification>,
}

impl Feeder {
    async fn run(self, mut inbox: mpsc::Receiver<IncomingActiveMessage>, stop: CancellationToken) {
        loop {
            // The permit first: while the limit is reached nothing more is
            // taken off the queue, so senders wait instead of tasks piling up.
            let permit = tokio::select! {
                permit = Arc::clone(&self.limit).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = stop.cancelled() => return,
            };
            let message = tokio::select! {
                message = inbox.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
                () = stop.cancelled() => return,
            };
            tokio::spawn(deliver(
                Arc::clone(&self.client),
                self.target,
                message,
                self.notes.clone(),
                permit,
            ));
        }
    }
}

/// Runs one message through the manager and notifies its outcome. The permit
/// is held until the notification is queued, so a stalled reader stalls the
/// front rather than growing a backlog of finished messages.
async fn deliver(
    client: Arc<NetworkClient>,
    target: InstanceId,
    message: IncomingActiveMessage,
    notes: mpsc::Sender<ResponseNotification>,
    _permit: OwnedSemaphorePermit,
) {
    let IncomingActiveMessage {
        message_type,
        message_data,
        response_notification,
    } = message;
    let outcome = match client.active_message(&message_type) {
        Ok(builder) => builder
            .raw_payload(message_data)
            .send(target)
            .await
            .map(drop),
        Err(err) => Err(err),
    };
    if let Err(err) = &outcome {
        tracing::debug!(%message_type, %err, "channel front: message failed");
    }
    if let Some(prefix) = response_notification {
        let note = ResponseNotification::new(&prefix, &outcome);
        if notes.send(note).await.is_err() {
            tracing::debug!(%prefix, "channel front: notification receiver dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_follow_the_seed_format() {
        let ok = ResponseNotification::new("request_123", &Ok(()));
        assert_eq!(ok.notification, "request_123:ok");
        assert!(ok.is_success);
        let failed = ResponseNotification::new(
            "user_request_456",
            &Err(Error::Handler("Invalid data format".into())),
        );
        assert_eq!(
            failed.notification,
            "user_request_456:err(Invalid data format)"
        );
        assert!(!failed.is_success);
        let unknown = ResponseNotification::new("r", &Err(Error::NoSuchHandler("x".into())));
        assert_eq!(
            unknown.notification,
            r#"r:err(no handler named "x" on the peer)"#
        );
    }
}
