#!/usr/bin/env python3
"""A foreign client of the active-message wire protocol (docs/wire.md).

Written from docs/wire.md alone, with pyzmq and the standard library only.

Usage:
    wire_client.py tcp://HOST:PORT [--expect-instance UUID] [--timeout SECONDS]
                   [--secret SECRET]
        Runs every live check against an `am serve` server; one line per check;
        exit code 0 only if all pass. With a secret (or AM_AUTH_SECRET in the
        environment) the client first authenticates (docs/wire.md, section 14).
    wire_client.py --self-test PATH/TO/docs/wire.md
        Offline: encodes the document's example frames and rkyv archives with
        this file's encoder and compares them with the generated hex dumps in
        the document (no pyzmq needed).

Every receive is bounded by a poll timeout: the client never hangs.
"""

import argparse
import hashlib
import hmac
import json
import os
import struct
import sys
import time
import uuid

# --------------------------------------------------------------------------
# The frame format (docs/wire.md, "Frame layout")
# --------------------------------------------------------------------------

MAGIC = b"AMSG"
VERSION = 1
HEADER_LEN = 64
PAYLOAD_ALIGN = 16

# magic, version, kind, flags, message_id, correlation_id, sender,
# timeout_us, name_len, error_code, reserved, payload_len
HEADER = struct.Struct("<4sBBHQQ16sQHB5sQ")
assert HEADER.size == HEADER_LEN

# Kinds
ONE_WAY, CONFIRM, REQUEST, ACK, RESPONSE, ERROR, RECEIPT, CANCEL, HEARTBEAT, GOODBYE = range(1, 11)
STREAM_ITEM, STREAM_END, CREDIT = range(11, 14)
KIND_NAMES = {
    1: "OneWay", 2: "Confirm", 3: "Request", 4: "Ack", 5: "Response",
    6: "Error", 7: "Receipt", 8: "Cancel", 9: "Heartbeat", 10: "Goodbye",
    11: "StreamItem", 12: "StreamEnd", 13: "Credit",
}
REPLY_KINDS = (ACK, RESPONSE, ERROR, RECEIPT)
# Replies that carry a correlation id (docs/wire.md, "What the receiver checks").
CORRELATED_KINDS = REPLY_KINDS + (STREAM_ITEM, STREAM_END)
FINAL_KINDS = (ACK, RESPONSE, ERROR)

# Flags
SYSTEM = 0x0001
RECEIPT_FLAG = 0x0002
PONG = 0x0004
RAW = 0x0008
AUTH = 0x0010
MONOTONIC_DEADLINE = 0x0020
STREAM = 0x0040
KNOWN_FLAGS = SYSTEM | RECEIPT_FLAG | PONG | RAW | AUTH | MONOTONIC_DEADLINE | STREAM

# Authentication (docs/wire.md, "Authentication handshake")
SERVER_LABEL = b"AMSG-AUTH-v1 server"
CLIENT_LABEL = b"AMSG-AUTH-v1 client"
OUR_LIMIT = 64 << 20

# Error codes
NO_SUCH_HANDLER, HANDLER, REFUSED, SHUTTING_DOWN, CODEC, TOO_LARGE, INTERNAL = range(1, 8)
CODE_NAMES = {
    1: "NoSuchHandler", 2: "Handler", 3: "Refused", 4: "ShuttingDown",
    5: "Codec", 6: "TooLarge", 7: "Internal",
}


class ProtocolError(Exception):
    """A frame that breaks docs/wire.md."""


