"""A Python leader against Rust workers (`am serve`) and Python workers
(`examples/worker.py`), every pattern, over shared memory and TCP, blocking
and awaited."""

import asyncio

import pytest

import active_message as am

POLICIES = ["shm", "tcp"]


def leader(policy: str) -> am.Manager:
    return am.Manager("tcp://127.0.0.1:0", transport_policy=policy,
                      max_message_bytes=128 << 20)


@pytest.mark.parametrize("policy", POLICIES)
def test_python_leader_and_rust_worker(spawn, policy):
    rust = spawn("rust")
    with leader(policy) as m:
        peer = m.connect(rust.info)
        data = bytes(range(256)) * 40
        assert bytes(m.request(peer, "echo_bytes", data)) == data
        doc = {"rank": 1, "shape": [2, 3]}
        assert m.request(peer, "echo_json", doc, codec="json") == doc
        m.send(peer, "note", b"confirmed")
        m.fire(peer, "note", b"fired")
        with pytest.raises(am.HandlerError, match="^bytes handler failed$"):
            m.request(peer, "fail_bytes", b"")
        with pytest.raises(am.HandlerError, match="^not JSON"):
            m.request(peer, "echo_json", b"{oops")
        with pytest.raises(am.NoSuchHandler):
            m.request(peer, "absent", b"")

        async def awaited():
            got = await m.request_async(peer, "echo_bytes", b"awaited")
            await m.send_async(peer, "note", b"x")
            await m.fire_async(peer, "note", b"y")
            with pytest.raises(am.HandlerError):
                await m.send_async(peer, "fail_note", b"")
            return bytes(got)

        assert asyncio.run(awaited()) == b"awaited"


def test_python_leader_connects_by_address(spawn):
    rust = spawn("rust")
    with leader("tcp") as m:
        peer = m.connect(rust.info["tcp_endpoint"])
        assert peer.instance_id == rust.info["instance_id"]
        assert bytes(m.request(peer, "echo_bytes", b"by address")) == b"by address"


def wait_notes(m, peer, n):
    # Handlers run concurrently: a fired note is counted some time later.
    while m.request(peer, "notes", None, codec="json") < n:
        pass


@pytest.mark.parametrize("policy", POLICIES)
def test_python_leader_and_python_workers(spawn, policy):
    workers = [spawn("python"), spawn("python")]
    with leader(policy) as m:
        peers = [m.connect(w.info) for w in workers]
        for rank, peer in enumerate(peers):
            payload = bytes([rank]) * 1000
            assert bytes(m.request(peer, "echo", payload)) == payload
            assert bytes(m.request(peer, "echo_async", payload)) == payload
            assert m.request(peer, "echo_json", {"rank": rank}, codec="json") == {"rank": rank}
            m.send(peer, "note")
            assert m.request(peer, "notes", None, codec="json") == 1
            m.fire(peer, "note")
            wait_notes(m, peer, 2)
            with pytest.raises(am.HandlerError, match="^ValueError: refused: r$"):
                m.request(peer, "fail", b"r")

        async def gather():
            # One request in flight per worker at once, awaited together.
            calls = [m.request_async(p, "echo", bytes([i])) for i, p in enumerate(peers)]
            return [bytes(v) for v in await asyncio.gather(*calls)]

        assert asyncio.run(gather()) == [b"\x00", b"\x01"]


def test_killed_python_worker_is_peer_lost(spawn):
    worker = spawn("python")
    with leader("shm") as m:
        peer = m.connect(worker.info)

        async def scenario():
            hang = asyncio.ensure_future(m.request_async(peer, "hang", b"", timeout=600))
            while await m.request_async(peer, "hanging", None, codec="json") == 0:
                pass
            worker.kill()
            with pytest.raises(am.PeerLost):
                await hang

        asyncio.run(scenario())
