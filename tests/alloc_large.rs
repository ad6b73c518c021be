//! Heap allocations per message over shared memory, counted by a global
//! allocator, both sides together (both managers live in this process), per
//! pattern (one-way, confirmed, request/response), handler kind (async
//! `am_handler`, synchronous `unary_handler`, `unary_handler_async`, zero-copy
//! `archived_unary_handler`, owned `typed_unary_handler`), payload form
//! (raw bytes copied into the pool, a loan, a typed archive) and size
//! (64 B, 64 KiB: a medium frame in a ring record, 1 MiB, 16 MiB); a pipelined stream of 16 MiB one-way
//! messages, sent without waiting for their handler; and 64 KiB, 1 and 16 MiB
//! responses to small requests, read with `await_response_payload` (the
//! reader writes a large inline reply straight into the pool, the caller
//! keeps it where it arrived).
//!
//! Asserted: none per message, whole messages and not only what the large
//! path adds, for every case but one: a `typed_unary_handler` decodes its
//! input into the owned value it asked for (one `Vec` here, at every size).
//! A large frame reaches its handler as a `PayloadBuf` held in the sender's
//! pooled segment (no `Bytes` owner), a synchronous bytes handler run in
//! place takes the frame as it lies (no copy), and an archive that does not
//! fit a ring record tries the next size without boxing an error.
//!
//! Two more are by design and not what a large message costs: a loan small
//! enough for a ring record is a heap buffer (one allocation, see
//! `Loan`), and typed handlers are measured up to 1 MiB only (in a debug
//! build rkyv validates and decodes a 16 MiB `Vec<u8>` element by element,
//! seconds a case; from 1 MiB up they take the same pooled path).
//!
//! Each case warms up until a batch costs what it should (at most a few
//! batches: the pool maps the segments a pattern keeps in flight, the
//! runtime's tables and channels reach their size), then counts. Counts are
//! rounded per message: a tokio channel block per 32 queued messages is no
//! per-message cost. Its own test binary: the allocator counts every thread
//! of the process, so no other test may run beside it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use active_message::MessageBuilder;
use active_message::handler_impls::{
    AmContext, ArchivedContext, TypedContext, am_handler, archived_unary_handler,
    typed_unary_handler, unary_handler, unary_handler_async,
};
use active_message::transport::shm::pool_usage;
use bytes::Bytes;
use common::{Flavor, Pair, pair};

#[global_allocator]
static GLOBAL: common::counting::Counting = common::counting::Counting;

/// Calls per warm-up batch.
const BATCH: u64 = 4;
/// Warm-up batches at most.
const BATCHES: u64 = 8;
/// Calls counted.
const CALLS: u64 = 12;
const SIZES: [usize; 4] = [64, 64 << 10, 1 << 20, 16 << 20];

/// How a call carries its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// `raw_payload(Bytes)`: copied into the ring or the pooled area.
    Copied,
    /// `client.loan()`, filled by one copy, sent with `loaned`.
    Loaned,
    /// `payload(&Vec<u8>)`: archived straight into the ring or the pool.
    Archived,
}

/// What a call waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    OneWay,
    Confirmed,
    Request,
}

/// One handler kind under test, with the payload forms it takes.
struct Kind {
    handler: &'static str,
    bodies: &'static [Body],
    /// Allocations a message costs by design, at every size.
    by_design: f64,
    /// Largest payload measured.
    max_len: usize,
}

const KINDS: [Kind; 5] = [
    Kind {
        handler: "sink",
        bodies: &[Body::Copied, Body::Loaned],
        by_design: 0.0,
        max_len: 16 << 20,
    },
    Kind {
        handler: "len",
        bodies: &[Body::Copied, Body::Loaned],
        by_design: 0.0,
        max_len: 16 << 20,
    },
    Kind {
        handler: "len_async",
        bodies: &[Body::Copied, Body::Loaned],
        by_design: 0.0,
        max_len: 16 << 20,
    },
    Kind {
        handler: "zc",
        bodies: &[Body::Archived],
        by_design: 0.0,
        max_len: 1 << 20,
    },
    // The owned `Vec<u8>` the handler's input type asks for.
    Kind {
        handler: "typed",
        bodies: &[Body::Archived],
        by_design: 1.0,
        max_len: 1 << 20,
    },
];

