//! The `am` command line: bad invocations are named and fail; every query
//! subcommand works against a real `am serve` child over TCP and over shm.

mod common;

use std::process::{Command, Output};

use common::process::ServerProcess;

fn am(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_am"))
        .args(args)
        .output()
        .expect("run am")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_fails_naming(args: &[&str], needle: &str) {
    let out = am(args);
    assert!(!out.status.success(), "am {args:?} succeeded");
    let err = stderr(&out);
    assert!(
        err.contains(needle),
        "am {args:?}: {err:?} does not name {needle:?}"
    );
}

#[test]
fn bad_invocations_exit_non_zero_naming_the_problem() {
    assert_fails_naming(&["serve", "--bogus"], "--bogus");
    assert_fails_naming(&["serve", "--endpoint"], "--endpoint");
    assert_fails_naming(&["serve", "--max-concurrent", "many"], "--max-concurrent");
    assert_fails_naming(&["health"], "<ADDR>");
    assert_fails_naming(&["frobnicate"], "frobnicate");
    assert_fails_naming(&["ping", "tcp://nohost"], "tcp://host:port");
    assert_fails_naming(&["ping", "relative.sock"], "relative.sock");
    assert_fails_naming(&["ping", "-n", "0", "tcp://127.0.0.1:1"], "--count");
    assert_fails_naming(&["call", "tcp://127.0.0.1:1", "echo"], "--json");
    assert_fails_naming(
        &["call", "tcp://127.0.0.1:1", "echo", "--json", "{not json"],
        "not valid JSON",
    );
    assert_fails_naming(
        &[
            "call",
            "tcp://127.0.0.1:1",
            "echo",
            "--raw",
            "/no/such/file",
        ],
        "/no/such/file",
    );
    assert_fails_naming(&["stats", "tcp://127.0.0.1:1", "--count", "2"], "--watch");
}

#[test]
fn help_is_everywhere_and_starts_nothing() {
    for cmd in [
        "serve", "ping", "handlers", "health", "stats", "call", "bench",
    ] {
        let out = am(&[cmd, "--help"]);
        assert!(out.status.success(), "am {cmd} --help failed");
        assert!(
            stdout(&out).contains("Usage: am"),
            "am {cmd} --help: no usage"
        );
        // `am serve --help` used to start a server: it prints no PeerInfo.
        assert!(!stdout(&out).contains("instance_id"));
    }
}

/// Runs every query subcommand against `addr` (a served `am serve`).
fn queries_work(addr: &str, transport: &str) {
    let out = am(&["ping", addr, "-n", "5", "--size", "100"]);
    assert!(out.status.success(), "ping: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("over {transport}")), "{text}");
    for field in ["min", "p50", "p99", "max"] {
        assert!(text.contains(field), "{text}");
    }

    let out = am(&["handlers", addr]);
    assert!(out.status.success(), "handlers: {}", stderr(&out));
    let names: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    for name in ["echo", "echo_bytes", "echo_json", "_stats"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }

    let out = am(&["health", addr]);
    assert!(out.status.success(), "health: {}", stderr(&out));
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["status"], "ok");

    let out = am(&["stats", addr, "--json"]);
    assert!(out.status.success(), "stats: {}", stderr(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The pings before were received there.
    assert!(stats["counters"]["messages_received"].as_u64().unwrap() >= 5);
    let out = am(&[
        "stats",
        addr,
        "--watch",
        "--interval",
        "0.05",
        "--count",
        "2",
    ]);
    assert!(out.status.success(), "stats --watch: {}", stderr(&out));
    assert_eq!(stdout(&out).matches("messages_received").count(), 2);

    let out = am(&["call", addr, "echo_json", "--json", r#"{ "a": [1, 2] }"#]);
    assert!(out.status.success(), "call: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"a":[1,2]}"#);
    let file = std::env::temp_dir().join(format!("am-cli-{}.bin", uuid::Uuid::new_v4()));
    std::fs::write(&file, [0u8, 159, 146, 150, 255]).unwrap();
    let out = am(&["call", addr, "echo_bytes", "--raw", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success(), "call --raw: {}", stderr(&out));
    assert_eq!(out.stdout, [0u8, 159, 146, 150, 255]);
    assert_fails_naming(
        &["call", addr, "fail_bytes", "--json", "1"],
        "bytes handler failed",
    );
    assert_fails_naming(&["call", addr, "nope", "--json", "1"], "nope");
}

#[test]
fn queries_by_tcp_address() {
    let server = ServerProcess::start(&[]);
    queries_work(server.tcp_endpoint(), "tcp");
}

#[test]
fn queries_by_shm_path_and_by_peer_info() {
    let server = ServerProcess::start(&["--endpoint", "local://"]);
    let shm = server.info.shm_endpoint.clone().expect("an shm endpoint");
    queries_work(&shm, "shm");
    // A bare socket path works too, and so does the PeerInfo JSON line.
    let path = shm.strip_prefix("shm://").unwrap();
    assert!(am(&["health", path]).status.success());
    let json = serde_json::to_string(&server.info).unwrap();
    assert!(am(&["health", &json]).status.success());
}

#[test]
fn a_dead_address_fails_promptly_with_a_message() {
    let mut server = ServerProcess::start(&[]);
    let addr = server.tcp_endpoint().to_owned();
    server.kill();
    assert_fails_naming(&["health", &addr, "--timeout", "1"], "am:");
}

#[test]
fn bench_quick_runs_to_completion() {
    let out = am(&["bench", "--quick", "--no-progress"]);
    assert!(out.status.success(), "bench: {}", stderr(&out));
    let text = stdout(&out);
    for case in [
        "round trip 64 B",
        "typed round trip",
        "one-way 64 B",
        "one-way 1 MiB",
    ] {
        assert!(text.contains(case), "{case} missing: {text}");
    }
}
