//! A `seq` handler that counts `u64`s and notes each one out of order: the
//! ordering tests of one-way senders share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use active_message::ActiveMessageManager;
use active_message::handler_impls::{ArchivedContext, archived_unary_handler};

use super::eventually;

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
    let seen = Arc::clone(seen);
    let seq = archived_unary_handler("seq", move |c: ArchivedContext<'_, u64>| {
        let n = c.input.to_native();
        // Relaxed: one reader runs this handler; the test reads the tally
        // only after `count` (Release) says everything arrived.
        if seen.next.swap(n + 1, Ordering::Relaxed) != n {
            seen.disorder.fetch_add(1, Ordering::Relaxed);
        }
        seen.count.fetch_add(1, Ordering::Release);
        Ok(())
    });
    server.register_handler("seq", seq).await.unwrap();
}

/// Whether `n` numbers arrived (waiting up to a minute).
pub async fn arrived(seen: &Seen, n: u64) -> bool {
    eventually(Duration::from_secs(60), || async {
        seen.count.load(Ordering::Acquire) >= n
    })
    .await
}