/// Allocations per call of `n` calls of `call`.
async fn count<F, Fut>(n: u64, call: &mut F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = common::counting::allocations();
    for _ in 0..n {
        call().await;
    }
    let after = common::counting::allocations();
    (after - before) as f64 / n as f64
}

/// Segments the pools of this process have mapped, both sides.
fn segments() -> u64 {
    let usage = pool_usage();
    usage.tx_segments + usage.rx_segments
}

/// Allocations per call of `call` over `CALLS` calls in the steady state:
/// after warm-up batches until one costs `expected` a call (or `BATCHES` of
/// them), and counted again while the pool still grew during the count (a
/// pattern whose next message can find its last buffer not yet returned
/// keeps a second one in flight; when that happens first is a matter of
/// timing, and the growth is bounded).
async fn per_call<F, Fut>(expected: f64, mut call: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..BATCHES {
        if count(BATCH, &mut call).await.round() == expected {
            break;
        }
    }
    let mut got = 0.0;
    for _ in 0..BATCHES {
        let before = segments();
        got = count(CALLS, &mut call).await;
        if segments() == before {
            break;
        }
    }
    got
}

/// The bodies of one size: raw bytes and the same as a typed value.
struct Input {
    raw: Bytes,
    typed: Vec<u8>,
}

impl Input {
    fn new(len: usize) -> Self {
        let raw = Bytes::from(vec![7u8; len]);
        // Promoted to its shared form outside the counts.
        drop(raw.clone());
        Self {
            raw,
            typed: vec![7u8; len],
        }
    }
}

/// Sends one message as `how` says, waiting for what `pattern` waits for.
async fn call(p: &Pair, seen: &AtomicU64, handler: &str, input: &Input, how: (Body, Pattern)) {
    let client = p.client.client();
    let m = client.active_message(handler).unwrap();
    let m: MessageBuilder<'_> = match how.0 {
        Body::Copied => m.raw_payload(input.raw.clone()),
        Body::Loaned => {
            let mut loan = client.loan(p.target(), input.raw.len()).await.unwrap();
            loan.copy_from_slice(&input.raw);
            m.loaned(loan)
        }
        Body::Archived => m.payload(&input.typed).unwrap(),
    };
    match how.1 {
        Pattern::OneWay => {
            // Relaxed: a counter polled until it moves.
            let target = seen.load(Ordering::Relaxed) + 1;
            m.target_instance(p.target()).execute().await.unwrap();
            // Yielding allocates nothing (a timer would).
            while seen.load(Ordering::Relaxed) < target {
                tokio::task::yield_now().await;
            }
        }
        Pattern::Confirmed => {
            m.send(p.target()).await.unwrap();
        }
        Pattern::Request => {
            let out = m
                .expect_response::<()>()
                .send(p.target())
                .await
                .unwrap()
                .await_response_raw()
                .await
                .unwrap();
            assert!(out.is_empty());
        }
    }
}

/// Sizes of the large responses measured.
const LARGE_RESPONSES: [usize; 3] = [64 << 10, 1 << 20, 16 << 20];

/// Messages of a pipelined stream batch.
const STREAM: u64 = 16;

/// A pipelined stream: `STREAM` one-way messages sent without waiting for
/// their handler, then a confirmed one that waits for them all (the reader
/// handles them in order).
async fn stream(p: &Pair, input: &Input) {
    let client = p.client.client();
    for _ in 0..STREAM {
        let m = client.active_message("sink").unwrap();
        let m = m.raw_payload(input.raw.clone()).target_instance(p.target());
        m.execute().await.unwrap();
    }
    let m = client.active_message("len").unwrap();
    m.raw_payload(input.raw.clone())
        .send(p.target())
        .await
        .unwrap();
}

/// A small request for a response of `len` bytes, read where it lies.
async fn respond(p: &Pair, request: &Bytes, len: usize) {
    let out = p
        .client
        .client()
        .active_message("respond")
        .unwrap()
        .raw_payload(request.clone())
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_payload()
        .await
        .unwrap();
    assert_eq!(out.len(), len);
}

