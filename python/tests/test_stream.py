"""Streamed responses from a Rust `am serve` into Python: items in order,
a handler's error after its items, and cancellation, over shm and TCP."""

import struct

import pytest

import active_message as am

POLICIES = ["shm", "tcp"]


def u64(value: int) -> bytes:
    """The rkyv archive of a `u64` (8 bytes, little-endian)."""
    return struct.pack("<Q", value)


@pytest.mark.parametrize("policy", POLICIES)
def test_items_arrive_in_order_then_the_end(spawn, policy):
    rust = spawn("rust")
    with am.Manager("tcp://127.0.0.1:0", transport_policy=policy) as m:
        peer = m.connect(rust.info)
        items = [struct.unpack("<Q", bytes(item))[0]
                 for item in m.stream(peer, "count_bytes", u64(10_000), window=16)]
        assert items == list(range(10_000))


@pytest.mark.parametrize("policy", POLICIES)
def test_a_handler_error_follows_its_items(spawn, policy):
    rust = spawn("rust")
    with am.Manager("tcp://127.0.0.1:0", transport_policy=policy) as m:
        peer = m.connect(rust.info)
        got = []
        with pytest.raises(am.HandlerError, match="^failed after 3 items$"):
            for item in m.stream(peer, "count_then_fail", u64(3), window=2):
                got.append(struct.unpack("<Q", bytes(item))[0])
        assert got == [0, 1, 2]


@pytest.mark.parametrize("policy", POLICIES)
def test_cancel_stops_the_handler(spawn, policy):
    rust = spawn("rust")
    with am.Manager("tcp://127.0.0.1:0", transport_policy=policy) as m:
        peer = m.connect(rust.info)

        def cancels() -> int:
            return struct.unpack("<Q", bytes(m.request(peer, "stream_cancels", b"")))[0]

        before = cancels()
        ticks = m.stream(peer, "ticks", b"", window=4)
        for expected in range(10):
            assert struct.unpack("<Q", bytes(next(ticks)))[0] == expected
        ticks.cancel()
        with pytest.raises(am.Cancelled):
            next(ticks)
        with pytest.raises(StopIteration):
            next(ticks)
        # The handler sees its cancellation (polled: it runs in another process).
        while cancels() != before + 1:
            pass