def payload_offset(name_len):
    """Offset of the payload: header, name, zero padding to a multiple of 16."""
    return HEADER_LEN + -(-name_len // PAYLOAD_ALIGN) * PAYLOAD_ALIGN


def encode_frame(kind, message_id, sender, name=b"", payload=b"", flags=0,
                 correlation_id=0, timeout_us=0, error_code=0,
                 magic=MAGIC, version=VERSION):
    """One complete frame (bytes). `sender` is 16 bytes, `name` UTF-8 bytes."""
    if isinstance(name, str):
        name = name.encode("utf-8")
    head = HEADER.pack(magic, version, kind, flags, message_id, correlation_id,
                       sender, timeout_us, len(name), error_code, b"\0" * 5,
                       len(payload))
    padding = b"\0" * (payload_offset(len(name)) - HEADER_LEN - len(name))
    return head + name + padding + payload


class Frame:
    """A decoded frame."""

    def __init__(self, kind, flags, message_id, correlation_id, sender,
                 timeout_us, error_code, name, payload):
        self.kind = kind
        self.flags = flags
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.sender = sender
        self.timeout_us = timeout_us
        self.error_code = error_code
        self.name = name
        self.payload = payload

    def text(self):
        return self.payload.decode("utf-8", errors="replace")

    def __repr__(self):
        extra = ""
        if self.kind == ERROR:
            extra = " code=%s text=%r" % (CODE_NAMES.get(self.error_code, self.error_code), self.text())
        return "<%s id=%d corr=%d flags=%#06x name=%r payload=%d bytes%s>" % (
            KIND_NAMES.get(self.kind, self.kind), self.message_id, self.correlation_id,
            self.flags, self.name, len(self.payload), extra)


def decode_frame(data, max_len=None):
    """Decodes and checks a frame with the receiver's rules (docs/wire.md, "Validation")."""
    if max_len is not None and len(data) > max_len:
        raise ProtocolError("frame of %d bytes exceeds %d" % (len(data), max_len))
    if len(data) < HEADER_LEN:
        raise ProtocolError("frame of %d bytes is shorter than the header" % len(data))
    (magic, version, kind, flags, message_id, correlation_id, sender, timeout_us,
     name_len, error_code, reserved, payload_len) = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("bad magic %r" % magic)
    if version != VERSION:
        raise ProtocolError("unsupported version %d" % version)
    if kind not in KIND_NAMES:
        raise ProtocolError("unknown kind %d" % kind)
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError("unknown flags %#06x" % flags)
    if reserved != b"\0" * 5:
        raise ProtocolError("reserved bytes are not zero")
    if message_id == 0 or (kind in CORRELATED_KINDS and correlation_id == 0):
        raise ProtocolError("missing message or correlation id")
    offset = payload_offset(name_len)
    if offset + payload_len != len(data):
        raise ProtocolError("header declares %d bytes, frame has %d" % (offset + payload_len, len(data)))
    try:
        name = data[HEADER_LEN:HEADER_LEN + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("handler name is not UTF-8")
    return Frame(kind, flags, message_id, correlation_id, bytes(sender), timeout_us,
                 error_code, name, bytes(data[offset:]))


# --------------------------------------------------------------------------
# rkyv 0.8 archives of the few types the demo handlers use
# (docs/wire.md, "Typed payloads")
# --------------------------------------------------------------------------

def rkyv_string(text):
    """Archive of a Rust `String` (little-endian, 32-bit relative pointers)."""
    data = text.encode("utf-8")
    n = len(data)
    if n <= 8:  # inline: the bytes, then 0xff up to 8 bytes
        return data + b"\xff" * (8 - n)
    if n > (1 << 30) - 1:
        raise ValueError("string too long for rkyv")
    body = data + b"\0" * (-n % 4)  # the bytes, zero-padded to 4
    tagged = (n & 0x3F) | 0x80 | ((n & ~0x3F) << 2)
    return body + struct.pack("<Ii", tagged, -len(body))


def rkyv_string_decode(archive):
    """The `String` archived in `archive` (root object at its end)."""
    if len(archive) < 8:
        raise ValueError("archive too short for a String")
    at = len(archive) - 8
    repr_ = archive[at:]
    if repr_[0] & 0xC0 != 0x80:  # inline
        end = repr_.find(b"\xff")
        return repr_[: 8 if end < 0 else end].decode("utf-8")
    tagged, offset = struct.unpack("<Ii", repr_)
    n = (tagged & 0x3F) | ((tagged & ~0xFF) >> 2)
    start = at + offset
    if start < 0 or start + n > at:
        raise ValueError("string pointer out of bounds")
    return archive[start:start + n].decode("utf-8")


def rkyv_u64(value):
    return struct.pack("<Q", value)


def rkyv_u64_decode(archive):
    if len(archive) != 8:
        raise ValueError("a u64 archive is 8 bytes, got %d" % len(archive))
    return struct.unpack("<Q", archive)[0]


# --------------------------------------------------------------------------
# Self-test against the document's generated examples
# --------------------------------------------------------------------------

DOC_CALLER = bytes.fromhex("00112233445566778899aabbccddeeff")
DOC_SERVER = bytes.fromhex("a0a1a2a3b0b14cc180d1e0e1e2e3e4e5")


def stream_preamble(window):
    """The 16 bytes opening a STREAM request's payload (docs/wire.md, section 15)."""
    return struct.pack("<I", window) + b"\0" * 12


def doc_examples():
    """The frames and archives docs/wire.md shows, built with this encoder."""
    return {
        "frame-stream-request": encode_frame(REQUEST, 20, DOC_CALLER, "count_bytes",
                                             stream_preamble(4) + struct.pack("<Q", 3),
                                             flags=STREAM | RAW, timeout_us=1_500_000),
        "frame-stream-item": encode_frame(STREAM_ITEM, 30, DOC_SERVER, payload=struct.pack("<Q", 0),
                                          flags=RAW, correlation_id=20),
        "frame-credit": encode_frame(CREDIT, 21, DOC_CALLER, payload=struct.pack("<I", 2),
                                     correlation_id=20),
        "frame-stream-end": encode_frame(STREAM_END, 33, DOC_SERVER, correlation_id=20),
        "frame-request": encode_frame(REQUEST, 7, DOC_CALLER, "echo_bytes", b"hello",
                                      flags=RECEIPT_FLAG | RAW, timeout_us=1_500_000),
        "frame-receipt": encode_frame(RECEIPT, 1, DOC_SERVER, correlation_id=7),
        "frame-response": encode_frame(RESPONSE, 2, DOC_SERVER, payload=b"hello", correlation_id=7),
        "frame-system": encode_frame(REQUEST, 8, DOC_CALLER, "_health_check",
                                     flags=SYSTEM | RAW, timeout_us=5_000_000),
        "frame-error": encode_frame(ERROR, 3, DOC_SERVER, payload=b"nope", correlation_id=9,
                                    error_code=NO_SUCH_HANDLER),
        "frame-probe": encode_frame(HEARTBEAT, 10, DOC_CALLER),
        "frame-pong": encode_frame(HEARTBEAT, 4, DOC_SERVER, flags=PONG, correlation_id=10),
        "frame-cancel": encode_frame(CANCEL, 12, DOC_CALLER, correlation_id=11),
        "rkyv-string-inline": rkyv_string("hello"),
        "rkyv-string-8": rkyv_string("12345678"),
        "rkyv-string-out-of-line": rkyv_string("hello, active messages"),
        "rkyv-string-long": rkyv_string("x" * 100),
        "rkyv-u64": rkyv_u64(42),
        "rkyv-unit": b"",
    }


def doc_block(doc, name):
    """Bytes of the hex dump after `<!-- generated: NAME -->` in the document."""
    marker = "<!-- generated: %s -->\n" % name
    at = doc.find(marker)
    if at < 0:
        raise KeyError("no block %r in the document" % name)
    lines = doc[at + len(marker):].split("\n")
    if not lines[0].startswith("```"):
        raise KeyError("block %r has no fence" % name)
    out = bytearray()
    for line in lines[1:]:
        if line.startswith("```"):
            return bytes(out)
        if line.startswith("(empty"):
            continue
        tokens = line.split("|", 1)[0].split()
        out += bytes(int(t, 16) for t in tokens[1:])
    raise KeyError("block %r is not closed" % name)


def self_test(doc_path):
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    failures = 0
    for name, mine in doc_examples().items():
        theirs = doc_block(doc, name)
        ok = mine == theirs
        if ok and name.startswith("frame-"):
            frame = decode_frame(theirs)
            ok = encode_frame(frame.kind, frame.message_id, frame.sender, frame.name,
                              frame.payload, frame.flags, frame.correlation_id,
                              frame.timeout_us, frame.error_code) == theirs
        if ok and name.startswith("rkyv-string"):
            ok = rkyv_string(rkyv_string_decode(theirs)) == theirs
        print("%s self-test %s" % ("PASS" if ok else "FAIL", name))
        if not ok:
            failures += 1
            print("  document: %s\n  python:   %s" % (theirs.hex(" "), mine.hex(" ")))
    # The validation rules refuse what they must.
    good = doc_examples()["frame-request"]
    bad_cases = {
        "truncated": good[:10],
        "bad magic": b"XMSG" + good[4:],
        "bad version": good[:4] + b"\x02" + good[5:],
        "unknown kind": good[:5] + b"\x0e" + good[6:],
        "unknown flag": good[:6] + b"\x80\x00" + good[8:],
        "item without correlation": encode_frame(STREAM_ITEM, 2, DOC_SERVER),
        "reserved not zero": good[:51] + b"\x01" + good[52:],
        "length mismatch": good + b"!",
        "reply without correlation": encode_frame(RESPONSE, 2, DOC_SERVER),
        "no message id": encode_frame(REQUEST, 0, DOC_CALLER, "echo_bytes"),
        "name not utf-8": encode_frame(REQUEST, 1, DOC_CALLER, b"\xff\xfe"),
    }
    for what, data in bad_cases.items():
        try:
            decode_frame(data)
            ok = False
        except ProtocolError:
            ok = True
        print("%s self-test refuses %s" % ("PASS" if ok else "FAIL", what))
        failures += 0 if ok else 1
    return failures


# --------------------------------------------------------------------------
# The live client
# --------------------------------------------------------------------------

class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


class Client:
    """A DEALER speaking the protocol to one server (docs/wire.md, "Transport")."""

    # While a reply is awaited, send a heartbeat probe whenever we have sent
    # nothing for this long, so the server never takes us for gone (it drops
    # a client silent for three of its heartbeat intervals, 750 ms by default).
    PROBE_EVERY = 0.1

    def __init__(self, endpoint, timeout):
        import zmq  # Imported here so --self-test runs without pyzmq.

        self.zmq = zmq
        self.timeout = timeout
        self.sender = uuid.uuid4().bytes
        self.next_id = 1
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.sender)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.sock.connect(endpoint)
        self.server = None  # the server's instance id, learned from its frames
        self.max_frame = None  # the server's frame limit, if it announced one
        self.stray = []  # frames that answered nothing we were waiting for
        self.pongs = []  # correlation ids of the pongs received
        self.last_sent = time.monotonic()

    def close(self):
        self.sock.close(0)
        self.ctx.term()

    def new_id(self):
        mid = self.next_id
        self.next_id += 1
        return mid

    def send_raw(self, data):
        self.sock.send(data)
        self.last_sent = time.monotonic()

    def send(self, kind, name=b"", payload=b"", flags=0, correlation_id=0):
        mid = self.new_id()
        # The caller's budget travels with invocations only (informative).
        budget = int(self.timeout * 1e6) if kind in (ONE_WAY, CONFIRM, REQUEST) else 0
        self.send_raw(encode_frame(kind, mid, self.sender, name, payload, flags,
                                   correlation_id=correlation_id, timeout_us=budget))
        return mid

    def probe(self):
        return self.send(HEARTBEAT)

    def _answer_to(self, mid, until):
        """The first frame whose correlation id is `mid`, without probing
        (plain probes are refused before authentication)."""
        while time.monotonic() < until:
            wait = max(1, int((until - time.monotonic()) * 1000))
            if not self.sock.poll(wait, self.zmq.POLLIN):
                continue
            frame = decode_frame(self.sock.recv())
            if frame.correlation_id == mid:
                return frame
        raise CheckFailed("no answer to message %d" % mid)

    def authenticate(self, secret):
        """The handshake of docs/wire.md section 14; checks the server's proof
        and returns the server's instance id."""
        until = time.monotonic() + self.timeout
        nonce = os.urandom(32)
        hello = self.send(HEARTBEAT, payload=struct.pack("<Q", OUR_LIMIT) + nonce, flags=AUTH)
        challenge = self._answer_to(hello, until)
        expect(challenge.kind == HEARTBEAT and challenge.flags == PONG | AUTH
               and len(challenge.payload) == 72, "not a challenge: %r" % challenge)
        server_nonce, server_proof = challenge.payload[8:40], challenge.payload[40:72]
        signed = nonce + server_nonce + self.sender + challenge.sender
        expected = hmac.new(secret, SERVER_LABEL + signed, hashlib.sha256).digest()
        expect(hmac.compare_digest(expected, server_proof), "the server's proof is wrong")
        proof = hmac.new(secret, CLIENT_LABEL + signed, hashlib.sha256).digest()
        mid = self.send(HEARTBEAT, payload=proof, flags=AUTH,
                        correlation_id=challenge.message_id)
        welcome = self._answer_to(mid, until)
        expect(welcome.kind == HEARTBEAT and welcome.flags == PONG | AUTH,
               "not welcomed: %r" % welcome)
        self.server = challenge.sender
        return challenge.sender

    def _recv(self, until):
        """One decoded frame before `until` (monotonic), or None at the deadline.
        Heartbeats are handled here: probes answered, pongs counted."""
        while True:
            now = time.monotonic()
            if now >= until:
                return None
            if now - self.last_sent >= self.PROBE_EVERY:
                self.probe()
            wait = min(until - now, self.PROBE_EVERY)
            if not self.sock.poll(max(1, int(wait * 1000)), self.zmq.POLLIN):
                continue
            parts = self.sock.recv_multipart()
            if len(parts) != 1:
                raise CheckFailed("a reply of %d parts, expected exactly one frame" % len(parts))
            try:
                frame = decode_frame(parts[0])
            except ProtocolError as err:
                raise CheckFailed("the server sent a malformed frame: %s" % err)
            if self.server is None:
                self.server = frame.sender
            if frame.kind == HEARTBEAT:
                if frame.flags & PONG:
                    self.pongs.append(frame.correlation_id)
                    if len(frame.payload) == 8:
                        self.max_frame = struct.unpack("<Q", frame.payload)[0]
                else:
                    self.send(HEARTBEAT, flags=PONG, correlation_id=frame.message_id)
                continue
            if frame.kind == GOODBYE:
                raise CheckFailed("the server said goodbye")
            return frame

    def await_replies(self, correlation_id, timeout=None):
        """The replies to `correlation_id`, in order, up to the final one."""
        until = time.monotonic() + (timeout or self.timeout)
        replies = []
        while True:
            frame = self._recv(until)
            if frame is None:
                raise CheckFailed("no final reply to message %d within %.1f s (got %r)"
                                  % (correlation_id, timeout or self.timeout, replies))
            if frame.kind not in REPLY_KINDS or frame.correlation_id != correlation_id:
                self.stray.append(frame)
                continue
            replies.append(frame)
            if frame.kind in FINAL_KINDS:
                return replies

    def call(self, kind, name, payload=b"", flags=0, timeout=None):
        mid = self.send(kind, name, payload, flags)
        return mid, self.await_replies(mid, timeout)

    def stream(self, name, payload=b"", window=8, flags=0):
        """Starts a streamed call (docs/wire.md, section 15); returns its reader."""
        mid = self.send(REQUEST, name, stream_preamble(window) + payload, flags | STREAM)
        return StreamReader(self, mid, window)

    def quiet(self, seconds):
        """Listens for `seconds`; every non-heartbeat frame heard is stray."""
        until = time.monotonic() + seconds
        while True:
            frame = self._recv(until)
            if frame is None:
                return
            self.stray.append(frame)


class StreamReader:
    """Iterates a stream's items (bytes), granting credit every half window;
    ends at StreamEnd, raises CheckFailed on Error. `cancel()` stops it."""

    def __init__(self, client, mid, window):
        self.client = client
        self.mid = mid
        self.window = window
        self.unacked = 0
        self.done = False
        self.error = None

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        until = time.monotonic() + self.client.timeout
        while True:
            frame = self.client._recv(until)
            if frame is None:
                raise CheckFailed("stream %d: no item within %.1f s" % (self.mid, self.client.timeout))
            if frame.correlation_id != self.mid or frame.kind not in (STREAM_ITEM, STREAM_END, ERROR):
                self.client.stray.append(frame)
                continue
            if frame.kind == STREAM_ITEM:
                self.unacked += 1
                if self.unacked * 2 >= self.window:
                    self.client.send(CREDIT, payload=struct.pack("<I", self.unacked),
                                     correlation_id=self.mid)
                    self.unacked = 0
                return frame.payload
            self.done = True
            if frame.kind == ERROR:
                self.error = frame
                raise CheckFailed("stream %d failed: %r" % (self.mid, frame))
            raise StopIteration

    def cancel(self):
        """Sends Cancel; items already on the way are read and dropped by
        `drain_cancelled` (nothing else follows them)."""
        self.done = True
        self.client.send(CANCEL, correlation_id=self.mid)

    def drain_cancelled(self, seconds):
        """After `cancel`: listens `seconds`, dropping this stream's late items;
        returns how many, and fails if an end or error follows the cancel."""
        late = 0
        until = time.monotonic() + seconds
        while True:
            frame = self.client._recv(until)
            if frame is None:
                return late
            if frame.correlation_id == self.mid and frame.kind == STREAM_ITEM:
                late += 1
                continue
            if frame.correlation_id == self.mid:
                raise CheckFailed("a cancelled stream sent %r" % frame)
            self.client.stray.append(frame)


def one_reply(replies, kind, mid):
    expect(len(replies) == 1, "expected one reply, got %r" % replies)
    frame = replies[0]
    expect(frame.kind == kind, "expected %s, got %r" % (KIND_NAMES[kind], frame))
    expect(frame.correlation_id == mid, "correlation id %d != message id %d"
           % (frame.correlation_id, mid))
    expect(frame.name == "", "a reply carries no handler name: %r" % frame)
    return frame


def expect_error(replies, mid, code, text=None):
    frame = one_reply(replies, ERROR, mid)
    expect(frame.error_code == code, "expected error code %s, got %r" % (CODE_NAMES[code], frame))
    if text is not None:
        expect(frame.text() == text, "expected error text %r, got %r" % (text, frame.text()))
    return frame


def run_checks(endpoint, expect_instance, timeout, secret=None):
    client = Client(endpoint, timeout)
    expected_sender = uuid.UUID(expect_instance).bytes if expect_instance else None
    results = []

    def check(label, fn):
        started = time.monotonic()
        try:
            detail = fn() or ""
            results.append(True)
            print("PASS %s%s (%.0f ms)" % (label, " -- " + detail if detail else "",
                                          (time.monotonic() - started) * 1000), flush=True)
        except Exception as err:  # noqa: BLE001 -- report every failure the same way
            results.append(False)
            print("FAIL %s: %s: %s" % (label, type(err).__name__, err), flush=True)

    def handshake():
        mid = client.probe()
        until = time.monotonic() + timeout
        # _recv handles heartbeats itself; listen until our pong was seen.
        while mid not in client.pongs:
            expect(time.monotonic() < until, "no pong to heartbeat probe %d" % mid)
            frame = client._recv(min(until, time.monotonic() + 0.05))
            if frame is not None:
                client.stray.append(frame)
        if expected_sender is not None:
            expect(client.server == expected_sender, "pong from instance %s, expected %s"
                   % (uuid.UUID(bytes=client.server), expect_instance))
        limit = "" if client.max_frame is None else ", server max frame %d bytes" % client.max_frame
        return "pong to probe %d from %s%s" % (mid, uuid.UUID(bytes=client.server), limit)

    def echo_request():
        payload = bytes(range(256)) * 4 + b"\0end"
        mid, replies = client.call(REQUEST, "echo_bytes", payload, flags=RAW)
        frame = one_reply(replies, RESPONSE, mid)
        expect(frame.payload == payload, "echoed payload differs (%d bytes back)" % len(frame.payload))
        expect(frame.error_code == 0, "error code %d on a response" % frame.error_code)
        if expected_sender is not None:
            expect(frame.sender == expected_sender, "response sender %s is not the server"
                   % uuid.UUID(bytes=frame.sender))
        return "%d bytes echoed, correlation %d" % (len(payload), frame.correlation_id)

    def confirm():
        mid, replies = client.call(CONFIRM, "echo_bytes", b"confirm me", flags=RAW)
        frame = one_reply(replies, ACK, mid)
        expect(frame.payload == b"", "an Ack carries no payload, got %r" % frame.payload)
        return "ack for %d" % mid

    def handler_error():
        mid, replies = client.call(REQUEST, "fail_bytes", b"x", flags=RAW)
        frame = expect_error(replies, mid, HANDLER, "bytes handler failed")
        return "Handler: %r" % frame.text()

    def no_such_handler():
        mid, replies = client.call(REQUEST, "nope", b"", flags=RAW)
        frame = expect_error(replies, mid, NO_SUCH_HANDLER, "nope")
        return "NoSuchHandler: %r" % frame.text()

    def health_check():
        mid, replies = client.call(REQUEST, "_health_check", b"", flags=SYSTEM | RAW)
        frame = one_reply(replies, RESPONSE, mid)
        body = json.loads(frame.payload)
        expect(body.get("status") == "ok", "status is %r" % body.get("status"))
        if expect_instance:
            expect(body.get("instance_id") == expect_instance, "instance_id %r" % body.get("instance_id"))
        for key in ("uptime_ms", "handlers", "handlers_running", "calls_in_flight"):
            expect(isinstance(body.get(key), int), "%s missing from %r" % (key, body))
        return "status ok, %d handlers" % body["handlers"]

    def list_handlers():
        mid, replies = client.call(REQUEST, "_list_handlers", b"null", flags=SYSTEM | RAW)
        frame = one_reply(replies, RESPONSE, mid)
        names = json.loads(frame.payload)["handlers"]
        for name in ("echo_bytes", "fail_bytes", "echo", "_health_check"):
            expect(name in names, "%s not listed in %r" % (name, names))
        expect(names == sorted(names), "handler list not sorted")
        return "%d handlers listed" % len(names)

    def other_system_handlers():
        mid, replies = client.call(REQUEST, "_discover", b"", flags=SYSTEM | RAW)
        info = json.loads(one_reply(replies, RESPONSE, mid).payload)
        expect(info.get("tcp_endpoint") == endpoint, "_discover tcp_endpoint %r" % info.get("tcp_endpoint"))
        for key in ("instance_id", "shm_endpoint", "local_endpoint", "host_id"):
            expect(key in info, "%s missing from _discover: %r" % (key, info))
        if expect_instance:
            expect(info["instance_id"] == expect_instance, "_discover instance_id %r" % info["instance_id"])
        for name, timeout_ms, available in (("echo", 100, True), ("never_registered", 50, False)):
            request = json.dumps({"handler_name": name, "timeout_ms": timeout_ms}).encode()
            mid, replies = client.call(REQUEST, "_wait_for_handler", request, flags=SYSTEM | RAW)
            body = json.loads(one_reply(replies, RESPONSE, mid).payload)
            expect(body == {"handler_name": name, "available": available}, "_wait_for_handler %r" % body)
        mid, replies = client.call(REQUEST, "_wait_for_handler", b"{not json", flags=SYSTEM | RAW)
        expect_error(replies, mid, CODEC)
        return "_discover, _wait_for_handler (found, not found, bad JSON -> Codec)"

    def stats():
        mid, replies = client.call(REQUEST, "_stats", b"", flags=SYSTEM | RAW)
        body = json.loads(one_reply(replies, RESPONSE, mid).payload)
        counters = body["counters"]
        for key in ("messages_received", "replies_sent", "handler_errors", "unknown_handler",
                    "refused", "protocol_errors"):
            expect(isinstance(counters.get(key), int), "%s missing from _stats: %r" % (key, counters))
        for key in ("instance_id", "late_replies", "calls_in_flight", "handlers_running", "peers"):
            expect(key in body, "%s missing from _stats: %r" % (key, body))
        # (g) sent five malformed messages.
        expect(counters["protocol_errors"] >= 5, "protocol_errors = %d" % counters["protocol_errors"])
        return "protocol_errors = %d, refused = %d" % (counters["protocol_errors"], counters["refused"])

    def refused_without_system_flag():
        mid, replies = client.call(REQUEST, "_health_check", b"", flags=RAW)
        frame = expect_error(replies, mid, REFUSED)
        mid, replies = client.call(REQUEST, "echo_bytes", b"", flags=SYSTEM | RAW)
        expect_error(replies, mid, REFUSED)
        return "Refused both ways: %r" % frame.text()

    def garbage_then_echo():
        before = len(client.stray)
        client.send_raw(b"this is not a frame")
        bad_magic = bytearray(encode_frame(REQUEST, client.new_id(), client.sender,
                                           "echo_bytes", b"hi", flags=RAW))
        bad_magic[0:4] = b"XMSG"
        client.send_raw(bytes(bad_magic))
        bad_version = bytearray(encode_frame(REQUEST, client.new_id(), client.sender,
                                             "echo_bytes", b"hi", flags=RAW))
        bad_version[4] = 2
        client.send_raw(bytes(bad_version))
        client.quiet(0.3)
        expect(len(client.stray) == before, "unreadable frames were answered: %r"
               % client.stray[before:])
        # A readable header that lies about the length: answered with Codec.
        mid = client.new_id()
        lying = bytearray(encode_frame(REQUEST, mid, client.sender, "echo_bytes", b"hello", flags=RAW))
        lying[56:64] = struct.pack("<Q", 6)
        client.send_raw(bytes(lying))
        expect_error(client.await_replies(mid), mid, CODEC)
        # Two ZeroMQ parts instead of one frame: malformed, answered with Codec.
        mid = client.new_id()
        client.sock.send_multipart([encode_frame(REQUEST, mid, client.sender, "echo_bytes",
                                                 b"part one", flags=RAW), b"part two"])
        expect_error(client.await_replies(mid), mid, CODEC)
        echo_request()
        return ("3 unreadable frames dropped silently, length lie and multipart message "
                "answered with Codec, echo still works")

    def receipt():
        mid, replies = client.call(REQUEST, "echo_bytes", b"with receipt", flags=RECEIPT_FLAG | RAW)
        expect(len(replies) == 2, "expected Receipt then Response, got %r" % replies)
        expect(replies[0].kind == RECEIPT and replies[0].correlation_id == mid,
               "first reply %r is not the Receipt" % replies[0])
        expect(replies[0].payload == b"", "a Receipt carries no payload")
        frame = replies[1]
        expect(frame.kind == RESPONSE and frame.correlation_id == mid, "second reply %r" % frame)
        expect(frame.payload == b"with receipt", "payload %r" % frame.payload)
        return "Receipt, then Response"

    def typed_echo():
        details = []
        for text in ("hello", "hello, active messages", "\u00e9t\u00e9 " * 40):
            archive = rkyv_string(text)
            for handler in ("echo", "echo_async", "echo_archived"):
                mid, replies = client.call(REQUEST, handler, archive)
                frame = one_reply(replies, RESPONSE, mid)
                expect(frame.payload == archive, "%s returned %r for %r" % (handler, frame.payload, text))
                expect(rkyv_string_decode(frame.payload) == text, "%s returned %r" % (handler, frame.payload))
            details.append("%d-byte archive" % len(archive))
        mid, replies = client.call(REQUEST, "echo", b"\x01\x02\x03")
        expect_error(replies, mid, CODEC)
        mid, replies = client.call(REQUEST, "fail", rkyv_string("x"))
        expect_error(replies, mid, HANDLER, 'failed on "x"')
        return "echo, echo_async, echo_archived (%s); undecodable archive -> Codec" % ", ".join(details)

    def one_way_then_count():
        client.send(ONE_WAY, "note", b"")
        client.send(ONE_WAY, "nope", b"")  # fails silently: one-way gets no reply
        deadline = time.monotonic() + timeout
        while True:
            mid, replies = client.call(REQUEST, "notes", b"")
            count = rkyv_u64_decode(one_reply(replies, RESPONSE, mid).payload)
            if count >= 1:
                return "notes = %d after one OneWay" % count
            expect(time.monotonic() < deadline, "the OneWay note never ran")

    def cancel_unknown():
        client.send(CANCEL, correlation_id=999_999)
        client.quiet(0.2)
        echo_request()
        return "Cancel of an unknown call is ignored"

    def slow_call_kept_alive():
        # Longer than the server's heartbeat timeout (750 ms by default): the
        # reply arrives only because the client keeps probing while it waits.
        mid, replies = client.call(REQUEST, "slow", rkyv_u64(1200))
        frame = one_reply(replies, RESPONSE, mid)
        expect(rkyv_u64_decode(frame.payload) == 1200, "slow returned %r" % frame.payload)
        return "slow(1200 ms) answered while probing every %.0f ms" % (client.PROBE_EVERY * 1000)

    def stream_in_order():
        items = list(client.stream("count_bytes", struct.pack("<Q", 1000), window=8, flags=RAW))
        expect(len(items) == 1000, "got %d items" % len(items))
        for i, item in enumerate(items):
            expect(item == struct.pack("<Q", i), "item %d is %r" % (i, item))
        reader = client.stream("count_then_fail", rkyv_u64(3), window=2)
        got = []
        try:
            for item in reader:
                got.append(rkyv_u64_decode(item))
            raise CheckFailed("count_then_fail ended without its error")
        except CheckFailed:
            expect(reader.error is not None and reader.error.error_code == HANDLER,
                   "expected Error Handler, got %r" % reader.error)
        expect(got == [0, 1, 2], "items before the error: %r" % got)
        return "1000 raw items in order with window 8; 3 items then %r" % reader.error.text()

    def stream_cancel():
        def cancels():
            mid, replies = client.call(REQUEST, "stream_cancels", b"")
            return rkyv_u64_decode(one_reply(replies, RESPONSE, mid).payload)
        before = cancels()
        reader = client.stream("ticks", b"", window=4)
        for i in range(10):
            expect(rkyv_u64_decode(next(reader)) == i, "tick %d out of order" % i)
        reader.cancel()
        late = reader.drain_cancelled(0.3)
        expect(late <= 4, "%d items after the cancel, more than the window" % late)
        deadline = time.monotonic() + timeout
        while cancels() != before + 1:
            expect(time.monotonic() < deadline, "the handler never saw the cancel")
        return "10 ticks, Cancel, %d late items dropped, the handler saw it" % late

    def no_stray_frames():
        client.quiet(0.2)
        expect(not client.stray, "frames answering nothing: %r" % client.stray)
        client.send(GOODBYE)
        return "%d pongs received along the way" % len(client.pongs)

    def refused_before_authentication():
        mid = client.send(REQUEST, "echo_bytes", b"x")
        frame = client._answer_to(mid, time.monotonic() + timeout)
        expect(frame.kind == ERROR and frame.error_code == REFUSED,
               "expected Error Refused, got %r" % frame)
        return "Request before the handshake: Error Refused (%s)" % frame.text()

    def authenticate():
        server = client.authenticate(secret)
        if expected_sender is not None:
            expect(server == expected_sender, "authenticated by the wrong instance")
        return "HMAC-SHA256 proofs exchanged with %s" % uuid.UUID(bytes=server)

    try:
        if secret is not None:
            check("(00) before authenticating, a Request is refused", refused_before_authentication)
            check("(01) authentication handshake, both proofs checked", authenticate)
        check("(0) heartbeat probe answered with PONG", handshake)
        check("(a) Request echo_bytes -> Response, same payload and correlation", echo_request)
        check("(b) Confirm echo_bytes -> Ack", confirm)
        check("(c) Request fail_bytes -> Error Handler with text", handler_error)
        check("(d) Request nope -> Error NoSuchHandler", no_such_handler)
        check("(e) Request _health_check (SYSTEM, empty payload) -> JSON status ok", health_check)
        check("(e2) Request _list_handlers (SYSTEM) -> JSON list", list_handlers)
        check("(e3) _discover and _wait_for_handler JSON", other_system_handlers)
        check("(f) _-name without SYSTEM (and SYSTEM on a user name) -> Error Refused",
              refused_without_system_flag)
        check("(g) garbage and bad magic dropped, connection keeps serving", garbage_then_echo)
        check("(g2) _stats JSON counts the malformed messages", stats)
        check("(h) RECEIPT flag -> Receipt then Response", receipt)
        check("(i) typed echo with rkyv String archives", typed_echo)
        check("(j) OneWay note, then Request notes (rkyv u64)", one_way_then_count)
        check("(k) Cancel of an unknown call", cancel_unknown)
        check("(l) a call longer than the heartbeat timeout, kept alive by probes", slow_call_kept_alive)
        check("(m) STREAM request: items in order with credit; an error after k items",
              stream_in_order)
        check("(n) a stream cancelled mid-way stops its handler", stream_cancel)
        check("(z) no stray frames; Goodbye", no_stray_frames)
    finally:
        client.close()
    failed = results.count(False)
    print("%d/%d checks passed" % (len(results) - failed, len(results)), flush=True)
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("endpoint", nargs="?", help="tcp://HOST:PORT of an `am serve` server")
    parser.add_argument("--expect-instance", help="the server's instance id (UUID)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for any one reply (default 10)")
    parser.add_argument("--secret", default=os.environ.get("AM_AUTH_SECRET") or None,
                        help="authenticate with this shared secret first "
                             "(default: $AM_AUTH_SECRET)")
    parser.add_argument("--self-test", metavar="WIRE_MD",
                        help="check the encoder against docs/wire.md, offline")
    args = parser.parse_args()
    if args.self_test:
        failed = self_test(args.self_test)
    elif args.endpoint and args.endpoint.startswith("tcp://"):
        secret = args.secret.encode() if args.secret is not None else None
        failed = run_checks(args.endpoint, args.expect_instance, args.timeout, secret)
    else:
        parser.error("give a tcp:// endpoint or --self-test PATH")
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
