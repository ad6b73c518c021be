//! Interoperability of the wire format with an implementation in another language.
//!
//! - `wire_doc_examples_match_the_encoder`: every generated block of
//!   `docs/wire.md` (hex dumps, field listings, rkyv archives) is exactly what
//!   the Rust encoder produces today, so the document cannot drift from the
//!   code. Run with `AM_BLESS_WIRE_DOC=1` to rewrite the blocks in place after
//!   an intended change of the format.
//! - `python_client_speaks_the_wire_protocol`: starts the real `am serve`
//!   binary and runs `tests/interop/wire_client.py` (pyzmq and the Python
//!   standard library only, written from `docs/wire.md`) against it: first its
//!   offline self-test (its encoder against the document's hex dumps), then
//!   every live check.
//!
//! The Python interpreter is `$AM_PYTHON`, else `<crate>/.venv/bin/python` when
//! it exists, else `python3`. Without pyzmq the live test is skipped, unless
//! `$CI` is set, where it fails.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use active_message::wire::{self, ErrorCode, Header, Kind, flags};
use active_message::{InstanceId, MessageId, Payload};

// ---------------------------------------------------------------------------
// The generated examples of docs/wire.md
// ---------------------------------------------------------------------------

/// Sender (caller) instance id used in every example.
const CALLER: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
/// Receiver (server) instance id used in every example.
const SERVER: [u8; 16] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xb0, 0xb1, 0x4c, 0xc1, 0x80, 0xd1, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5,
];

fn header(kind: Kind, id: u64, sender: [u8; 16]) -> Header {
    Header::new(kind, MessageId(id), InstanceId::from_bytes(sender))
}

fn reply(kind: Kind, id: u64, to: u64) -> Header {
    let mut h = header(kind, id, SERVER);
    h.correlation_id = MessageId(to);
    h
}

/// The example frames: (block name, frame bytes).
fn example_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut request = header(Kind::Request, 7, CALLER);
    request.flags = flags::RECEIPT | flags::RAW;
    request.timeout_us = 1_500_000;

    let mut system = header(Kind::Request, 8, CALLER);
    system.flags = flags::SYSTEM | flags::RAW;
    system.timeout_us = 5_000_000;

    let mut error = reply(Kind::Error, 3, 9);
    error.error_code = ErrorCode::NoSuchHandler as u8;

    let probe = header(Kind::Heartbeat, 10, CALLER);
    let mut pong = reply(Kind::Heartbeat, 4, 10);
    pong.flags = flags::PONG;

    let mut cancel = header(Kind::Cancel, 12, CALLER);
    cancel.correlation_id = MessageId(11);

    let mut stream = header(Kind::Request, 20, CALLER);
    stream.flags = flags::STREAM | flags::RAW;
    stream.timeout_us = 1_500_000;
    // The preamble (window 4, 12 zero bytes), then the raw payload: u64 LE 3.
    let mut stream_payload = 4u32.to_le_bytes().to_vec();
    stream_payload.extend_from_slice(&[0; 12]);
    stream_payload.extend_from_slice(&3u64.to_le_bytes());
    let mut item = reply(Kind::StreamItem, 30, 20);
    item.flags = flags::RAW;
    let mut credit = header(Kind::Credit, 21, CALLER);
    credit.correlation_id = MessageId(20);

    vec![
        (
            "frame-request",
            wire::encode_to_vec(&request, "echo_bytes", b"hello"),
        ),
        (
            "frame-receipt",
            wire::encode_to_vec(&reply(Kind::Receipt, 1, 7), "", b""),
        ),
        (
            "frame-response",
            wire::encode_to_vec(&reply(Kind::Response, 2, 7), "", b"hello"),
        ),
        (
            "frame-system",
            wire::encode_to_vec(&system, "_health_check", b""),
        ),
        ("frame-error", wire::encode_to_vec(&error, "", b"nope")),
        ("frame-probe", wire::encode_to_vec(&probe, "", b"")),
        ("frame-pong", wire::encode_to_vec(&pong, "", b"")),
        ("frame-cancel", wire::encode_to_vec(&cancel, "", b"")),
        (
            "frame-stream-request",
            wire::encode_to_vec(&stream, "count_bytes", &stream_payload),
        ),
        (
            "frame-stream-item",
            wire::encode_to_vec(&item, "", &0u64.to_le_bytes()),
        ),
        (
            "frame-credit",
            wire::encode_to_vec(&credit, "", &2u32.to_le_bytes()),
        ),
        (
            "frame-stream-end",
            wire::encode_to_vec(&reply(Kind::StreamEnd, 33, 20), "", b""),
        ),
    ]
}

