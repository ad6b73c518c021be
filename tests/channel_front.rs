//! The channel front, through the four tests the second seed names.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use active_message::front_handler;
use active_message::{
    ActiveMessageManager, ChannelFront, FrontConfig, HandlerRef, IncomingActiveMessage,
    ResponseNotification,
};
use anyhow::Result;
use common::Flavor;
use tokio::sync::{Mutex, mpsc, watch};

fn message(kind: &str, data: &[u8], prefix: Option<&str>) -> IncomingActiveMessage {
    IncomingActiveMessage {
        message_type: kind.to_string(),
        message_data: data.to_vec(),
        response_notification: prefix.map(str::to_string),
    }
}

async fn manager() -> Result<ActiveMessageManager> {
    Ok(common::builder(Flavor::Local).build().await?)
}

/// Reads `n` notifications, sorted by text (handlers finish in any order).
async fn collect(rx: &mut mpsc::Receiver<ResponseNotification>, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(rx.recv().await.expect("a notification").notification);
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_active_message_flow() -> Result<()> {
    let manager = manager().await?;
    let mut front = ChannelFront::start(&manager, FrontConfig::new(4)).await?;
    let silent_runs = Arc::new(AtomicUsize::new(0));
    let runs = Arc::clone(&silent_runs);
    let mut handlers: HashMap<String, HandlerRef> = HashMap::new();
    handlers.insert(
        "parse".into(),
        front_handler("parse", |data: Vec<u8>| async move {
            std::str::from_utf8(&data)
                .map(drop)
                .map_err(|_| "Invalid data format")
        }),
    );
    handlers.insert(
        "count".into(),
        front_handler("count", move |_| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        }),
    );
    front.register_handlers(handlers).await?;
    let sender = front.message_sender();
    let mut responses = front.take_response_receiver().expect("the receiver");
    assert!(front.take_response_receiver().is_none());

    // No notification asked: the handler runs, nothing comes back for it.
    sender.send(message("count", b"", None)).await?;
    sender
        .send(message("parse", b"Hello, World!", Some("request_123")))
        .await?;
    sender
        .send(message("parse", &[0xff, 0xfe], Some("user_request_456")))
        .await?;
    sender
        .send(message("no_such_type", b"x", Some("r7")))
        .await?;
    sender.send(message("count", b"", Some("counted"))).await?;

    let notes = collect(&mut responses, 4).await;
    assert_eq!(
        notes,
        [
            "counted:ok",
            r#"r7:err(no handler named "no_such_type" on the peer)"#,
            "request_123:ok",
            "user_request_456:err(Invalid data format)",
        ]
    );
    // Both "count" messages ran; only one asked to be told.
    assert_eq!(silent_runs.load(Ordering::SeqCst), 2);
    assert!(responses.try_recv().is_err());
    manager.shutdown().await?;
    Ok(())
}

/// The seed's `MyHandler`: a name and a shared resource it updates.
#[derive(Clone)]
struct MyHandler {
    name: String,
    shared_resource: Arc<Mutex<Vec<String>>>,
}

