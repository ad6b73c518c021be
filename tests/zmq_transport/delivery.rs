//! Frames and replies get where they are sent, in order.

use std::sync::Arc;

use active_message::transport::TransportKind;
use active_message::transport::zmq::ZmqConfig;
use active_message::wire::{Kind, flags};
use active_message::{InstanceId, MessageId};

use crate::{MAX_FRAME, Node, SOON, frame, header, node, node_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_reaches_the_server_and_its_reply_reaches_the_caller() {
    let mut server = node();
    let client = node();
    let link = client.connect_to(&server).await;
    assert_eq!(link.peer(), server.id);
    assert_eq!(link.kind(), TransportKind::Tcp);

    let mut request = header(Kind::Request, 7, client.id);
    request.flags = flags::RECEIPT;
    request.timeout_us = 1_500_000;
    link.send(frame(request, "echo", b"hello")).await.unwrap();

    let inbound = server.next_invocation().await;
    assert_eq!(inbound.header, request);
    assert_eq!(inbound.name(), "echo");
    assert_eq!(inbound.payload(), b"hello");
    assert_eq!(inbound.reply_link.peer(), client.id);

    let mut response = header(Kind::Response, 1, server.id);
    response.correlation_id = request.message_id;
    inbound
        .reply_link
        .send(frame(response, "", b"HELLO"))
        .await
        .unwrap();
    let (got, payload) = client
        .events
        .wait_for("the response", SOON, |seen| seen.replies.first().cloned())
        .await;
    assert_eq!(got, response);
    assert_eq!(payload, b"HELLO");

    // A second connect to the same peer gives the same live link.
    let again = client.connect_to(&server).await;
    assert!(Arc::ptr_eq(&link, &again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_frames_arrive_in_order() {
    let mut server = node();
    let client = node();
    let link = client.connect_to(&server).await;
    let sender = tokio::spawn(async move {
        for i in 1..=1000u64 {
            let h = header(Kind::OneWay, i, InstanceId::nil());
            link.send(frame(h, "count", &i.to_le_bytes()))
                .await
                .unwrap();
        }
        link
    });
    for i in 1..=1000u64 {
        let inbound = server.next_invocation().await;
        assert_eq!(inbound.header.message_id, MessageId(i));
        assert_eq!(inbound.payload(), i.to_le_bytes());
    }
    sender.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_bind_advertises_a_routable_endpoint_with_the_real_port() {
    let mut server = node_with(ZmqConfig::new("tcp://0.0.0.0:0"), 8, MAX_FRAME);
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("tcp://"), "{endpoint}");
    assert!(!endpoint.contains("0.0.0.0"), "{endpoint}");
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert!(
        server
            .transport
            .bound_endpoint()
            .ends_with(&format!(":{port}"))
    );

    // Reachable as advertised.
    let client = node();
    let link = client.connect_to(&server).await;
    link.send(frame(header(Kind::OneWay, 1, client.id), "x", b""))
        .await
        .unwrap();
    assert_eq!(server.next_invocation().await.name(), "x");

    // The advertise host overrides.
    let named = node_with(
        ZmqConfig::new("tcp://0.0.0.0:0").advertise_host("node7.example"),
        8,
        MAX_FRAME,
    );
    assert!(named.endpoint().starts_with("tcp://node7.example:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_go_back_to_the_client_that_asked() {
    let mut server = node();
    let clients: Vec<Node> = (0..3).map(|_| node()).collect();
    let mut links = Vec::new();
    for client in &clients {
        links.push(client.connect_to(&server).await);
    }
    for (i, (client, link)) in clients.iter().zip(&links).enumerate() {
        for j in 0..10u64 {
            let id = (i as u64) * 100 + j + 1;
            link.send(frame(header(Kind::Request, id, client.id), "who", b""))
                .await
                .unwrap();
        }
    }
    for _ in 0..30 {
        let inbound = server.next_invocation().await;
        assert_eq!(inbound.reply_link.peer(), inbound.header.sender);
        let mut response = header(Kind::Response, 1, server.id);
        response.correlation_id = inbound.header.message_id;
        let asker = inbound.header.sender.as_bytes().to_vec();
        inbound
            .reply_link
            .send(frame(response, "", &asker))
            .await
            .unwrap();
    }
    for (i, client) in clients.iter().enumerate() {
        let replies = client
            .events
            .wait_for("ten replies", SOON, |seen| {
                (seen.replies.len() >= 10).then(|| seen.replies.clone())
            })
            .await;
        assert_eq!(replies.len(), 10);
        for (j, (h, payload)) in replies.iter().enumerate() {
            assert_eq!(h.correlation_id, MessageId((i as u64) * 100 + j as u64 + 1));
            assert_eq!(payload.as_slice(), client.id.as_bytes());
        }
    }
}
