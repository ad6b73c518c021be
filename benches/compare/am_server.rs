//! The server side of the active-message cases (handlers, the `am_server` child), the
//! manager configuration of both sides, and the peer-killed case.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use active_message::handler_impls::{
    ArchivedContext, TypedContext, am_handler, archived_unary_handler, typed_unary_handler,
    typed_unary_handler_async, unary_handler_async,
};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, PeerInfo, TransportPolicy, WaitPolicy,
};
use anyhow::{Context, Result, bail};
use tokio::sync::Notify;

use crate::Plan;
use crate::am::Client;
use crate::machine::Snap;
use crate::report::{Metric, Row};
use crate::util::{Args, Ctl, Peer, kv, median_p99};

/// Where both sides listen.
const ENDPOINT: &str = "tcp://127.0.0.1:0";

/// A manager builder for `transport` (`tcp`/`shm`), wait `policy` (shm only:
/// `spin`, `park`, or `adaptive` = the runtime's default `Adaptive`) and ring
/// capacity (0: default). Both bind TCP on loopback (and the shm rendezvous); the
/// transport policy picks the link.
pub fn builder(transport: &str, policy: &str, ring: usize) -> Result<ActiveMessageManagerBuilder> {
    let mut b = ActiveMessageManagerBuilder::new().endpoint(ENDPOINT);
    if ring > 0 {
        b = b.ring_capacity(ring);
    }
    Ok(match transport {
        "tcp" => b.transport_policy(TransportPolicy::TcpOnly),
        _ => {
            let b = b.transport_policy(TransportPolicy::ShmOnly);
            match policy {
                "spin" => b.wait_policy(WaitPolicy::Spin),
                "park" => b.wait_policy(WaitPolicy::Park),
                "adaptive" => b,
                other => bail!("unknown wait policy {other}"),
            }
        }
    })
}

/// The tokio runtime of each side: one thread per process (the client's calls and
/// the link's reader share it), as a 2-core machine running two processes affords.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Counts one-way messages; wakes the barrier when the count reaches its target.
#[derive(Default)]
struct Sink {
    count: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Sink {
    /// One writer at a time: a case's messages come on one link, whose reader
    /// runs the sink's calls in place one after another, so a load and a
    /// store count them (a locked add per message was a tenth of the
    /// zero-copy server's time, and the raw PUSH/PULL receiver pays none).
    /// The `barrier` request comes on the same link after them: by the time
    /// it runs (in place, or handed to the dispatcher through its queue) it
    /// sees every count stored before it.
    fn count_one(&self) {
        let n = self.count.load(Ordering::Relaxed) + 1;
        // Release: pairs with the barrier's loads.
        self.count.store(n, Ordering::Release);
        if n == self.target.load(Ordering::SeqCst) {
            self.reached.notify_one();
        }
    }
}

async fn register(manager: &ActiveMessageManager) -> Result<()> {
    // One per server process, for its whole life: the handlers borrow it,
    // so the async sink does the same work per message as the zero-copy
    // one (one count), with no reference count to clone into each future.
    let sink: &'static Sink = Box::leak(Box::default());
    manager
        .register_handler(
            "echo64",
            typed_unary_handler("echo64", |c: TypedContext<[u8; 64]>| Ok(c.input)),
        )
        .await?;
    // Answers as many bytes as it got, sliced from a buffer of its own: a
    // large request is read where it arrived (the pooled area) and the
    // response copied into the pooled area the other way, with no `Bytes`
    // owner made for the request's held buffer (that would allocate).
    // Made on the first call: every case's server registers this handler,
    // and 16 MiB touched at start would also slow the kill case's victim
    // down on its way out (the kernel frees its pages before the socket
    // closes).
    let own = Arc::new(std::sync::OnceLock::new());
    manager
        .register_handler(
            "echo_raw",
            unary_handler_async("echo_raw", move |c| {
                let len = c.payload.len();
                let own: bytes::Bytes = own
                    .get_or_init(|| bytes::Bytes::from(vec![0x5au8; crate::am::LARGEST_RT]))
                    .clone();
                async move {
                    match own.get(..len) {
                        Some(_) => Ok(Some(own.slice(..len))),
                        None => Err(format!("echo_raw answers at most {} bytes", own.len())),
                    }
                }
            }),
        )
        .await?;
    manager
        .register_handler(
            "probe",
            typed_unary_handler("probe", |_: TypedContext<()>| Ok(Snap::now().to_array())),
        )
        .await?;
    manager
        .register_handler(
            "hang",
            typed_unary_handler_async("hang", |_: TypedContext<u64>| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(0u64)
            }),
        )
        .await?;
    manager
        .register_handler(
            "sink_zc",
            archived_unary_handler("sink_zc", move |c: ArchivedContext<'_, Vec<u8>>| {
                std::hint::black_box(c.input.len());
                sink.count_one();
                Ok(())
            }),
        )
        .await?;
    manager
        .register_handler(
            "sink",
            am_handler("sink", move |_ctx| async move {
                sink.count_one();
                Ok(())
            }),
        )
        .await?;
    manager
        .register_handler(
            "barrier",
            typed_unary_handler_async("barrier", move |c: TypedContext<u64>| {
                let s = sink;
                async move {
                    s.target.store(c.input, Ordering::SeqCst);
                    while s.count.load(Ordering::SeqCst) < c.input {
                        s.reached.notified().await;
                    }
                    Ok(s.count.load(Ordering::SeqCst))
                }
            }),
        )
        .await?;
    crate::stream::register(manager).await
}

