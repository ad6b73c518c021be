//! The handler registry: name -> handler, registration events, and waiting
//! for a handler to appear (no polling).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Notify, broadcast};

use super::HandlerRef;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, is_system_name, validate_handler_name, validate_user_handler_name};
use crate::stats::{HandlerStat, HandlerStats};

/// The next registry's id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Capacity of the handler-event broadcast (slow listeners see `Lagged`).
const EVENT_CAPACITY: usize = 1024;

/// A change in the set of registered handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerEvent {
    /// A handler became callable.
    Registered {
        /// Handler name.
        name: String,
        /// The manager it lives on.
        instance: InstanceId,
    },
    /// A handler was removed.
    Deregistered {
        /// Handler name.
        name: String,
        /// The manager it lived on.
        instance: InstanceId,
    },
}

/// A registered handler and its counters (they go when it is deregistered).
struct Entry {
    handler: HandlerRef,
    stats: Arc<HandlerStats>,
}

/// Name -> handler map shared by the manager and the dispatcher.
pub(crate) struct HandlerRegistry {
    handlers: DashMap<String, Entry>,
    events: broadcast::Sender<HandlerEvent>,
    changed: Notify,
    instance: InstanceId,
    /// Unique per registry in the process (keys the per-thread lookup).
    id: u64,
    /// Bumped after every register and deregister (see `lookup.rs`).
    generation: AtomicU64,
}

impl HandlerRegistry {
    /// An empty registry for the manager `instance`.
    pub(crate) fn new(instance: InstanceId) -> Arc<Self> {
        Arc::new(Self {
            handlers: DashMap::new(),
            events: broadcast::channel(EVENT_CAPACITY).0,
            changed: Notify::new(),
            instance,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Acquire: pairs with the Release in `changed_now`, so a lookup that
    /// sees the old generation began before the change finished.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Release: pairs with the Acquire in `generation`; called after the
    /// map changed, so a reader that sees the new value looks up again.
    fn changed_now(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Registers a user handler; it is callable when this returns.
    pub(crate) fn register(&self, name: String, handler: HandlerRef) -> Result<()> {
        validate_user_handler_name(&name)?;
        self.insert(name, handler)
    }

    /// Registers a system (`_`-prefixed) handler.
    pub(crate) fn register_system(&self, name: &str, handler: HandlerRef) -> Result<()> {
        validate_handler_name(name)?;
        if !is_system_name(name) {
            return Err(Error::InvalidHandlerName(format!(
                "{name:?} is not a system name"
            )));
        }
        self.insert(name.to_owned(), handler)
    }

    fn insert(&self, name: String, handler: HandlerRef) -> Result<()> {
        match self.handlers.entry(name.clone()) {
            dashmap::Entry::Occupied(_) => return Err(Error::HandlerExists(name)),
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Entry {
                    handler,
                    stats: Arc::default(),
                });
            }
        }
        self.changed_now();
        self.changed.notify_waiters();
        // No receivers is fine: nobody listens for events.
        let _ = self.events.send(HandlerEvent::Registered {
            name,
            instance: self.instance,
        });
        Ok(())
    }

    /// Removes a user handler. Returns whether it was registered.
    pub(crate) fn deregister(&self, name: &str) -> Result<bool> {
        if is_system_name(name) {
            return Err(Error::InvalidHandlerName(format!(
                "{name:?}: system handlers cannot be removed"
            )));
        }
        let removed = self.handlers.remove(name).is_some();
        self.changed_now();
        if removed {
            let _ = self.events.send(HandlerEvent::Deregistered {
                name: name.to_owned(),
                instance: self.instance,
            });
        }
        Ok(removed)
    }

    /// Removes a system handler registered for a while (a cohort's).
    pub(crate) fn deregister_system(&self, name: &str) -> bool {
        let removed = self.handlers.remove(name).is_some();
        self.changed_now();
        if removed {
            let _ = self.events.send(HandlerEvent::Deregistered {
                name: name.to_owned(),
                instance: self.instance,
            });
        }
        removed
    }

    /// The handler registered under `name` and its counters (two reference
    /// count increments; nothing allocated).
    pub(crate) fn get_counted(&self, name: &str) -> Option<(HandlerRef, Arc<HandlerStats>)> {
        self.handlers
            .get(name)
            .map(|e| (Arc::clone(&e.handler), Arc::clone(&e.stats)))
    }

    /// Every registered handler's counters, sorted by name.
    pub(crate) fn stats(&self) -> Vec<HandlerStat> {
        let mut stats: Vec<HandlerStat> = self
            .handlers
            .iter()
            .map(|e| e.stats.values(e.key()))
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Whether `name` is registered.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Every registered name, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.iter().map(|e| e.key().clone()).collect();
        names.sort();
        names
    }

    /// Subscribes to registration events.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<HandlerEvent> {
        self.events.subscribe()
    }

    /// Waits until `name` is registered or `timeout` passes; true if it is there.
    pub(crate) async fn wait_for(&self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register interest before checking, so a registration between the
            // check and the await is not missed.
            notified.as_mut().enable();
            if self.contains(name) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.contains(name);
            }
        }
    }
}
