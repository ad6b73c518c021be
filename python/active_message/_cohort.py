"""Leader/worker cohorts: one leader and ``size`` ranked worker processes.

A leader builds a :class:`Cohort` on its :class:`~active_message.Manager`;
workers call :func:`join_cohort` with the leader's address and their rank.
Operations run on every rank at once and return a list indexed by rank:
each item is that rank's value, or an exception instance (with a ``rank``
attribute) such as ``HandlerError`` when its handler failed. A failed rank
never disappears from the results, and never spoils another rank's.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from . import _native
from ._codec import check as _check_codec, decode as _decode, encode as _encode


def _payloads(data: Any, per_rank: Optional[Sequence[Any]], codec: str) -> list:
    if per_rank is None:
        return [_encode(data, codec)]
    return [_encode(item, codec) for item in per_rank]


def _decoded(items: list, codec: str) -> list:
    out = []
    for rank, item in enumerate(items):
        if isinstance(item, BaseException) or item is None:
            out.append(item)
            continue
        try:
            out.append(_decode(item, codec))
        except Exception as exc:  # an undecodable answer is that rank's error
            error = _native.CodecError(f"rank {rank}: {exc}")
            error.rank = rank
            out.append(error)
    return out


class Cohort:
    """The leader's side of a cohort of ``size`` ranks on ``manager``.

    - ``ranks``: ``"explicit"`` (each worker names its rank) or
      ``"join_order"`` (workers naming none get the lowest free rank);
    - ``failure_policy``: ``"best_effort"`` (a lost rank reports
      ``PeerLost``), ``"fail_fast"`` (the operation raises ``RankLost``) or
      ``"terminate_all"`` (every worker is told to stop, then ``RankLost``);
    - ``timeout``: each rank's budget per operation, seconds;
    - ``join_timeout``: how long :meth:`wait_for_workers` waits, seconds.

    Every wait releases the GIL.
    """

    def __init__(self, manager: Any, size: int, *, ranks: str = "explicit",
                 failure_policy: str = "best_effort", timeout: float = 30.0,
                 join_timeout: float = 60.0):
        self._native = _native.Cohort(manager._native, size, ranks, failure_policy,
                                      timeout, join_timeout)

    @property
    def size(self) -> int:
        """How many ranks the cohort has."""
        return self._native.size()

    def workers(self) -> List[Optional[str]]:
        """The instance id holding each rank, ``None`` where vacant."""
        return self._native.workers()

    def wait_for_workers(self) -> None:
        """Blocks until every rank is held; raises ``MissingRanks`` after
        the join timeout."""
        self._native.wait_for_workers()

    def broadcast(self, name: str, data: Any = b"", *, per_rank: Optional[Sequence[Any]] = None,
                  codec: str = "bytes", confirmed: bool = False) -> list:
        """Sends ``data`` (or ``per_rank[rank]``) to handler ``name`` on every
        rank, fire-and-forget or ``confirmed`` (each handler ran it). By rank:
        ``None`` where it went through, else the exception instance."""
        _check_codec(codec)
        return self._native.broadcast(name, _payloads(data, per_rank, codec), confirmed)

    def gather(self, name: str, data: Any = b"", *, per_rank: Optional[Sequence[Any]] = None,
               codec: str = "bytes") -> list:
        """Calls handler ``name`` with ``data`` (or ``per_rank[rank]``) on
        every rank; by rank, each answer decoded with ``codec`` or the
        exception instance (``HandlerError``, ``PeerLost``, ``Timeout``...)."""
        _check_codec(codec)
        items = self._native.gather(name, _payloads(data, per_rank, codec))
        return _decoded(items, codec)

    def shutdown(self, deadline: float = 5.0) -> List[int]:
        """Tells every worker to stop; the ranks that acknowledged within
        ``deadline`` seconds."""
        return self._native.shutdown(deadline)


class Membership:
    """A worker's place in a cohort (from :func:`join_cohort`)."""

    def __init__(self, native: "_native.Membership"):
        self._native = native

    @property
    def rank(self) -> int:
        """This worker's rank."""
        return self._native.rank

    @property
    def size(self) -> int:
        """How many ranks the cohort has."""
        return self._native.size

    @property
    def leader(self) -> str:
        """The leader's instance id."""
        return self._native.leader

    @property
    def status(self) -> Optional[str]:
        """``None`` while a member; else ``"leader_lost"``,
        ``"stop_requested"`` or ``"left"``."""
        return self._native.status()

    def wait_ended(self, timeout: Optional[float] = None) -> Optional[str]:
        """Blocks (GIL released, Ctrl-C honoured) until the membership ends;
        its :attr:`status`, or ``None`` if ``timeout`` seconds passed first."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.2 if end is None else min(0.2, max(0.0, end - time.monotonic()))
            how = self._native.wait_ended(left)
            if how is not None or (end is not None and time.monotonic() >= end):
                return how

    def leave(self) -> None:
        """Leaves the cohort, telling the leader."""
        self._native.leave()


def join_cohort(manager: Any, address: str, rank: Optional[int] = None) -> Membership:
    """Joins the cohort led at ``address`` (the leader's ``tcp_endpoint`` or
    ``shm_endpoint``) as ``rank`` (``None``: the next rank in join order).
    Raises ``JoinRefused`` when the rank is taken or out of range."""
    return Membership(_native.Membership.join(manager._native, address, rank))