/// The example rkyv archives: (block name, archive bytes).
fn example_archives() -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &str| s.to_owned().encode().expect("archive").to_vec();
    vec![
        ("rkyv-string-inline", text("hello")),
        ("rkyv-string-8", text("12345678")),
        ("rkyv-string-out-of-line", text("hello, active messages")),
        ("rkyv-string-long", text(&"x".repeat(100))),
        ("rkyv-u64", 42u64.encode().expect("archive").to_vec()),
        ("rkyv-unit", ().encode().expect("archive").to_vec()),
    ]
}

/// `hexdump -C` style: offset, 16 bytes in two groups of 8, ASCII gutter.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::new();
        let mut ascii = String::new();
        for (i, b) in chunk.iter().enumerate() {
            if i == 8 {
                hex.push(' ');
            }
            let _ = write!(hex, "{b:02x} ");
            ascii.push(if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            });
        }
        let _ = writeln!(out, "{:04x}  {hex:<49} |{ascii}|", row * 16);
    }
    if bytes.is_empty() {
        out.push_str("(empty: zero bytes)\n");
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind_name(kind: Kind) -> String {
    format!("{} ({kind:?})", kind as u8)
}

fn flag_names(bits: u16) -> String {
    let names: Vec<&str> = [
        (flags::SYSTEM, "SYSTEM"),
        (flags::RECEIPT, "RECEIPT"),
        (flags::PONG, "PONG"),
        (flags::RAW, "RAW"),
        (flags::STREAM, "STREAM"),
    ]
    .iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        format!("{bits:#06x} (none)")
    } else {
        format!("{bits:#06x} ({})", names.join(" | "))
    }
}

/// A field-by-field listing of a frame, its values read back with `wire::decode`.
fn field_listing(frame: &[u8]) -> String {
    let f = wire::decode(frame, usize::MAX).expect("example frames decode");
    let h = f.header;
    let name_end = wire::HEADER_LEN + f.name.len();
    let mut rows: Vec<(usize, usize, &str, String)> = vec![
        (0, 4, "magic", "\"AMSG\"".into()),
        (4, 1, "version", frame[4].to_string()),
        (5, 1, "kind", kind_name(h.kind)),
        (6, 2, "flags", flag_names(h.flags)),
        (8, 8, "message_id", h.message_id.0.to_string()),
        (16, 8, "correlation_id", h.correlation_id.0.to_string()),
        (24, 16, "sender", h.sender.to_string()),
        (40, 8, "timeout_us", h.timeout_us.to_string()),
        (48, 2, "name_len", f.name.len().to_string()),
        (50, 1, "error_code", h.error_code.to_string()),
        (51, 5, "reserved", "zero".into()),
        (56, 8, "payload_len", f.payload.len().to_string()),
    ];
    if !f.name.is_empty() {
        rows.push((
            wire::HEADER_LEN,
            f.name.len(),
            "name",
            format!("{:?}", f.name),
        ));
    }
    if f.payload_offset > name_end {
        rows.push((
            name_end,
            f.payload_offset - name_end,
            "padding",
            format!("zero, up to offset {}", f.payload_offset),
        ));
    }
    if !f.payload.is_empty() {
        let shown = match std::str::from_utf8(f.payload) {
            Ok(text) if !text.contains(char::is_control) => format!("{text:?}"),
            _ => "binary".into(),
        };
        rows.push((f.payload_offset, f.payload.len(), "payload", shown));
    }
    let mut out = format!(
        "{:>3} {:>4}  {:<47}  {:<14}  value\n",
        "off", "len", "bytes", "field"
    );
    for (off, len, field, value) in rows {
        let _ = writeln!(
            out,
            "{off:>3} {len:>4}  {:<47}  {field:<14}  {value}",
            hex(&frame[off..off + len])
        );
    }
    let _ = writeln!(out, "total {} bytes", frame.len());
    out
}

/// Every generated block of docs/wire.md: (block name, exact content).
fn generated_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    for (name, frame) in example_frames() {
        blocks.push((format!("{name}-fields"), field_listing(&frame)));
        blocks.push((name.to_owned(), hexdump(&frame)));
    }
    for (name, archive) in example_archives() {
        blocks.push((name.to_owned(), hexdump(&archive)));
    }
    blocks
}

fn marker(name: &str) -> String {
    format!("<!-- generated: {name} -->")
}

/// Finds the fenced block right after the marker of `name`: (start, end) byte
/// range of its content (between the opening and closing fence lines).
fn find_block(doc: &str, name: &str) -> Option<(usize, usize)> {
    let at = doc.find(&format!("{}\n", marker(name)))?;
    let after_marker = at + marker(name).len() + 1;
    let fence_end = doc[after_marker..].find('\n')? + after_marker + 1;
    if !doc[after_marker..fence_end].starts_with("```") {
        return None;
    }
    let mut line = fence_end;
    while !doc[line..].starts_with("```") {
        line += doc[line..].find('\n')? + 1;
    }
    Some((fence_end, line))
}

