"""Managers in one process: handler kinds, codecs, exceptions, options,
zero-copy payloads, and that a blocked handler holds up no other caller."""

import asyncio
import threading

import numpy as np
import pytest

import active_message as am


@pytest.fixture
def pair():
    server = am.Manager("tcp://127.0.0.1:0", max_message_bytes=128 << 20)
    client = am.Manager("tcp://127.0.0.1:0", max_message_bytes=128 << 20)
    yield server, client, client.connect(server.peer_info())
    client.shutdown()
    server.shutdown()


def shared_mapping(address: int) -> str:
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return line if fields[1][3] == "s" else ""
    return ""


def is_large_frame_mapping(line: str) -> bool:
    """A shared mapping of a large frame: the pooled area, or a frame's own memfd."""
    return "memfd:am-pool" in line or "memfd:am-large" in line


def test_peer_info_and_options():
    with am.Manager("tcp://127.0.0.1:0", wait_policy="spin", transport_policy="auto",
                    max_concurrent_handlers=4, default_timeout=5.0) as m:
        info = m.peer_info()
        assert info["instance_id"] == m.instance_id
        assert info["tcp_endpoint"].startswith("tcp://127.0.0.1:")
        assert info["shm_endpoint"].startswith("shm://")
    with pytest.raises(ValueError, match="wait_policy"):
        am.Manager("tcp://127.0.0.1:0", wait_policy="sometimes")
    with pytest.raises(am.ConfigError):
        am.Manager("bogus://x")


def test_codecs_and_handler_kinds(pair):
    server, client, peer = pair

    async def doubled(doc):
        await asyncio.sleep(0)
        return [x * 2 for x in doc]

    server.register("sum", lambda doc: sum(doc), codec="json")
    server.register("doubled", doubled, codec="json")
    server.register("pack", lambda doc: {"got": doc}, codec="msgpack")
    server.register("nothing", lambda view: None)
    user = [n for n in server.list_handlers() if not n.startswith("_")]
    assert sorted(user) == ["doubled", "nothing", "pack", "sum"]
    assert client.request(peer, "sum", [1, 2, 3], codec="json") == 6
    assert client.request(peer, "doubled", [1, 2], codec="json") == [2, 4]
    assert client.request(peer, "pack", b"\x00\xff", codec="msgpack") == {"got": b"\x00\xff"}
    assert bytes(client.request(peer, "nothing", b"x")) == b""
    assert server.deregister("sum") and not server.deregister("sum")
    with pytest.raises(am.NoSuchHandler):
        client.request(peer, "sum", [1], codec="json")
    with pytest.raises(ValueError, match="codec"):
        server.register("x", len, codec="pickle")


def test_exceptions_are_typed(pair):
    server, client, peer = pair

    def boom(_view):
        raise KeyError("rank 7")

    server.register("boom", boom)
    with pytest.raises(am.HandlerError) as raised:
        client.request(peer, "boom", b"")
    assert str(raised.value) == "KeyError: 'rank 7'"
    assert isinstance(raised.value, am.ActiveMessageError)
    with pytest.raises(am.UnknownPeer):
        client.request(am.Peer("00000000-0000-4000-8000-000000000000"), "boom")
    gate = threading.Event()
    server.register("slow", lambda _v: gate.wait(30))
    with pytest.raises(am.Timeout):
        client.request(peer, "slow", b"", timeout=0.05)
    gate.set()


def test_a_handler_calls_another_peer(pair):
    server, client, peer = pair
    with am.Manager("tcp://127.0.0.1:0") as third:
        third.register("inner", lambda v: b"inner:" + bytes(v))
        inner = server.connect(third.peer_info())
        server.register("outer", lambda v: server.request(inner, "inner", v))
        assert bytes(client.request(peer, "outer", b"x")) == b"inner:x"


def test_async_handler_runs_on_the_running_loop(pair):
    server, client, peer = pair

    async def main():
        loop = asyncio.get_running_loop()
        seen = []

        async def where(_view):
            seen.append(asyncio.get_running_loop())
            return b"ok"

        server.register("where", where)  # captures this loop
        assert bytes(await client.request_async(peer, "where")) == b"ok"
        assert seen == [loop]

    asyncio.run(main())


def test_64_mib_handler_and_response_are_read_in_place(pair):
    server, client, peer = pair
    seen = {}

    def inspect(view):
        array = np.frombuffer(view, dtype=np.uint8)
        seen["mapping"] = shared_mapping(array.__array_interface__["data"][0])
        seen["sum"] = int(array.sum(dtype=np.uint64))
        return view  # answered with the same 64 MiB

    server.register("inspect", inspect)
    data = np.arange(64 << 20, dtype=np.uint32).astype(np.uint8)
    reply = client.request(peer, "inspect", data)
    assert is_large_frame_mapping(seen["mapping"])
    assert seen["sum"] == int(data.sum(dtype=np.uint64))
    # The caller's memoryview also points into the shared frame mapping.
    out = np.frombuffer(reply, dtype=np.uint8)
    assert is_large_frame_mapping(shared_mapping(out.__array_interface__["data"][0]))
    assert reply.readonly and np.array_equal(out, data)


def test_a_blocked_handler_holds_up_no_other_caller(pair):
    server, client, peer = pair
    other = am.Manager("tcp://127.0.0.1:0")
    other_peer = other.connect(server.peer_info())
    release = threading.Event()
    server.register("block", lambda _v: release.wait(30) and b"released")
    server.register("echo", lambda v: v)

    async def main():
        blocked = asyncio.ensure_future(client.request_async(peer, "block"))
        # Another link, and the same link, are answered while `block` waits.
        assert bytes(other.request(other_peer, "echo", b"other")) == b"other"
        assert bytes(await client.request_async(peer, "echo", b"same")) == b"same"
        assert not blocked.done()
        release.set()
        assert bytes(await blocked) == b"released"

    try:
        asyncio.run(main())
    finally:
        other.shutdown()
