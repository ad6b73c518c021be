//! The in-process link's reused buffers (`src/transport/local/`): frames
//! larger than the buffer it keeps, frames over the peer's limit, many
//! senders on one link at once, and a handler run in place that sends on
//! the link it was called through (the link is busy with that very frame).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use active_message::handler_impls::{
    AmContext, TypedContext, am_handler, typed_unary_handler, typed_unary_handler_async,
};
use active_message::{ActiveMessageManager, ActiveMessageManagerBuilder, Error, InstanceId};
use bytes::Bytes;
use tokio::sync::Notify;

/// Sizes around the link's reused buffer (64 KiB) and well past it.
const SIZES: [usize; 5] = [0, 100, (64 << 10) - 200, (64 << 10) + 1, 300 << 10];

fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .default_timeout(Duration::from_secs(20))
        .endpoint("local://")
        .shm(false)
}

/// A client connected to `server`.
async fn client_of(server: &ActiveMessageManager) -> ActiveMessageManager {
    let client = builder().build().await.unwrap();
    let info = server.peer_info().await;
    client.client().connect_to_peer(info).await.unwrap();
    client
}

/// Payloads received by a one-way handler, and a wake-up per payload.
#[derive(Default)]
struct Received {
    payloads: Mutex<Vec<Vec<u8>>>,
    bell: Notify,
}

