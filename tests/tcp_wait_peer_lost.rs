//! A sender waiting for room on a full TCP link to a real child process
//! (`am serve`) gets a typed error, not a hang nor its own timeout, when
//! that process stops answering for good; the client stays usable.
//!
//! The server is stopped (SIGSTOP), so nothing it was sent is read: a
//! stream of one-way messages fills the kernel's socket buffers, libzmq's
//! pipe and the link's send queue until a send waits for room that never
//! comes. The link's heartbeat then finds the peer silent and declares it
//! lost, which must wake that send with `PeerLost`, long before its
//! deadline. (A send may also wait briefly while the link's I/O thread
//! catches up: those get their room and the stream goes on.)

mod common;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use active_message::{ActiveMessageManagerBuilder, Error, TransportPolicy};
use bytes::Bytes;
use common::process::ServerProcess;

/// Each send's budget: the loss is detected after three heartbeat
/// intervals of silence, far sooner.
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_waiting_on_a_full_tcp_link_fails_with_peer_lost_when_the_peer_stops() {
    let server = ServerProcess::start(&[]);
    let target = server.info.instance_id;
    let manager = ActiveMessageManagerBuilder::new()
        .endpoint("tcp://127.0.0.1:0")
        .transport_policy(TransportPolicy::TcpOnly)
        // Lost after 3 s of silence: the stream fills the link well before.
        .heartbeat_interval(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let c = manager.client();
    c.connect_to_peer(server.info.clone()).await.unwrap();
    server.stop();

    let payload = Bytes::from(vec![9u8; 64]);
    let (mut sent, mut waited) = (0u64, 0u64);
    let (result, pending) = loop {
        let m = c.active_message("echo").unwrap();
        let m = m.raw_payload(payload.clone()).target_instance(target);
        let mut send = pin!(m.timeout(DEADLINE).execute());
        let first = poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
        let (result, pending) = match first {
            Poll::Ready(result) => (result, false),
            Poll::Pending => (send.await, true),
        };
        waited += u64::from(pending);
        match result {
            Ok(()) => sent += 1,
            Err(err) => break (Err::<(), _>(err), pending),
        }
    };
    eprintln!("{sent} messages sent, {waited} sends waited for room, then: {result:?}");
    // Its deadline is 60 s: `PeerLost` (not `Timeout`) proves the waiting
    // send was woken by the loss.
    assert!(
        matches!(result, Err(Error::PeerLost(id)) if id == target),
        "{result:?}"
    );
    assert!(
        pending,
        "the loss did not reach a send that waited for room"
    );
    let after = c.active_message("echo").unwrap();
    let after = after.raw_payload(payload.clone()).target_instance(target);
    assert!(matches!(
        after.execute().await,
        Err(Error::PeerLost(_) | Error::UnknownPeer(_))
    ));
    manager.shutdown().await.unwrap();
    // Dropping the server kills it (stopped or not).
    drop(server);
}
