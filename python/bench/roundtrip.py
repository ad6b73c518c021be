"""Round-trip latency from Python, in one run: this runtime (Python caller ->
Rust `am serve` handler over shared memory) next to pyzmq REQ/REP over ipc
(Python on both ends), 64-byte payloads, interleaved in rounds so both see
the same machine state. Prints medians and p99 per round and overall, with
the CPU model, the date and the load average.

    scripts/python-dev --release && cargo build --release --bin am
    .venv/bin/python python/bench/roundtrip.py [--rounds 5] [--calls 2000]

A measurement, not a test: it asserts nothing about the figures.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

import active_message as am

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = b"x" * 64

REP_SERVER = """
import sys, zmq
ctx = zmq.Context()
rep = ctx.socket(zmq.REP)
rep.bind(sys.argv[1])
print("ready", flush=True)
while True:
    rep.send(rep.recv())
"""


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def timed(n: int, call) -> list:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - t0)
    return out


def summary(ns: list) -> str:
    ns = sorted(ns)
    p99 = ns[min(len(ns) - 1, int(len(ns) * 0.99))]
    return f"median {statistics.median(ns) / 1e3:8.1f} us   p99 {p99 / 1e3:8.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--am", default=str(REPO / "target" / "release" / "am"))
    args = parser.parse_args()

    server = subprocess.Popen([args.am, "serve"], stdout=subprocess.PIPE, text=True)
    info = json.loads(server.stdout.readline())
    ipc_dir = tempfile.mkdtemp()
    address = f"ipc://{ipc_dir}/rep"
    rep = subprocess.Popen([sys.executable, "-c", REP_SERVER, address],
                           stdout=subprocess.PIPE, text=True)
    assert rep.stdout.readline().strip() == "ready"
    try:
        with am.Manager("shm://", transport_policy="shm") as m:
            peer = m.connect(info)
            req = zmq.Context.instance().socket(zmq.REQ)
            req.connect(address)

            def am_call():
                m.request(peer, "echo_bytes", PAYLOAD)

            def zmq_call():
                req.send(PAYLOAD)
                req.recv()

            timed(200, am_call)  # warm-up
            timed(200, zmq_call)
            totals = {"am shm (Python -> Rust)": [], "pyzmq REQ/REP ipc": []}
            print(f"# {cpu_model()}; {datetime.datetime.now().isoformat(timespec='seconds')}; "
                  f"loadavg {open('/proc/loadavg').read().split()[:3]}; "
                  f"{args.rounds} rounds x {args.calls} calls, 64 B")
            for r in range(args.rounds):
                for name, call in (("am shm (Python -> Rust)", am_call),
                                   ("pyzmq REQ/REP ipc", zmq_call)):
                    ns = timed(args.calls, call)
                    totals[name] += ns
                    print(f"round {r}  {name:26} {summary(ns)}")
            print("overall")
            for name, ns in totals.items():
                print(f"         {name:26} {summary(ns)}")
            ratio = statistics.median(totals["am shm (Python -> Rust)"]) / statistics.median(
                totals["pyzmq REQ/REP ipc"])
            print(f"median ratio am/pyzmq: {ratio:.2f}")
            print(f"# loadavg after {open('/proc/loadavg').read().split()[:3]}")
            req.close(linger=0)
    finally:
        server.kill()
        rep.kill()
        server.wait()
        rep.wait()
        os.rmdir(ipc_dir) if not os.listdir(ipc_dir) else None


if __name__ == "__main__":
    main()
