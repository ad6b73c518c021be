"""A Python cohort leader with two Python worker processes
(``cohort_worker.py``), over shared memory and TCP."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import active_message as am

WORKER = Path(__file__).resolve().parent / "cohort_worker.py"


@pytest.fixture
def workers():
    started = []

    def start(address: str, rank: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(WORKER), address, str(rank)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("via", ["shm_endpoint", "tcp_endpoint"])
def test_leader_gathers_by_rank_from_python_workers(workers, via):
    with am.Manager("tcp://127.0.0.1:0") as manager:
        cohort = am.Cohort(manager, 2, timeout=20.0, join_timeout=20.0)
        address = manager.peer_info()[via]
        # Started in reverse rank order: results must still come in rank order.
        procs = [workers(address, 1), workers(address, 0)]
        cohort.wait_for_workers()
        assert all(cohort.workers())
        for proc in procs:
            joined = json.loads(proc.stdout.readline())
            assert joined["size"] == 2

        got = cohort.gather("whoami", per_rank=["a", "b"], codec="json")
        assert got == [{"rank": 0, "input": "a"}, {"rank": 1, "input": "b"}]
        assert cohort.gather("whoami", 7, codec="json") == [
            {"rank": 0, "input": 7}, {"rank": 1, "input": 7}]

        # Rank 1's handler fails: the error shows at rank 1 only.
        ok, failed = cohort.gather("fail_at", 1, codec="json")
        assert ok == 0
        assert isinstance(failed, am.HandlerError)
        assert str(failed) == "ValueError: rank 1 refuses"
        assert failed.rank == 1

        assert cohort.broadcast("fail_at", 5, codec="json", confirmed=True) == [None, None]
        confirmed = cohort.broadcast("fail_at", 0, codec="json", confirmed=True)
        assert isinstance(confirmed[0], am.HandlerError) and confirmed[1] is None
        missing = cohort.gather("absent", b"")
        assert all(isinstance(e, am.NoSuchHandler) for e in missing)

        assert sorted(cohort.shutdown(10.0)) == [0, 1]
        for proc in procs:
            assert json.loads(proc.stdout.readline()) == {"ended": "stop_requested"}
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0


def test_join_refused_and_config_checked():
    with am.Manager("tcp://127.0.0.1:0") as leader, am.Manager("tcp://127.0.0.1:0") as worker:
        with pytest.raises(ValueError, match="failure_policy"):
            am.Cohort(leader, 2, failure_policy="sometimes")
        cohort = am.Cohort(leader, 1)
        address = leader.peer_info()["tcp_endpoint"]
        with pytest.raises(am.JoinRefused):
            am.join_cohort(worker, address, 3)
        membership = am.join_cohort(worker, address, 0)
        assert (membership.rank, membership.size, membership.status) == (0, 1, None)
        cohort.wait_for_workers()
        membership.leave()
        assert membership.status == "left"
        vacant = cohort.gather("anything")
        assert isinstance(vacant[0], am.RankVacant) and vacant[0].rank == 0
