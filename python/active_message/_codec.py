"""Payload codecs: raw bytes, JSON (what Rust's ``Json<T>`` reads and
writes), msgpack (needs the ``msgpack`` package)."""

from __future__ import annotations

import json
from typing import Any

CODECS = ("bytes", "json", "msgpack")


def check(codec: str) -> None:
    """Refuses an unknown codec name (at registration, not per call)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
    if codec == "msgpack":
        import msgpack  # noqa: F401  (fails early when missing)


def encode(value: Any, codec: str) -> Any:
    """``value`` as a byte buffer for the wire."""
    if codec == "bytes":
        if isinstance(value, (bytes, bytearray)):
            return value
        view = memoryview(value)
        # One-byte items, as the runtime reads them; no copy when contiguous.
        return view if view.format in ("B", "b", "c") else view.cast("B")
    if codec == "json":
        return json.dumps(value, separators=(",", ":")).encode()
    if codec == "msgpack":
        import msgpack

        return msgpack.packb(value, use_bin_type=True)
    check(codec)
    raise AssertionError("unreachable")


def decode(payload: Any, codec: str) -> Any:
    """A received payload (``_native.Payload``) as the handler or caller sees it."""
    if payload is None:
        return None
    if codec == "bytes":
        return memoryview(payload)
    if codec == "json":
        return json.loads(bytes(payload)) if len(payload) else None
    if codec == "msgpack":
        import msgpack

        return msgpack.unpackb(memoryview(payload), raw=False) if len(payload) else None
    check(codec)
    raise AssertionError("unreachable")
