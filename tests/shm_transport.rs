//! Two managers in one process talking over the shared-memory transport only
//! (`TransportPolicy::ShmOnly`): every pattern and handler kind, long runs,
//! 64 MiB payloads, backpressure, shutdown hygiene.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use active_message::handler_impls::{
    ArchivedContext, TypedContext, am_handler, archived_unary_handler, typed_unary_handler,
    typed_unary_handler_async, unary_handler,
};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Error, TransportKind, TransportPolicy,
    WaitPolicy,
};
use bytes::Bytes;
use tokio::sync::Semaphore;

fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(20))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Polls `check` every millisecond until it holds or `within` passes.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

async fn register_handlers(server: &ActiveMessageManager, notes: Arc<AtomicU64>) {
    let handlers = [
        typed_unary_handler("echo", |c: TypedContext<String>| Ok(c.input)),
        typed_unary_handler_async("echo_async", |c: TypedContext<String>| async move {
            Ok(c.input)
        }),
        archived_unary_handler("echo_archived", |c: ArchivedContext<'_, String>| {
            Ok(c.input.as_str().to_owned())
        }),
        unary_handler("echo_bytes", |c| Ok(Some(c.payload.into()))),
        typed_unary_handler("echo_vec", |c: TypedContext<Vec<u8>>| Ok(c.input)),
        archived_unary_handler("echo_vec_archived", |c: ArchivedContext<'_, Vec<u8>>| {
            Ok(c.input.as_slice().to_vec())
        }),
        typed_unary_handler(
            "fail",
            |_: TypedContext<String>| -> Result<String, String> { Err("boom".into()) },
        ),
        am_handler("note", move |_| {
            notes.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        }),
    ];
    for handler in handlers {
        let name = handler.name().to_owned();
        server.register_handler(name, handler).await.unwrap();
    }
}

struct Pair {
    client: ActiveMessageManager,
    server: ActiveMessageManager,
    notes: Arc<AtomicU64>,
}

async fn pair_with(
    client: ActiveMessageManagerBuilder,
    server: ActiveMessageManagerBuilder,
) -> Pair {
    let server = server.build().await.unwrap();
    let notes = Arc::new(AtomicU64::new(0));
    register_handlers(&server, Arc::clone(&notes)).await;
    let client = client.build().await.unwrap();
    let info = server.peer_info().await;
    assert!(info.shm_endpoint.as_deref().unwrap().starts_with("shm:///"));
    client.client().connect_to_peer(info).await.unwrap();
    Pair {
        client,
        server,
        notes,
    }
}

async fn pair() -> Pair {
    pair_with(builder(), builder()).await
}

impl Pair {
    async fn request(&self, name: &str, input: &str) -> Result<String, Error> {
        self.client
            .client()
            .active_message(name)?
            .payload(input)?
            .expect_response::<String>()
            .send(self.server.instance_id())
            .await?
            .await_response()
            .await
    }

    async fn shutdown(self) {
        self.client.shutdown().await.unwrap();
        self.server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pattern_and_handler_kind_runs_over_shm() {
    let p = pair().await;
    let c = p.client.client();
    let target = p.server.instance_id();
    let peers = p.client.stats().peers;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].transport, TransportKind::Shm);

    for name in ["echo", "echo_async", "echo_archived"] {
        assert_eq!(p.request(name, "typed").await.unwrap(), "typed", "{name}");
        c.active_message(name)
            .unwrap()
            .payload("confirmed")
            .unwrap()
            .send(target)
            .await
            .unwrap();
        let receipt = c
            .active_message(name)
            .unwrap()
            .payload("two-phase")
            .unwrap()
            .expect_response::<String>()
            .detach_receipt()
            .send(target)
            .await
            .unwrap();
        let response = receipt.await_receipt().await.unwrap();
        assert_eq!(response.await_response().await.unwrap(), "two-phase");
    }
    let raw = c
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(Bytes::from_static(b"raw bytes"))
        .expect_response::<()>()
        .send(target)
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert_eq!(&raw[..], b"raw bytes");

    let err = p.request("fail", "x").await.unwrap_err();
    assert!(
        matches!(err, Error::Handler(ref m) if m == "boom"),
        "{err:?}"
    );
    let err = p.request("missing", "x").await.unwrap_err();
    assert!(matches!(err, Error::NoSuchHandler(_)), "{err:?}");

