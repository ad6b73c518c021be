"""A Python worker: serves handlers for a leader (Rust or Python).

    python python/examples/worker.py [ENDPOINT]

Prints its PeerInfo as one JSON line on stdout, then serves until a trusted
peer asks it to shut down (``am`` / ``_request_shutdown``) or Ctrl-C.

Handlers:
- ``echo``        bytes -> the same bytes
- ``echo_async``  the same, from an ``async def``
- ``echo_json``   JSON -> the same document (Rust: ``Json<T>``)
- ``note``        counts one note (for fire-and-forget and confirmed sends)
- ``notes``       JSON: the number of notes so far
- ``fail``        raises ``ValueError("refused: <input>")``
- ``hang``        blocks until the process ends (for peer-loss tests)
- ``hanging``     JSON: how many ``hang`` calls are blocked now
- ``inspect``     JSON: length, sum of the bytes, and whether the payload's
                  memory lies in a shared mapping (zero-copy check)
"""

import json
import sys
import threading

import active_message as am


def shared_mapping_of(address: int) -> str:
    """The /proc/self/maps line holding ``address`` if it is a shared mapping."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return line.strip() if fields[1][3] == "s" else ""
    return ""


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:0"
    # Room for 64 MiB payloads plus their envelope.
    manager = am.Manager(endpoint, max_message_bytes=128 << 20)
    lock = threading.Lock()
    counts = {"notes": 0, "hanging": 0}
    forever = threading.Event()

    def note(_data):
        with lock:
            counts["notes"] += 1

    def fail(data):
        raise ValueError(f"refused: {bytes(data).decode(errors='replace')}")

    def hang(_data):
        with lock:
            counts["hanging"] += 1
        forever.wait()

    async def echo_async(data):
        return bytes(data)

    def inspect(data):
        import numpy as np

        array = np.frombuffer(data, dtype=np.uint8)
        address = array.__array_interface__["data"][0]
        report = {
            "len": int(array.size),
            "sum": int(array.sum(dtype=np.uint64)),
            "mapping": shared_mapping_of(address),
        }
        return json.dumps(report).encode()

    manager.register("echo", lambda data: data)
    manager.register("echo_async", echo_async)
    manager.register("echo_json", lambda doc: doc, codec="json")
    manager.register("note", note)
    manager.register("notes", lambda _doc: counts["notes"], codec="json")
    manager.register("fail", fail)
    manager.register("hang", hang)
    manager.register("hanging", lambda _doc: counts["hanging"], codec="json")
    manager.register("inspect", inspect)
    print(manager.peer_info_json(), flush=True)
    manager.wait_stopped()


if __name__ == "__main__":
    main()
