//! A `seq` handler that counts `u64`s and notes each one out of order: the
//! ordering tests of one-way senders share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::HandlerRef;
use active_message::handler_impls::{ArchivedContext, archived_unary_handler};
use active_message::{ActiveMessageManager, OneWaySender, TransportPolicy};

use super::process::ServerProcess;
use super::{Flavor, eventually};

/// What the `seq` handler saw: how many, and how many out of order.
#[derive(Default)]
pub struct Seen {
    pub count: AtomicU64,
    pub disorder: AtomicU64,
    /// The next number expected.
    pub next: AtomicU64,
}

/// Registers `seq`, which counts `u64`s and notes each one that is not the
/// next in order.
pub async fn register_seq(server: &ActiveMessageManager, seen: &Arc<Seen>) {
    let seq = seq_handler("seq", seen);
    server.register_handler("seq", seq).await.unwrap();
}

/// The `seq` handler under another name, with its own tally.
pub fn seq_handler(name: &str, seen: &Arc<Seen>) -> HandlerRef {
    let seen = Arc::clone(seen);
    archived_unary_handler(name, move |c: ArchivedContext<'_, u64>| {
        let n = c.input.to_native();
        // Relaxed: one reader runs this handler; the test reads the tally
        // only after `count` (Release) says everything arrived.
        if seen.next.swap(n + 1, Ordering::Relaxed) != n {
            seen.disorder.fetch_add(1, Ordering::Relaxed);
        }
        seen.count.fetch_add(1, Ordering::Release);
        Ok(())
    })
}

/// Whether `n` numbers arrived (waiting up to a minute).
pub async fn arrived(seen: &Seen, n: u64) -> bool {
    eventually(Duration::from_secs(60), || async {
        seen.count.load(Ordering::Acquire) >= n
    })
    .await
}

/// An `am serve` child with 64 KiB rings, a manager linked to it over shared
/// memory only, and a prepared sender to its `note` handler that gives up
/// after 300 ms (the stopped- and killed-peer tests).
pub async fn note_sender_to_worker() -> (ServerProcess, ActiveMessageManager, OneWaySender) {
    let args = ["--endpoint", "local://", "--ring-capacity", "65536"];
    let worker = tokio::task::spawn_blocking(move || ServerProcess::start(&args))
        .await
        .unwrap();
    let manager = super::builder(Flavor::Shm)
        .transport_policy(TransportPolicy::ShmOnly)
        .build()
        .await
        .unwrap();
    let client = manager.client();
    client.connect_to_peer(worker.info.clone()).await.unwrap();
    let sender = client
        .one_way_sender("note", worker.info.instance_id)
        .unwrap()
        .timeout(Duration::from_millis(300));
    (worker, manager, sender)
}
