//! The malformed-frame warning names the peer and the error, and a peer
//! sending garbage at line rate gets at most one warning a second.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use active_message::InstanceId;
use active_message::MessageId;
use active_message::wire::{self, Header, Kind};
use common::{Flavor, pair};

/// Everything the subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_warn_once_a_second_naming_peer_and_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global: the frames are decoded on the transport's own I/O thread.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let p = pair(Flavor::Tcp).await;
    let endpoint = p
        .server
        .peer_info()
        .await
        .tcp_endpoint
        .expect("a tcp endpoint");

    // A readable header whose payload is longer than it declares.
    let sender = InstanceId::new_random();
    let mut frame = wire::encode_to_vec(
        &Header::new(Kind::OneWay, MessageId(1), sender),
        "echo",
        b"x",
    );
    frame.extend_from_slice(&[0; 16]);
    let error = wire::decode(&frame, usize::MAX).unwrap_err().to_string();

    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).unwrap();
    socket.connect(&endpoint).unwrap();
    const FRAMES: u64 = 50;
    let first = Instant::now();
    for _ in 0..FRAMES {
        socket.send(&frame[..], 0).unwrap();
    }
    while p.server.stats().counters.protocol_errors < FRAMES {
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    let elapsed = first.elapsed().as_secs();

    let text = captured.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("malformed frame dropped"))
        .collect();
    assert!(!warnings.is_empty(), "no warning in {text:?}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains(&sender.to_string()),
        "peer not named: {}",
        warnings[0]
    );
    assert!(
        warnings[0].contains(&error),
        "error not named: {}",
        warnings[0]
    );
    // Rate-limited: one a second at most, however many frames arrived.
    assert!(
        warnings.len() as u64 <= 1 + elapsed,
        "{} warnings in {elapsed} s for {FRAMES} frames",
        warnings.len()
    );
    p.shutdown().await;
}