/// Registers the handlers of [`KINDS`]; each counts its calls in the result.
async fn register(p: &Pair) -> Arc<AtomicU64> {
    let seen = Arc::new(AtomicU64::new(0));
    // Relaxed: a counter (see `call`).
    let s = Arc::clone(&seen);
    let sink = am_handler("sink", move |c: AmContext| {
        let s = Arc::clone(&s);
        async move {
            std::hint::black_box(c.payload.len());
            s.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    });
    let s = Arc::clone(&seen);
    let len = unary_handler("len", move |c| {
        std::hint::black_box(c.payload.len());
        s.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    });
    let s = Arc::clone(&seen);
    let len_async = unary_handler_async("len_async", move |c| {
        let s = Arc::clone(&s);
        async move {
            std::hint::black_box(c.payload.len());
            s.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        }
    });
    let s = Arc::clone(&seen);
    let zc = archived_unary_handler("zc", move |c: ArchivedContext<'_, Vec<u8>>| {
        std::hint::black_box(c.input.len());
        s.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    let s = Arc::clone(&seen);
    let typed = typed_unary_handler("typed", move |c: TypedContext<Vec<u8>>| {
        std::hint::black_box(c.input.len());
        s.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    // Responds with as many bytes as the request asks for, sliced from one
    // shared buffer (a slice allocates nothing).
    let big = Bytes::from(vec![9u8; 16 << 20]);
    drop(big.clone());
    let respond = unary_handler("respond", move |c| {
        let asked: [u8; 8] = c.payload[..8].try_into().map_err(|_| "length")?;
        let len = usize::try_from(u64::from_le_bytes(asked)).map_err(|_| "length")?;
        Ok(Some(big.slice(..len.min(big.len()))))
    });
    let all = [
        ("respond", respond),
        ("sink", sink),
        ("len", len),
        ("len_async", len_async),
        ("zc", zc),
        ("typed", typed),
    ];
    for (name, h) in all {
        p.server.register_handler(name, h).await.unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_allocation_per_message_small_or_large_on_either_side() {
    let p = pair(Flavor::Shm).await;
    let seen = register(&p).await;
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for len in SIZES {
        let input = Input::new(len);
        for kind in KINDS.iter().filter(|k| len <= k.max_len) {
            for &body in kind.bodies {
                // A loan small enough for a ring record is a heap buffer.
                let small_loan = body == Body::Loaned && len < 1 << 19;
                let expected = kind.by_design + f64::from(u8::from(small_loan));
                for pattern in [Pattern::OneWay, Pattern::Confirmed, Pattern::Request] {
                    let how = (body, pattern);
                    let got =
                        per_call(expected, || call(&p, &seen, kind.handler, &input, how)).await;
                    let line =
                        format!("{len} B {body:?} {pattern:?} to {}: {got:.2}", kind.handler);
                    if got.round() != expected {
                        wrong.push(format!("{line} (expected {expected})"));
                    }
                    report.push(line);
                }
            }
        }
    }
    // Counted per batch of STREAM + 1 messages, so a single one shows.
    let input = Input::new(16 << 20);
    let got = per_call(0.0, || stream(&p, &input)).await;
    let line = format!(
        "16 MiB pipelined stream of {} messages: {got:.2}",
        STREAM + 1
    );
    if got.round() != 0.0 {
        wrong.push(format!("{line} (expected 0)"));
    }
    report.push(line);
    // Large responses to small requests, read with `await_response_payload`.
    for len in LARGE_RESPONSES {
        let request = Bytes::from((len as u64).to_le_bytes().to_vec());
        drop(request.clone());
        let got = per_call(0.0, || respond(&p, &request, len)).await;
        let line = format!("{len} B response to unary_handler: {got:.2}");
        if got.round() != 0.0 {
            wrong.push(format!("{line} (expected 0)"));
        }
        report.push(line);
    }
    eprintln!(
        "allocations per message, both sides:\n{}",
        report.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "allocations per message:\n{}",
        wrong.join("\n")
    );
    p.shutdown().await;
}