fn wire_doc_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/wire.md")
}

#[test]
fn wire_doc_examples_match_the_encoder() {
    let path = wire_doc_path();
    let mut doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let bless = std::env::var_os("AM_BLESS_WIRE_DOC").is_some();
    let mut stale = Vec::new();
    for (name, expected) in generated_blocks() {
        let Some((start, end)) = find_block(&doc, &name) else {
            stale.push(format!(
                "block {name:?} is missing: add the line `{}` followed by a ```text fence",
                marker(&name)
            ));
            continue;
        };
        if doc[start..end] != expected {
            if bless {
                doc.replace_range(start..end, &expected);
            } else {
                stale.push(format!(
                    "block {name:?} differs from the encoder; it should read:\n{expected}"
                ));
            }
        }
    }
    if bless {
        std::fs::write(&path, &doc).expect("rewrite docs/wire.md");
        assert!(stale.is_empty(), "{}", stale.join("\n"));
        return;
    }
    assert!(
        stale.is_empty(),
        "docs/wire.md is out of date (rerun with AM_BLESS_WIRE_DOC=1 to rewrite it):\n{}",
        stale.join("\n")
    );
}

/// The documented constants and the code agree (the prose quotes these numbers).
#[test]
fn wire_doc_constants_match_the_code() {
    let doc = std::fs::read_to_string(wire_doc_path()).expect("read docs/wire.md");
    assert_eq!(wire::HEADER_LEN, 64);
    assert_eq!(wire::PAYLOAD_ALIGN, 16);
    assert_eq!(wire::WIRE_VERSION, 1);
    assert_eq!(&wire::MAGIC, b"AMSG");
    let expected_flags = [
        ("SYSTEM", flags::SYSTEM),
        ("RECEIPT", flags::RECEIPT),
        ("PONG", flags::PONG),
        ("RAW", flags::RAW),
        ("AUTH", flags::AUTH),
        ("MONOTONIC_DEADLINE", flags::MONOTONIC_DEADLINE),
        ("STREAM", flags::STREAM),
    ];
    for (name, bit) in expected_flags {
        let row = format!("| `{bit:#06x}` | `{name}` |");
        assert!(doc.contains(&row), "docs/wire.md lacks the flag row {row}");
    }
    for code in 1..=7u8 {
        let row = format!("| {code} | `{:?}` |", ErrorCode::from_u8(code));
        assert!(
            doc.contains(&row),
            "docs/wire.md lacks the error-code row {row}"
        );
    }
    for byte in 1..=13u8 {
        let kind = Kind::from_u8(byte).expect("known kind");
        let row = format!("| {byte} | `{kind:?}` |");
        assert!(doc.contains(&row), "docs/wire.md lacks the kind row {row}");
    }
    assert!(
        Kind::from_u8(14).is_err(),
        "a new kind needs a row in docs/wire.md"
    );
    assert_eq!(
        flags::KNOWN,
        flags::SYSTEM
            | flags::RECEIPT
            | flags::PONG
            | flags::RAW
            | flags::AUTH
            | flags::MONOTONIC_DEADLINE
            | flags::STREAM,
        "a new flag needs a row in docs/wire.md"
    );
}

// ---------------------------------------------------------------------------
// The live test against `am serve`
// ---------------------------------------------------------------------------

/// How long the server may take to print its `PeerInfo`.
const SERVER_START: Duration = Duration::from_secs(60);
/// How long the whole Python client may run (its own receives time out sooner).
const CLIENT_RUN: Duration = Duration::from_secs(120);

/// Kills and reaps a child process when dropped, whatever happened.
struct KillOnDrop {
    child: Child,
    what: &'static str,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        eprintln!("[python_interop] {} stopped", self.what);
    }
}

/// Collects a child's output on a thread, to show it when something fails.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/wire_client.py")
}

/// Runs `cmd` to completion within `limit`, killing it if it overruns.
fn run_with_timeout(
    cmd: &mut Command,
    what: &'static str,
    limit: Duration,
) -> (ExitStatus, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut guard = KillOnDrop { child, what };
    let stdout = drain(guard.child.stdout.take().expect("piped stdout"));
    let stderr = drain(guard.child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        match guard.child.try_wait().expect("wait for child") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                drop(guard);
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                panic!("{what} did not finish within {limit:?}; stdout:\n{out}\nstderr:\n{err}");
            }
            // A bounded poll of the child's state, not a wait for an event.
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    drop(guard);
    // The output goes through the test harness: shown on failure or with --nocapture.
    println!("--- {what} ---\n{}", stdout.join().unwrap_or_default());
    (status, stderr.join().unwrap_or_default())
}

