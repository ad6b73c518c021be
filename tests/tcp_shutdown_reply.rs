//! A handler that shuts its own manager down (as `_request_shutdown` does)
//! still gets its answer to the caller: the shutdown drain waits for a
//! handler run in place by the dispatcher (a TCP invocation), not only for
//! handlers that got a task of their own.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, TransportPolicy};

fn tcp() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        .default_timeout(Duration::from_secs(20))
        .shutdown_timeout(Duration::from_secs(20))
}

/// Whether the manager's shutdown is past admitting and waits for handlers
/// (this one counted among them), or is over (then it did not wait).
fn drain_waits_for_me_or_is_done(m: &ActiveMessageManager) -> bool {
    if m.cancel_token().is_cancelled() {
        return true;
    }
    let stats = m.stats();
    !m.client().is_admitting() && stats.handlers_running > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_shuts_its_manager_down_still_answers_over_tcp() {
    let server = tcp().build().await.unwrap();
    let me: Arc<OnceLock<ActiveMessageManager>> = Arc::new(OnceLock::new());
    let slot = Arc::clone(&me);
    let handler = typed_unary_handler("stop_now", move |c: TypedContext<u32>| {
        let m = slot.get().expect("set before the first call").clone();
        let stopper = m.clone();
        // On a thread of its own: a task spawned here would sit in this
        // worker's LIFO slot, which no other worker steals, behind this
        // handler.
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || rt.block_on(stopper.shutdown()));
        // The shutdown runs meanwhile. Until it waits
        // for this handler (or, were it not counted, has finished and
        // closed the link), the answer is held back: the outcome does not
        // hang on which thread wins.
        while !drain_waits_for_me_or_is_done(&m) {
            std::thread::yield_now();
        }
        Ok(c.input + 1)
    });
    server.register_handler("stop_now", handler).await.unwrap();
    me.set(server.clone()).ok().unwrap();

    let client = tcp().build().await.unwrap();
    let info = server.peer_info().await;
    client.client().connect_to_peer(info).await.unwrap();
    let answer = client
        .client()
        .active_message("stop_now")
        .unwrap()
        .payload(&41u32)
        .unwrap()
        .expect_response::<u32>()
        .send(server.instance_id())
        .await
        .unwrap()
        .await_response()
        .await;
    assert_eq!(
        answer.unwrap(),
        42,
        "the answer sent before the links closed"
    );
    server.shutdown().await.unwrap();
    client.shutdown().await.unwrap();
}
