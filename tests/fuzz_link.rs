//! End-to-end fuzzing: a raw ZeroMQ DEALER sends random and mutated frames
//! to a manager over TCP while a well-behaved caller keeps calling it; every
//! one of the caller's calls must be answered correctly, and the hostile
//! frames must be seen and refused. Budget and seed as in `fuzz_frames`
//! (`AM_FUZZ_SECS`, `AM_FUZZ_SEED`).

mod common;
#[path = "fuzz/mutate.rs"]
mod mutate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use active_message::Payload;
use active_message::wire::{self, Header, Kind, flags};
use active_message::{ActiveMessageManager, NetworkClient};
use active_message::{InstanceId, MessageId};
use common::{Flavor, pair};
use mutate::{Fuzz, mutate, random_bytes};

/// Handlers the hostile frames aim at: typed, archived (zero-copy), bytes,
/// one-way, failing, unknown, and system ones. `slow` is left out: a valid
/// call to it may legitimately hold a handler slot for as long as it asks.
const NAMES: [&str; 10] = [
    "echo",
    "echo_async",
    "echo_archived",
    "echo_bytes",
    "note",
    "fail",
    "missing",
    "_health_check",
    "_list_handlers",
    "_stats",
];
const KINDS: [Kind; 7] = [
    Kind::OneWay,
    Kind::Confirm,
    Kind::Request,
    Kind::Response,
    Kind::Error,
    Kind::Cancel,
    Kind::Heartbeat,
];

/// A frame that is valid on the wire, with a payload that may or may not be
/// a valid archive for its handler.
fn plausible_frame(rng: &mut fastrand::Rng, sender: InstanceId, id: u64) -> Vec<u8> {
    let kind = KINDS[rng.usize(..KINDS.len())];
    let name = NAMES[rng.usize(..NAMES.len())];
    let mut header = Header::new(kind, MessageId(id), sender);
    header.correlation_id = MessageId(rng.u64(1..));
    header.flags = rng.u16(..) & flags::KNOWN;
    if name.starts_with('_') {
        header.flags |= flags::SYSTEM;
    }
    let text: String = (0..rng.usize(..64)).map(|_| rng.alphanumeric()).collect();
    let payload = if rng.bool() {
        text.encode().unwrap().to_vec()
    } else {
        random_bytes(rng, 256)
    };
    let name = if kind.is_invocation() { name } else { "" };
    wire::encode_to_vec(&header, name, &payload)
}

/// Sends hostile frames until `stop`; drains whatever comes back.
fn attack(endpoint: String, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_sndtimeo(100).unwrap();
    let sender = InstanceId::new_random();
    raw.set_identity(sender.as_bytes()).unwrap();
    raw.connect(&endpoint).unwrap();
    let mut fuzz = Fuzz::new("link");
    let mut id = 1u64;
    while !stop.load(Ordering::Relaxed) && fuzz.next_case(200) {
        let rng = &mut fuzz.rng;
        id += 1;
        let mut frame = plausible_frame(rng, sender, id);
        match rng.u8(..4) {
            0 => {}
            1 => frame = random_bytes(rng, 512),
            _ => {
                let other = plausible_frame(rng, sender, id);
                mutate(rng, &mut frame, &other, &[48, 56]);
            }
        }
        // A full queue (the server pushing back) only slows the attack down.
        if raw.send(frame, 0).is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        while raw.recv_bytes(zmq::DONTWAIT).is_ok() {}
    }
}

async fn call_echo(c: &Arc<NetworkClient>, server: &ActiveMessageManager, handler: &str, n: u64) {
    let text = format!("{handler} {n}");
    let back: String = c
        .active_message(handler)
        .unwrap()
        .payload(text.as_str())
        .unwrap()
        .expect_response()
        .send(server.instance_id())
        .await
        .unwrap_or_else(|e| panic!("{handler} call {n} not sent: {e}"))
        .await_response()
        .await
        .unwrap_or_else(|e| panic!("{handler} call {n} failed: {e}"));
    assert_eq!(back, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_over_tcp_leave_a_well_behaved_caller_served() {
    let p = pair(Flavor::Tcp).await;
    let endpoint = p
        .server
        .peer_info()
        .await
        .tcp_endpoint
        .expect("a TCP endpoint");
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let attacker = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || attack(endpoint, stop, sent))
    };
    let c = p.client.client();
    let mut n = 0u64;
    // Calls go on for as long as the attack runs (and at least until it got going).
    while !attacker.is_finished() || n < 20 {
        for handler in ["echo", "echo_archived", "echo_async"] {
            call_echo(&c, &p.server, handler, n).await;
        }
        n += 1;
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().expect("the attacking thread panicked");
    let hostile = sent.load(Ordering::Relaxed);
    assert!(hostile > 0, "no hostile frame was sent");
    let errors = p.server.stats().counters.protocol_errors;
    eprintln!("{n} rounds of calls served beside {hostile} hostile frames ({errors} refused)");
    assert!(errors > 0, "none of {hostile} hostile frames was refused");
    // Still healthy, and still serving after the attack.
    assert_eq!(c.health_check(p.target()).await.unwrap().status, "ok");
    call_echo(&c, &p.server, "echo", n).await;
    p.shutdown().await;
}
