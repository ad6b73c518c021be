"""Fixtures: peer processes (the Python example worker, the Rust `am serve`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "python" / "examples" / "worker.py"


class Process:
    """A child that printed its PeerInfo as its first stdout line."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError(f"{argv[0]} exited without a PeerInfo line")
        self.info = json.loads(line)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def am_binary() -> Path:
    """`$AM_BIN`, else the workspace's debug build of `am`."""
    path = Path(os.environ.get("AM_BIN", REPO / "target" / "debug" / "am"))
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} missing: CI must build it (cargo build --bin am)")
        pytest.skip(f"{path} missing (cargo build --bin am)")
    return path


@pytest.fixture
def spawn():
    """Starts peer processes (`"python"` worker or `"rust"` am serve); kills them after."""
    started = []

    def start(kind: str, endpoint: str = "tcp://127.0.0.1:0") -> Process:
        if kind == "python":
            argv = [sys.executable, str(WORKER), endpoint]
        else:
            argv = [str(am_binary()), "serve", "--endpoint", endpoint,
                    "--max-message-bytes", str(128 << 20)]
        process = Process(argv)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
