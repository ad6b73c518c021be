"""A Python leader calling a Rust worker (`am serve`), blocking and awaited.

    target/debug/am serve > /tmp/am-worker.json &
    .venv/bin/python python/examples/leader.py "$(head -1 /tmp/am-worker.json)"

The argument is the PeerInfo JSON line `am serve` prints, or an address
(`tcp://host:port`). On the same host the link is shared memory.
"""

import asyncio
import sys

import numpy as np

import active_message as am


def main() -> None:
    with am.Manager("tcp://127.0.0.1:0", max_message_bytes=128 << 20) as leader:
        worker = leader.connect(sys.argv[1])
        # Request/response with raw bytes; the answer is a read-only memoryview.
        tensor = np.arange(1 << 20, dtype=np.float32)
        echoed = np.frombuffer(leader.request(worker, "echo_bytes", tensor), dtype=np.float32)
        print("echo_bytes:", echoed.shape, bool(np.array_equal(echoed, tensor)))
        # JSON documents (what Rust's Json<T> handlers read).
        print("echo_json:", leader.request(worker, "echo_json", {"rank": 0}, codec="json"))
        # Confirmed delivery, then fire-and-forget.
        leader.send(worker, "note", b"confirmed")
        leader.fire(worker, "note", b"fired")
        # A handler's error is a typed exception.
        try:
            leader.request(worker, "fail_bytes", b"")
        except am.HandlerError as err:
            print("fail_bytes raised HandlerError:", err)

        async def concurrently():
            calls = [leader.request_async(worker, "echo_bytes", bytes([i])) for i in range(4)]
            return [bytes(r) for r in await asyncio.gather(*calls)]

        print("awaited:", asyncio.run(concurrently()))


if __name__ == "__main__":
    main()
