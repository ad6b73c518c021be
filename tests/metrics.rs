//! The Prometheus endpoint, scraped over HTTP after known traffic: the
//! counters move by exactly what was sent, failed and timed out.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use active_message::Error;
use active_message::metrics::{MetricsServer, register};
use common::{Flavor, pair};
use prometheus_client::registry::Registry;

/// GET /metrics over a plain HTTP/1.1 connection; the body parsed into
/// `name -> value` (label sets kept in the name).
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    assert!(body.trim_end().ends_with("# EOF"), "truncated body: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{name} missing from {m:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counters_move_by_the_traffic_sent() {
    let p = pair(Flavor::Tcp).await;
    let mut client_registry = Registry::default();
    register(&mut client_registry, &p.client);
    let mut server_registry = Registry::default();
    register(&mut server_registry, &p.server);
    let any = "127.0.0.1:0".parse().unwrap();
    let client_metrics = MetricsServer::start(any, client_registry).unwrap();
    let server_metrics = MetricsServer::start(any, server_registry).unwrap();
    let (c0, s0) = (
        scrape(client_metrics.local_addr()),
        scrape(server_metrics.local_addr()),
    );
    let c = p.client.client();

    for _ in 0..3 {
        let out: String = c
            .active_message("echo")
            .unwrap()
            .payload("hi")
            .unwrap()
            .expect_response::<String>()
            .send(p.target())
            .await
            .unwrap()
            .await_response()
            .await
            .unwrap();
        assert_eq!(out, "hi");
    }
    let failed = c
        .active_message("fail_bytes")
        .unwrap()
        .raw_payload(vec![1u8; 10])
        .expect_response::<()>()
        .send(p.target())
        .await
        .unwrap()
        .await_response_raw()
        .await;
    assert!(matches!(failed, Err(Error::Handler(_))), "{failed:?}");
    let missing = c
        .active_message("no_such")
        .unwrap()
        .raw_payload(vec![])
        .expect_response::<()>()
        .send(p.target())
        .await;
    let missing = match missing {
        Ok(status) => status.await_response_raw().await.map(drop),
        Err(e) => Err(e),
    };
    assert!(
        matches!(missing, Err(Error::NoSuchHandler(_))),
        "{missing:?}"
    );
    // `slow` sleeps 2 s; the caller gives up after 50 ms.
    let timed_out = c
        .active_message("slow")
        .unwrap()
        .payload(&2_000u64)
        .unwrap()
        .timeout(Duration::from_millis(50))
        .expect_response::<u64>()
        .send(p.target())
        .await;
    let timed_out = match timed_out {
        Ok(status) => status.await_response().await.map(drop),
        Err(e) => Err(e),
    };
    assert!(matches!(timed_out, Err(Error::Timeout(_))), "{timed_out:?}");

    let (c1, s1) = (
        scrape(client_metrics.local_addr()),
        scrape(server_metrics.local_addr()),
    );
    let moved =
        |a: &HashMap<String, f64>, b: &HashMap<String, f64>, n: &str| value(b, n) - value(a, n);
    assert_eq!(moved(&c0, &c1, "am_messages_sent_total"), 6.0);
    assert_eq!(moved(&c0, &c1, "am_timeouts_total"), 1.0);
    assert_eq!(moved(&c0, &c1, "am_raw_bytes_sent_total"), 10.0);
    assert_eq!(moved(&s0, &s1, "am_messages_received_total"), 6.0);
    assert_eq!(moved(&s0, &s1, "am_handler_errors_total"), 1.0);
    assert_eq!(moved(&s0, &s1, "am_unknown_handler_total"), 1.0);
    assert_eq!(value(&c1, "am_calls_in_flight"), 0.0);
    assert_eq!(value(&c1, r#"am_peers{transport="tcp"}"#), 1.0);
    // The server lists its caller (the link the caller opened): six
    // invocations in on that link under the caller's id, and the Cancel of
    // the call that timed out once it got there.
    assert_eq!(value(&s1, r#"am_peers{transport="tcp"}"#), 1.0);
    let caller = p.client.instance_id();
    let frames_in = format!(r#"am_peer_messages_in_total{{peer="{caller}",transport="tcp"}}"#);
    let moved_in = moved(&s0, &s1, &frames_in);
    assert!(moved_in == 6.0 || moved_in == 7.0, "{moved_in}");
    p.shutdown().await;
}

#[test]
fn other_paths_are_not_found() {
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Registry::default()).unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_and_handler_series_carry_their_labels() {
    let p = pair(Flavor::Shm).await;
    let mut client_registry = Registry::default();
    register(&mut client_registry, &p.client);
    let mut server_registry = Registry::default();
    register(&mut server_registry, &p.server);
    let any = "127.0.0.1:0".parse().unwrap();
    let client_metrics = MetricsServer::start(any, client_registry).unwrap();
    let server_metrics = MetricsServer::start(any, server_registry).unwrap();
    let peer = format!("peer=\"{}\",transport=\"shm\"", p.target());
    let sent = format!("am_peer_messages_out_total{{{peer}}}");
    let received = format!("am_peer_messages_in_total{{{peer}}}");
    let before = scrape(client_metrics.local_addr());
    for _ in 0..2 {
        let out: String = p
            .client
            .client()
            .active_message("echo")
            .unwrap()
            .payload("hi")
            .unwrap()
            .expect_response::<String>()
            .send(p.target())
            .await
            .unwrap()
            .await_response()
            .await
            .unwrap();
        assert_eq!(out, "hi");
    }
    let after = scrape(client_metrics.local_addr());
    assert_eq!(value(&after, &sent) - value(&before, &sent), 2.0);
    assert_eq!(value(&after, &received) - value(&before, &received), 2.0);
    let server = scrape(server_metrics.local_addr());
    assert_eq!(
        value(&server, "am_handler_calls_total{handler=\"echo\"}"),
        2.0
    );
    assert_eq!(
        value(&server, "am_handler_errors_total{handler=\"echo\"}"),
        0.0
    );
    assert_eq!(
        value(
            &server,
            "am_handler_latency_seconds_count{handler=\"echo\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &server,
            "am_handler_latency_seconds_bucket{le=\"+Inf\",handler=\"echo\"}"
        ),
        2.0
    );
    p.shutdown().await;
}
