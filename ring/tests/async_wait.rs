//! The tokio methods: `Producer::reserve` / `push` and `Consumer::read` park on the
//! doorbells through `AsyncFd` and are woken by commits, releases and closes.
#![cfg(all(feature = "async", not(loom)))]

use std::time::Duration;

use shm_ring::{Consumer, Producer, RingConfig, RingError, WaitPolicy, heap_pair};

const GUARD: Duration = Duration::from_secs(20);

fn pair(policy: WaitPolicy) -> (Producer, Consumer) {
    // Small ring: the producer must wait for space many times.
    let cfg = RingConfig::new(1024).unwrap();
    let (mut p, mut c) = heap_pair(cfg).unwrap();
    p.set_policy(policy);
    c.set_policy(policy);
    (p, c)
}

async fn stream(policy: WaitPolicy, n: u32) {
    let (mut p, mut c) = pair(policy);
    let producer = tokio::spawn(async move {
        for i in 0..n {
            let len = 4 + (i as usize * 53) % 400;
            let mut g = p.reserve(len).await.unwrap();
            g[..4].copy_from_slice(&i.to_le_bytes());
            g.truncate(4 + (i as usize % 7) * 16); // sometimes shorter than reserved
            g.commit();
        }
    });
    let consumer = tokio::spawn(async move {
        for i in 0..n {
            let g = c.read().await.unwrap();
            assert_eq!(g.payload()[..4], i.to_le_bytes());
            assert_eq!(
                g.len(),
                (4 + (i as usize * 53) % 400).min(4 + (i as usize % 7) * 16)
            );
            g.release();
        }
        // The producer task dropped its handle: drained, then closed.
        assert!(matches!(c.read().await, Err(RingError::Closed)));
    });
    tokio::time::timeout(GUARD, async {
        producer.await.unwrap();
        consumer.await.unwrap();
    })
    .await
    .expect("async stream hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_park() {
    stream(WaitPolicy::Park, 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_adaptive() {
    stream(WaitPolicy::default(), 20_000).await;
}

#[tokio::test(flavor = "current_thread")]
async fn async_stream_single_thread_runtime() {
    stream(WaitPolicy::Park, 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_from_another_thread_wakes_parked_reader_and_writer() {
    let (mut p, mut c) = pair(WaitPolicy::Park);
    let closer = c.closer();
    while p.try_push(&[1; 200]).is_ok() {}
    let writer = tokio::spawn(async move { p.reserve(200).await.map(|_| ()) });
    // Drain the committed records, then park on the empty ring.
    let reader = tokio::spawn(async move {
        let mut drained = 0;
        loop {
            match c.read().await {
                Ok(g) => {
                    drained += 1;
                    g.release()
                }
                Err(e) => return (drained, e),
            }
        }
    });
    // Whether the close lands before, during or after the reader parks, it must end
    // with every committed record drained and then `Closed`.
    tokio::task::yield_now().await;
    std::thread::spawn(move || closer.close()).join().unwrap();
    let (drained, e) = tokio::time::timeout(GUARD, reader).await.unwrap().unwrap();
    assert!(drained >= 4, "drained {drained}");
    assert!(matches!(e, RingError::Closed));
    let w = tokio::time::timeout(GUARD, writer).await.unwrap().unwrap();
    // The writer either got space freed by the reader (and then committed nothing) or
    // was parked when the close came.
    assert!(matches!(w, Ok(()) | Err(RingError::Closed)));
}

#[tokio::test(flavor = "current_thread")]
async fn cancelled_read_consumes_nothing() {
    let (mut p, mut c) = pair(WaitPolicy::Park);
    let r = tokio::time::timeout(Duration::from_millis(5), c.read()).await;
    assert!(r.is_err(), "nothing to read yet");
    p.push(b"after cancel").await.unwrap();
    let g = c.read().await.unwrap();
    assert_eq!(g.payload(), b"after cancel");
    g.release();
}