/// The server child: builds a manager, registers the handlers, sends its `PeerInfo`
/// (or `error: ..`) and serves until the parent says `stop` or goes away.
pub fn server_child(args: &Args, ctl: Ctl) -> Result<()> {
    let transport: String = args.get("transport")?;
    let policy: String = args.get("policy")?;
    let ring: usize = args.get("ring")?;
    let rt = runtime()?;
    rt.block_on(async move {
        let manager = match builder(&transport, &policy, ring) {
            Ok(b) => b.build().await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                ctl.send(&format!("error: {e:#}"), &[])?;
                return Ok(());
            }
        };
        register(&manager).await?;
        ctl.send(&serde_json::to_string(&manager.peer_info().await)?, &[])?;
        let _ = tokio::task::spawn_blocking(move || ctl.recv()).await;
        manager.shutdown().await?;
        Ok(())
    })
}

/// Peer killed: a call to the server's `hang` handler is pending when the server gets
/// SIGKILL; the time from `kill()` to the call failing, one fresh server per sample.
/// Beside it, the time from `kill()` to EOF on a plain Unix socket the server held
/// (our control socket): the kernel's share (tearing the process down), which no
/// runtime can beat.
pub fn kill(plan: Plan) -> Result<Row> {
    const LABEL: &str = "peer SIGKILLed -> pending call failed (shm)";
    let rt = runtime()?;
    let samples = plan.n(30);
    let (mut ns, mut eof_ns) = (Vec::new(), Vec::new());
    let manager = rt.block_on(builder("shm", "adaptive", 0)?.build())?;
    for _ in 0..samples {
        let mut peer = Peer::spawn(
            "am_server",
            &kv(&[("transport", &"shm"), ("policy", &"adaptive"), ("ring", &0)]),
        )?;
        let (json, _) = peer.ctl.recv().context("server PeerInfo")?;
        let info: PeerInfo = serde_json::from_str(&json).context("server PeerInfo")?;
        let ctl = peer.ctl.try_clone()?;
        let eof = std::thread::spawn(move || {
            let _ = ctl.recv();
            Instant::now()
        });
        let (t0, t1) = rt.block_on(async {
            let client = manager.client();
            client.connect_to_peer(info.clone()).await?;
            let c = Client {
                client,
                target: info.instance_id,
            };
            c.echo(&[1; 64]).await?;
            let status = c
                .client
                .active_message("hang")?
                .payload(&0u64)?
                .expect_response::<u64>()
                .send(c.target)
                .await?;
            let waiter = tokio::spawn(async move {
                let r = status.await_response().await;
                (Instant::now(), r)
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let t0 = Instant::now();
            peer.kill()?;
            let (t1, r) = tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .context("pending call not failed within 10 s")??;
            if r.is_ok() {
                bail!("the pending call succeeded although the server was killed");
            }
            Ok::<_, anyhow::Error>((t0, t1))
        })?;
        let t_eof = eof
            .join()
            .map_err(|_| anyhow::anyhow!("EOF thread panicked"))?;
        ns.push(t1.saturating_duration_since(t0).as_nanos() as u64);
        eof_ns.push(t_eof.saturating_duration_since(t0).as_nanos() as u64);
        let _ = peer.finish();
    }
    rt.block_on(manager.shutdown())?;
    let (median, p99) = median_p99(&mut ns);
    let (eof_median, eof_p99) = median_p99(&mut eof_ns);
    Ok(Row::new(
        "am_shm_kill",
        LABEL,
        samples,
        Metric::Latency { median, p99 },
    )
    .extra("kill->socket EOF median µs", eof_median as f64 / 1e3)
    .extra("kill->socket EOF p99 µs", eof_p99 as f64 / 1e3))
}