/// Whether the interpreter can import pyzmq.
fn has_pyzmq(python: &Path) -> bool {
    let probe = Command::new(python)
        .args(["-c", "import zmq"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(probe, Ok(status) if status.success())
}

/// Starts `am serve` on a free local port, with `secret` as its
/// `AM_AUTH_SECRET` if given; returns the guard and the PeerInfo.
fn start_server(secret: Option<&str>) -> (KillOnDrop, serde_json::Value, JoinHandle<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_am"));
    command.env_remove("AM_AUTH_SECRET");
    if let Some(secret) = secret {
        command.env("AM_AUTH_SECRET", secret);
    }
    let child = command
        .args(["serve", "--endpoint", "tcp://127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start `am serve`");
    let mut guard = KillOnDrop {
        child,
        what: "am serve",
    };
    let stderr = drain(guard.child.stderr.take().expect("piped stderr"));
    let stdout = guard.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(SERVER_START) {
        Ok(Some(Ok(line))) => line,
        other => {
            drop(guard);
            let err = stderr.join().unwrap_or_default();
            panic!(
                "`am serve` printed no PeerInfo line within {SERVER_START:?} ({other:?}); its stderr:\n{err}"
            );
        }
    };
    let info: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("first stdout line of `am serve` is not JSON ({e}): {line}"));
    (guard, info, stderr)
}

#[test]
fn python_client_speaks_the_wire_protocol() {
    let python = python();
    if !has_pyzmq(&python) {
        let msg = format!(
            "pyzmq is not importable by {} (set AM_PYTHON, or create <crate>/.venv with pyzmq)",
            python.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}: CI must install it");
        }
        eprintln!("skipped: pyzmq not installed; run scripts/test-all ({msg})");
        return;
    }
    let script = client_script();

    // Offline: the Python encoder reproduces the document's generated frames.
    let (status, err) = run_with_timeout(
        Command::new(&python)
            .arg(&script)
            .arg("--self-test")
            .arg(wire_doc_path()),
        "wire_client.py --self-test",
        CLIENT_RUN,
    );
    assert!(
        status.success(),
        "wire_client.py --self-test failed ({status}); stderr:\n{err}"
    );

    // Live: the Python client against the real server.
    let (server, info, server_stderr) = start_server(None);
    let endpoint = info["tcp_endpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("PeerInfo has no tcp_endpoint: {info}"))
        .to_owned();
    let instance = info["instance_id"]
        .as_str()
        .unwrap_or_else(|| panic!("PeerInfo has no instance_id: {info}"))
        .to_owned();
    let (status, err) = run_with_timeout(
        Command::new(&python)
            .arg(&script)
            .arg(&endpoint)
            .args(["--expect-instance", &instance]),
        "wire_client.py",
        CLIENT_RUN,
    );
    drop(server);
    if !status.success() {
        let server_err = server_stderr.join().unwrap_or_default();
        panic!(
            "wire_client.py failed against {endpoint} ({status}); its stderr:\n{err}\n`am serve` stderr:\n{server_err}"
        );
    }
}

/// The Python client authenticates (docs/wire.md, section 14) with Python's
/// own `hmac`, is refused before that, and then passes every check.
#[test]
fn python_client_authenticates_with_the_shared_secret() {
    let python = python();
    if !has_pyzmq(&python) {
        assert!(std::env::var_os("CI").is_none(), "CI must install pyzmq");
        eprintln!("skipped: pyzmq not installed; run scripts/test-all");
        return;
    }
    let secret = "interop secret";
    let (server, info, server_stderr) = start_server(Some(secret));
    let endpoint = info["tcp_endpoint"]
        .as_str()
        .expect("tcp_endpoint")
        .to_owned();
    let instance = info["instance_id"]
        .as_str()
        .expect("instance_id")
        .to_owned();
    let (status, err) = run_with_timeout(
        Command::new(&python)
            .arg(client_script())
            .arg(&endpoint)
            .args(["--expect-instance", &instance, "--secret", secret])
            .env_remove("AM_AUTH_SECRET"),
        "wire_client.py --secret",
        CLIENT_RUN,
    );
    drop(server);
    if !status.success() {
        let server_err = server_stderr.join().unwrap_or_default();
        panic!(
            "wire_client.py --secret failed ({status}); its stderr:\n{err}\n`am serve` stderr:\n{server_err}"
        );
    }
}