    for _ in 0..3 {
        c.active_message("note")
            .unwrap()
            .target_instance(target)
            .execute()
            .await
            .unwrap();
    }
    c.active_message("note")
        .unwrap()
        .send(target)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || p.notes.load(Ordering::SeqCst)
            == 4)
        .await
    );

    // System handlers ride the same link.
    let health = c.health_check(target).await.unwrap();
    assert_eq!(health.instance_id, target);
    assert!(
        c.list_handlers(target)
            .await
            .unwrap()
            .contains(&"echo".to_owned())
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_in_a_row() {
    let p = pair().await;
    for i in 0..10_000u32 {
        let input = i.to_string();
        let name = if i % 2 == 0 { "echo" } else { "echo_async" };
        assert_eq!(p.request(name, &input).await.unwrap(), input);
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wait_policy_works() {
    for policy in [
        WaitPolicy::Spin,
        WaitPolicy::Park,
        WaitPolicy::Adaptive {
            spin: Duration::from_micros(20),
        },
    ] {
        let p = pair_with(builder().wait_policy(policy), builder().wait_policy(policy)).await;
        for i in 0..500u32 {
            let input = i.to_string();
            assert_eq!(
                p.request("echo", &input).await.unwrap(),
                input,
                "{policy:?}"
            );
        }
        p.shutdown().await;
    }
    // Mixed: a spinning client and a parking server still wake each other.
    let p = pair_with(
        builder().wait_policy(WaitPolicy::Spin),
        builder().wait_policy(WaitPolicy::Park),
    )
    .await;
    for i in 0..200u32 {
        let input = i.to_string();
        assert_eq!(p.request("echo_async", &input).await.unwrap(), input);
    }
    p.shutdown().await;
}

/// 64 MiB of a non-repeating-looking pattern, built fast even in debug builds.
fn big_payload(len: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..251u32 * 16).map(|i| (i * 7 % 251) as u8).collect();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = block.len().min(len - out.len());
        out.extend_from_slice(&block[..n]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_payload_of_64_mib_round_trips_intact() {
    const LEN: usize = 64 << 20;
    let limited = || builder().max_message_bytes(LEN);
    let p = pair_with(limited(), limited()).await;
    let c = p.client.client();
    let target = p.server.instance_id();
    let raw = Bytes::from(big_payload(LEN));
    let back = c
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(raw.clone())
        .expect_response::<()>()
        .send(target)
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    assert!(back == raw, "raw 64 MiB payload came back altered");

    // Over the limit: refused before anything is sent.
    let err = c
        .active_message("echo_bytes")
        .unwrap()
        .raw_payload(Bytes::from(vec![0u8; LEN + 1]))
        .send(target)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    // The link is still fine.
    assert_eq!(p.request("echo", "after").await.unwrap(), "after");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_vec_of_64_mib_round_trips_intact() {
    let p = pair().await;
    let c = p.client.client();
    let target = p.server.instance_id();
    // Typed both ways (validated and deserialized on each side), 1 MiB:
    // already twice a ring record, so it takes the memfd path.
    let value = big_payload(1 << 20);
    let back: Vec<u8> = c
        .active_message("echo_vec")
        .unwrap()
        .payload(&value)
        .unwrap()
        .expect_response::<Vec<u8>>()
        .send(target)
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert!(back == value, "archived 1 MiB Vec<u8> came back altered");

    // 64 MiB (less the archive's own header): archived straight into a
    // memfd on the way out, validated in place by the server, and compared
    // archive-to-archive on return (rkyv validation is slow in debug builds).
    let value = big_payload((64 << 20) - 64);
    let back = c
        .active_message("echo_vec_archived")
        .unwrap()
        .payload(&value)
        .unwrap()
        .expect_response::<Vec<u8>>()
        .send(target)
        .await
        .unwrap()
        .await_response_raw()
        .await
        .unwrap();
    use active_message::Payload;
    assert!(
        back[..] == value.encode().unwrap()[..],
        "archived 64 MiB Vec<u8> came back altered"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_ring_and_slow_handler_make_senders_wait_and_lose_nothing() {
    const N: u64 = 400;
    let small = || builder().ring_capacity(4096);
    let server = small()
        .max_concurrent_handlers(1)
        .inbox_capacity(1)
        .build()
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let (g, s) = (Arc::clone(&gate), Arc::clone(&seen));
    server
        .register_handler(
            "slow",
            am_handler("slow", move |c| {
                let (g, s) = (Arc::clone(&g), Arc::clone(&s));
                async move {
                    g.acquire().await.unwrap().forget();
                    let n = u64::from_le_bytes(c.payload[..8].try_into().unwrap());
                    // Arrivals keep the sender's order.
                    assert_eq!(s.fetch_add(1, Ordering::SeqCst), n);
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let client = small().build().await.unwrap();
    client
        .client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let c = client.client();
    let target = server.instance_id();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let sender = tokio::spawn(async move {
        for i in 0..N {
            c.active_message("slow")
                .unwrap()
                .raw_payload(Bytes::copy_from_slice(&i.to_le_bytes()))
                .target_instance(target)
                .execute()
                .await
                .unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The 4 KiB ring, the one-slot inbox and the one running handler hold
    // far fewer than N frames: with the handler stalled the sender must block.
    assert!(eventually(Duration::from_secs(5), || sent.load(Ordering::SeqCst) >= 20).await);
    assert!(!sender.is_finished());
    assert!(sent.load(Ordering::SeqCst) < N);
    gate.add_permits(N as usize);
    tokio::time::timeout(Duration::from_secs(20), sender)
        .await
        .unwrap()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || seen.load(Ordering::SeqCst) == N).await);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_dir_is_created_and_shutdown_leaves_nothing_behind() {
    let before = dev_shm();
    let dir = std::env::temp_dir().join(format!("am-shm-{}", uuid::Uuid::new_v4()));
    let dir = dir.join("rendezvous");
    let b = || builder().shm_dir(&dir);
    let server = b().build().await.unwrap();
    register_handlers(&server, Arc::default()).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    let info = server.peer_info().await;
    let socket = info
        .shm_endpoint
        .as_deref()
        .unwrap()
        .strip_prefix("shm://")
        .unwrap()
        .to_owned();
    assert!(socket.starts_with(dir.to_str().unwrap()));
    assert!(std::path::Path::new(&socket).exists());

    let client = b().build().await.unwrap();
    client.client().connect_to_peer(info).await.unwrap();
    let out: String = client
        .client()
        .active_message("echo")
        .unwrap()
        .payload("x")
        .unwrap()
        .expect_response()
        .send(server.instance_id())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap();
    assert_eq!(out, "x");

    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    assert!(!std::path::Path::new(&socket).exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(dev_shm(), before);

    // A directory others can enter is refused.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = b().build().await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_endpoint_alone_and_transport_policies() {
    // `shm://` alone: shared memory (plus in-process), no TCP.
    let server = ActiveMessageManagerBuilder::new()
        .endpoint("shm://")
        .build()
        .await
        .unwrap();
    register_handlers(&server, Arc::default()).await;
    let info = server.peer_info().await;
    assert!(info.tcp_endpoint.is_none());
    assert!(info.shm_endpoint.is_some() && info.local_endpoint.is_some());

    // Auto picks shared memory for a peer on this host.
    let auto = ActiveMessageManagerBuilder::new()
        .endpoint("shm://")
        .build()
        .await
        .unwrap();
    auto.client().connect_to_peer(info.clone()).await.unwrap();
    assert_eq!(auto.stats().peers[0].transport, TransportKind::Shm);

    // TcpOnly never uses shared memory (here: in-process, the only other way).
    let tcp_only = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::TcpOnly)
        .build()
        .await
        .unwrap();
    tcp_only
        .client()
        .connect_to_peer(info.clone())
        .await
        .unwrap();
    assert_eq!(tcp_only.stats().peers[0].transport, TransportKind::Local);

    // ShmOnly refuses a peer without a shared-memory endpoint.
    let shm_only = builder().build().await.unwrap();
    let mut no_shm = info.clone();
    no_shm.shm_endpoint = None;
    let err = shm_only.client().connect_to_peer(no_shm).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");

    // shm(false) binds no shared memory and rejects what needs it.
    let plain = ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .shm(false)
        .build()
        .await
        .unwrap();
    assert!(plain.peer_info().await.shm_endpoint.is_none());
    for b in [
        ActiveMessageManagerBuilder::new()
            .endpoint("shm://")
            .shm(false),
        builder().shm(false),
    ] {
        assert!(matches!(b.build().await, Err(Error::Config(_))));
    }
    for m in [server, auto, tcp_only, shm_only, plain] {
        m.shutdown().await.unwrap();
    }
}
