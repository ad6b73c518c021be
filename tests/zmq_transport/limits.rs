//! Bad input and backpressure: malformed and oversized frames, a full inbox.

use std::time::Duration;

use active_message::wire::{self, ErrorCode, Kind, ProtocolError};
use active_message::{Error, InstanceId, MessageId};

use crate::{MAX_FRAME, SOON, frame, header, loopback, node, node_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_counted_answered_and_the_listener_keeps_serving() {
    let mut server = node();
    let endpoint = server.endpoint();
    let anon = InstanceId::new_random();
    let good = wire::encode_to_vec(&header(Kind::Request, 41, anon), "echo", b"payload");

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut unknown_kind = good.clone();
    unknown_kind[5] = 200;
    let mut lying_length = good.clone();
    lying_length[56..64].copy_from_slice(&1_000u64.to_le_bytes());
    let mut bad_name = good.clone();
    bad_name[64] = 0xff;
    bad_name[8..16].copy_from_slice(&42u64.to_le_bytes());

    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&endpoint).unwrap();
    raw.send(&b"garbage"[..], 0).unwrap();
    raw.send(bad_magic, 0).unwrap();
    raw.send(unknown_kind, 0).unwrap();
    raw.send(lying_length, 0).unwrap(); // readable header, id 41: answered
    raw.send(bad_name, 0).unwrap(); // readable header, id 42: answered
    raw.send_multipart([good.clone(), b"extra".to_vec()], 0)
        .unwrap(); // wrong shape, id 41
    let errors = server
        .events
        .wait_for("six protocol errors", SOON, |seen| {
            (seen.protocol_errors.len() >= 6).then(|| seen.protocol_errors.clone())
        })
        .await;
    assert!(matches!(errors[0].1, ProtocolError::Truncated(7)));
    assert!(matches!(errors[1].1, ProtocolError::BadMagic(_)));
    assert!(matches!(errors[2].1, ProtocolError::UnknownKind(200)));
    assert!(matches!(errors[3].1, ProtocolError::LengthMismatch { .. }));
    assert!(matches!(errors[4].1, ProtocolError::BadName));
    assert_eq!(errors[3].0, Some(anon));

    // Answers for the frames whose header was readable.
    let mut answered = Vec::new();
    while answered.len() < 3 {
        assert!(raw.poll(zmq::POLLIN, 5_000).unwrap() > 0, "no error answer");
        let bytes = raw.recv_bytes(0).unwrap();
        let answer = wire::decode(&bytes, MAX_FRAME).unwrap();
        assert_eq!(answer.header.kind, Kind::Error);
        assert_eq!(
            ErrorCode::from_u8(answer.header.error_code),
            ErrorCode::Codec
        );
        assert_eq!(answer.header.sender, server.id);
        answered.push(answer.header.correlation_id.0);
    }
    answered.sort_unstable();
    assert_eq!(answered, [41, 41, 42]);

    // The same raw peer, and a proper client, are still served.
    raw.send(good, 0).unwrap();
    let inbound = server.next_invocation().await;
    assert_eq!(inbound.header.message_id, MessageId(41));
    let client = node();
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::OneWay, 5, client.id), "after", b""))
        .await
        .unwrap();
    assert_eq!(server.next_invocation().await.name(), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_by_libzmq_and_others_are_still_served() {
    let max = 64 * 1024;
    let mut server = node_with(loopback(), 8, max);
    let endpoint = server.endpoint();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    let monitor_endpoint = "inproc://oversize-monitor";
    raw.monitor(monitor_endpoint, zmq::SocketEvent::DISCONNECTED as i32)
        .unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.connect(monitor_endpoint).unwrap();
    raw.connect(&endpoint).unwrap();
    let anon = InstanceId::new_random();
    let huge = wire::encode_to_vec(&header(Kind::OneWay, 9, anon), "big", &vec![7u8; 2 * max]);
    raw.send(huge, 0).unwrap();
    // libzmq drops the connection that carried it.
    assert!(
        monitor.poll(zmq::POLLIN, 5_000).unwrap() > 0,
        "no disconnect"
    );

    let client = node_with(loopback(), 8, max);
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::OneWay, 10, client.id), "small", b"ok"))
        .await
        .unwrap();
    let inbound = server.next_invocation().await;
    assert_eq!(
        inbound.name(),
        "small",
        "the oversized frame must never arrive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_either_ends_limit_are_refused_before_sending() {
    let server = node_with(loopback(), 8, 64 * 1024);
    let client = node_with(loopback(), 8, MAX_FRAME);
    let link = client.connect_to(&server).await;
    let h = header(Kind::OneWay, 1, client.id);
    // Within the client's limit but over the server's (announced at connect).
    let payload = vec![0u8; 100 * 1024];
    let over = frame(h, "big", &payload);
    assert!(matches!(
        link.try_send(over),
        Err(Error::PayloadTooLarge { max, .. }) if max == 64 * 1024
    ));
    assert!(matches!(
        link.send(over).await,
        Err(Error::PayloadTooLarge { .. })
    ));
    // Over our own limit too.
    let small_client = node_with(loopback(), 8, 4096);
    let link = small_client.connect_to(&server).await;
    let payload = vec![0u8; 5000];
    assert!(matches!(
        link.try_send(frame(h, "big", &payload)),
        Err(Error::PayloadTooLarge { max: 4096, .. })
    ));
    assert!(!link.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbox_pushes_back_to_the_sender_without_losing_the_link() {
    // The stall below must outlast the heartbeat timeout, but a live link must
    // not be declared lost because a busy machine delayed a heartbeat: with a
    // 50 ms interval and a 1 s timeout, twenty heartbeats in a row would have
    // to be late.
    let heartbeat_timeout = Duration::from_secs(1);
    let tight = loopback()
        .high_water_mark(4)
        .send_queue(4)
        .heartbeat_interval(Duration::from_millis(50))
        .heartbeat_timeout(heartbeat_timeout);
    let mut server = node_with(tight.clone(), 1, MAX_FRAME);
    let client = node_with(tight, 8, MAX_FRAME);
    let link = client.connect_to(&server).await;
    let payload = vec![0xabu8; 64 * 1024];
    let make = |i: u64| frame(header(Kind::OneWay, i, InstanceId::nil()), "bulk", &payload);

    // Fill with try_send until Full, then check that send() waits; if it got
    // through after all (the I/O thread drained meanwhile), fill again.
    let mut next = 1u64;
    let mut saw_full = 0;
    loop {
        assert!(next < 20_000, "backpressure never reached the sender");
        match link.try_send(make(next)) {
            Ok(()) => {
                next += 1;
                continue;
            }
            Err(Error::Full) => saw_full += 1,
            Err(err) => panic!("try_send while filling: {err}"),
        }
        match tokio::time::timeout(2 * heartbeat_timeout, link.send(make(next))).await {
            Ok(result) => {
                result.expect("send while filling");
                next += 1;
            }
            Err(_waited) => break,
        }
    }
    assert!(saw_full > 0);
    // The link survived a stall longer than the heartbeat timeout (the
    // stalled server keeps saying it lives).
    assert!(!link.is_closed());
    assert_eq!(client.events.lost_count(server.id), 0);

    // A waiting send completes once the server drains, and all arrive in order.
    let waiting = {
        let link = link.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            let h = header(Kind::OneWay, next, InstanceId::nil());
            link.send(frame(h, "bulk", &payload)).await
        })
    };
    for i in 1..=next {
        let inbound = server.next_invocation().await;
        assert_eq!(inbound.header.message_id, MessageId(i));
        assert_eq!(inbound.payload().len(), payload.len());
    }
    waiting.await.unwrap().unwrap();
    assert_eq!(client.events.lost_count(server.id), 0);
}