impl Received {
    /// Waits until `n` payloads have arrived (a condition, not a clock).
    async fn reach(&self, n: usize) -> Vec<Vec<u8>> {
        loop {
            let rung = self.bell.notified();
            {
                let got = self.payloads.lock().unwrap();
                if got.len() >= n {
                    return got.clone();
                }
            }
            rung.await;
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

async fn echo_server(received: &Arc<Received>) -> ActiveMessageManager {
    let server = builder().build().await.unwrap();
    let echo = typed_unary_handler("echo", |c: TypedContext<Vec<u8>>| Ok(c.input));
    let echo_async =
        typed_unary_handler_async("echo_async", |c: TypedContext<Vec<u8>>| async move {
            Ok(c.input)
        });
    let r = Arc::clone(received);
    let sink = am_handler("sink", move |ctx: AmContext| {
        let r = Arc::clone(&r);
        async move {
            r.payloads.lock().unwrap().push(ctx.payload.to_vec());
            r.bell.notify_one();
            Ok(())
        }
    });
    for (name, handler) in [("echo", echo), ("echo_async", echo_async), ("sink", sink)] {
        server.register_handler(name, handler).await.unwrap();
    }
    server
}

async fn echo(c: &ActiveMessageManager, handler: &str, to: InstanceId, input: &Vec<u8>) -> Vec<u8> {
    let m = c.client().active_message(handler).unwrap();
    let m = m.payload(input).unwrap().expect_response::<Vec<u8>>();
    m.send(to).await.unwrap().await_response().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_every_size_arrive_whole_both_ways() {
    let received = Arc::new(Received::default());
    let server = echo_server(&received).await;
    let client = client_of(&server).await;
    let to = server.instance_id();
    for (i, &len) in SIZES.iter().enumerate() {
        let input = pattern(len, i as u8);
        assert_eq!(
            echo(&client, "echo", to, &input).await,
            input,
            "sync, {len} B"
        );
        assert_eq!(
            echo(&client, "echo_async", to, &input).await,
            input,
            "async, {len} B"
        );
        let m = client.client().active_message("sink").unwrap();
        let raw = Bytes::from(input.clone());
        m.raw_payload(raw)
            .target_instance(to)
            .execute()
            .await
            .unwrap();
        let got = received.reach(i + 1).await;
        assert_eq!(got[i], input, "one-way, {len} B");
    }
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_peer_limit_fail_and_the_link_goes_on() {
    let received = Arc::new(Received::default());
    let server = builder().max_message_bytes(1024).build().await.unwrap();
    let r = Arc::clone(&received);
    let sink = am_handler("sink", move |ctx: AmContext| {
        let r = Arc::clone(&r);
        async move {
            r.payloads.lock().unwrap().push(ctx.payload.to_vec());
            r.bell.notify_one();
            Ok(())
        }
    });
    server.register_handler("sink", sink).await.unwrap();
    let client = client_of(&server).await;
    let (c, to) = (client.client(), server.instance_id());
    let big = pattern(4096, 1);
    let raw = c
        .active_message("sink")
        .unwrap()
        .raw_payload(Bytes::from(big.clone()));
    let sent = raw.target_instance(to).execute().await;
    assert!(
        matches!(sent, Err(Error::PayloadTooLarge { .. })),
        "raw: {sent:?}"
    );
    let typed = c.active_message("sink").unwrap().payload(&big).unwrap();
    let sent = typed.target_instance(to).execute().await;
    assert!(
        matches!(sent, Err(Error::PayloadTooLarge { .. })),
        "archive: {sent:?}"
    );
    let small = pattern(64, 2);
    let m = c
        .active_message("sink")
        .unwrap()
        .raw_payload(Bytes::from(small.clone()));
    m.target_instance(to).execute().await.unwrap();
    assert_eq!(received.reach(1).await, vec![small]);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_senders_on_one_link_each_get_their_own_answers() {
    const SENDERS: u8 = 12;
    const CALLS: usize = 100;
    let received = Arc::new(Received::default());
    let server = echo_server(&received).await;
    let client = Arc::new(client_of(&server).await);
    let to = server.instance_id();
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                for i in 0..CALLS {
                    let input = pattern(40 + i, s);
                    let handler = if i % 2 == 0 { "echo" } else { "echo_async" };
                    assert_eq!(echo(&client, handler, to, &input).await, input);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::into_inner(client).unwrap().shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// Hops a relay chain made, the first hop that could not send on, and a
/// wake-up per hop.
#[derive(Default)]
struct Hops {
    count: AtomicU64,
    failed: Mutex<Option<String>>,
    bell: Notify,
}

/// A relay: each hop sends the count less one back to its sender, from
/// inside the handler (an idle manager runs it in place, on the thread that
/// is still handing over the frame that called it).
fn relay(hops: &Arc<Hops>) -> active_message::HandlerRef {
    let hops = Arc::clone(hops);
    am_handler("relay", move |ctx: AmContext| {
        let hops = Arc::clone(&hops);
        async move {
            let left = u32::from_le_bytes(ctx.payload[..4].try_into().unwrap());
            // Release: pairs with the test's Acquire load.
            hops.count.fetch_add(1, Ordering::Release);
            hops.bell.notify_one();
            if left > 0 {
                let m = ctx
                    .client
                    .active_message("relay")
                    .map_err(|e| e.to_string())?;
                let m = m.raw_payload(Bytes::copy_from_slice(&(left - 1).to_le_bytes()));
                if let Err(err) = m.target_instance(ctx.sender_id).execute().await {
                    *hops.failed.lock().unwrap() = Some(err.to_string());
                    hops.bell.notify_one();
                }
            }
            Ok(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_run_in_place_sends_on_the_link_that_called_it() {
    const HOPS: u32 = 16;
    let hops = Arc::new(Hops::default());
    let server = builder().build().await.unwrap();
    server
        .register_handler("relay", relay(&hops))
        .await
        .unwrap();
    let client = client_of(&server).await;
    client
        .register_handler("relay", relay(&hops))
        .await
        .unwrap();
    let back = client.peer_info().await;
    server.client().connect_to_peer(back).await.unwrap();
    let c = client.client();
    let m = c.active_message("relay").unwrap();
    let m = m.raw_payload(Bytes::copy_from_slice(&(HOPS - 1).to_le_bytes()));
    m.target_instance(server.instance_id())
        .execute()
        .await
        .unwrap();
    loop {
        let rung = hops.bell.notified();
        // Acquire: pairs with the handlers' Release increments.
        if hops.count.load(Ordering::Acquire) >= u64::from(HOPS) {
            break;
        }
        if let Some(err) = hops.failed.lock().unwrap().take() {
            panic!("a hop could not send on: {err}");
        }
        rung.await;
    }
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
