//! The generated examples of docs/wire.md, checked against the encoder.

use std::fmt::Write as _;

use active_message::wire::{self, ErrorCode, Header, Kind, flags};
use active_message::{InstanceId, MessageId, Payload};

use crate::wire_doc_path;

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
