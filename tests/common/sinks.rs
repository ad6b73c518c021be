//! The server handlers of the `alloc_*` tests that run every pattern: `sink`
//! (async one-way), `sink_zc` (zero-copy one-way), `echo64` and
//! `echo64_async` (typed requests), and the count of one-way messages
//! handled that a client waits on. Included by path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use active_message::ActiveMessageManager;
use active_message::handler_impls::{
    ArchivedContext, TypedContext, am_handler, archived_unary_handler, typed_unary_handler,
    typed_unary_handler_async,
};
use tokio::sync::Notify;

/// Messages the server's one-way handlers ran, and a wake-up per message.
#[derive(Default)]
pub struct Handled {
    count: AtomicU64,
    bell: Notify,
}

impl Handled {
    pub fn bump(&self) {
        // Release: pairs with the waiting client's Acquire load.
        self.count.fetch_add(1, Ordering::Release);
        self.bell.notify_one();
    }

    /// Waits until the count reaches `target` (a condition, not a clock).
    pub async fn reach(&self, target: u64) {
        loop {
            let rung = self.bell.notified();
            // Acquire: pairs with `bump`'s Release.
            if self.count.load(Ordering::Acquire) >= target {
                return;
            }
            rung.await;
        }
    }

    pub fn now(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

/// Registers the four handlers on `server`, counting into `handled`.
pub async fn register(server: &ActiveMessageManager, handled: &Arc<Handled>) {
    let h = Arc::clone(handled);
    let sink = am_handler("sink", move |_ctx| {
        let h = Arc::clone(&h);
        async move {
            h.bump();
            Ok(())
        }
    });
    let h = Arc::clone(handled);
    let sink_zc = archived_unary_handler("sink_zc", move |c: ArchivedContext<'_, Vec<u8>>| {
        std::hint::black_box(c.input.len());
        h.bump();
        Ok(())
    });
    let echo = typed_unary_handler("echo64", |c: TypedContext<[u8; 64]>| Ok(c.input));
    let echo_async =
        typed_unary_handler_async("echo64_async", |c: TypedContext<[u8; 64]>| async move {
            Ok(c.input)
        });
    for (name, handler) in [
        ("sink", sink),
        ("sink_zc", sink_zc),
        ("echo64", echo),
        ("echo64_async", echo_async),
    ] {
        server.register_handler(name, handler).await.unwrap();
    }
}