impl MyHandler {
    async fn handle_message(&self, data: Vec<u8>) -> Result<(), String> {
        let text = String::from_utf8(data).map_err(|e| e.to_string())?;
        let mut resource = self.shared_resource.lock().await;
        resource.push(format!("{}:{text}", self.name));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_resource_capturing_handler() -> Result<()> {
    let manager = manager().await?;
    let mut front = ChannelFront::start(&manager, FrontConfig::new(2)).await?;
    let shared_resource = Arc::new(Mutex::new(Vec::new()));
    let handler = MyHandler {
        name: "my_handler".into(),
        shared_resource: Arc::clone(&shared_resource),
    };
    let mut handlers: HashMap<String, HandlerRef> = HashMap::new();
    handlers.insert(
        "my_message_type".into(),
        front_handler("my_message_type", move |data| {
            let handler = handler.clone();
            async move { handler.handle_message(data).await }
        }),
    );
    front.register_handlers(handlers).await?;
    let sender = front.message_sender();
    let mut responses = front.take_response_receiver().expect("the receiver");
    for word in ["a", "b", "c"] {
        sender
            .send(message("my_message_type", word.as_bytes(), Some(word)))
            .await?;
    }
    assert_eq!(collect(&mut responses, 3).await, ["a:ok", "b:ok", "c:ok"]);
    let mut seen = shared_resource.lock().await.clone();
    seen.sort();
    assert_eq!(seen, ["my_handler:a", "my_handler:b", "my_handler:c"]);
    manager.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_communication_integration() -> Result<()> {
    const N: usize = 200;
    let manager = manager().await?;
    // A queue far smaller than the burst: senders wait, nothing is lost.
    let config = FrontConfig {
        queue_capacity: 4,
        ..FrontConfig::new(3)
    };
    let mut front = ChannelFront::start(&manager, config).await?;
    let mut handlers: HashMap<String, HandlerRef> = HashMap::new();
    handlers.insert(
        "even".into(),
        front_handler("even", |data: Vec<u8>| async move {
            match data[0] % 2 {
                0 => Ok(()),
                _ => Err(format!("{} is odd", data[0])),
            }
        }),
    );
    front.register_handlers(handlers).await?;
    let sender = front.message_sender();
    let mut responses = front.take_response_receiver().expect("the receiver");
    // Dropping the front: the receiver ends once the sender task is done and
    // the last message finished.
    drop(front);

    let producer = tokio::spawn(async move {
        for i in 0..N {
            let byte = u8::try_from(i % 256).expect("small");
            let prefix = format!("m{i}");
            sender
                .send(message("even", &[byte], Some(&prefix)))
                .await
                .expect("the front takes messages");
        }
    });
    let consumer = tokio::spawn(async move {
        let mut ok = BTreeSet::new();
        let mut failed = BTreeSet::new();
        while let Some(note) = responses.recv().await {
            match note.is_success {
                true => ok.insert(note.notification),
                false => failed.insert(note.notification),
            };
        }
        (ok, failed)
    });
    producer.await?;
    let (ok, failed) = consumer.await?;
    assert_eq!(ok.len() + failed.len(), N);
    assert!(ok.contains("m0:ok") && ok.contains("m198:ok"));
    assert!(failed.contains("m1:err(1 is odd)"));
    assert_eq!(failed.len(), N / 2);
    manager.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_concurrency_performance() -> Result<()> {
    const LIMIT: usize = 3;
    const MESSAGES: usize = 4 * LIMIT;
    let manager = manager().await?;
    let mut front = ChannelFront::start(&manager, FrontConfig::new(LIMIT)).await?;
    let (running_tx, mut running) = watch::channel(0usize);
    let running_tx = Arc::new(running_tx);
    let (gate, _) = watch::channel(false);
    let gate = Arc::new(gate);
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, g, p) = (
        Arc::clone(&running_tx),
        Arc::clone(&gate),
        Arc::clone(&peak),
    );
    let mut handlers: HashMap<String, HandlerRef> = HashMap::new();
    handlers.insert(
        "work".into(),
        front_handler("work", move |_| {
            let (running, mut gate, peak) = (Arc::clone(&r), g.subscribe(), Arc::clone(&p));
            async move {
                // The peak is taken with the count, so a test that saw the
                // count reach the limit sees the peak too.
                running.send_modify(|n| {
                    *n += 1;
                    peak.fetch_max(*n, Ordering::SeqCst);
                });
                let open = gate.wait_for(|open| *open).await.map(drop);
                running.send_modify(|n| *n -= 1);
                open.map_err(|e| e.to_string())
            }
        }),
    );
    front.register_handlers(handlers).await?;
    let sender = front.message_sender();
    let mut responses = front.take_response_receiver().expect("the receiver");
    for i in 0..MESSAGES {
        let prefix = format!("w{i}");
        sender.send(message("work", b"", Some(&prefix))).await?;
    }
    // The first LIMIT messages run and block on the gate; the others stay
    // queued: the front took no more off the queue than it may run.
    running.wait_for(|n| *n >= LIMIT).await?;
    assert_eq!(sender.capacity(), 64 - (MESSAGES - LIMIT));
    assert_eq!(peak.load(Ordering::SeqCst), LIMIT);
    gate.send_replace(true);
    let notes = collect(&mut responses, MESSAGES).await;
    assert!(notes.iter().all(|n| n.ends_with(":ok")), "{notes:?}");
    assert_eq!(peak.load(Ordering::SeqCst), LIMIT);
    manager.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_can_feed_a_chosen_peer_over_tcp() -> Result<()> {
    let worker = common::builder(Flavor::Tcp).build().await?;
    worker
        .register_handler(
            "store",
            front_handler("store", |data: Vec<u8>| async move {
                match data.is_empty() {
                    true => Err("empty block"),
                    false => Ok(()),
                }
            }),
        )
        .await?;
    let leader = common::builder(Flavor::Tcp).build().await?;
    let config = FrontConfig {
        target: Some(worker.peer_info().await),
        ..FrontConfig::new(2)
    };
    let mut front = ChannelFront::start(&leader, config).await?;
    let sender = front.message_sender();
    let mut responses = front.take_response_receiver().expect("the receiver");
    sender.send(message("store", b"block", Some("a"))).await?;
    sender.send(message("store", b"", Some("b"))).await?;
    assert_eq!(
        collect(&mut responses, 2).await,
        ["a:ok", "b:err(empty block)"]
    );
    // Nothing of it ran on the leader, which has no such handler.
    assert!(!leader.list_handlers().await.contains(&"store".to_string()));
    leader.shutdown().await?;
    worker.shutdown().await?;
    Ok(())
}
