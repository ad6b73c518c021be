"""Active messages between processes, from Python.

A :class:`Manager` is one participant: register handlers on it, connect to
peers, and call their handlers fire-and-forget, confirmed, or
request/response, blocking or awaited with ``asyncio``. Peers on the same
host talk over shared-memory rings, others over ZeroMQ/TCP; a Rust peer and a
Python peer speak the same wire format.

Payloads are raw bytes (any object exporting a byte buffer: ``bytes``,
``bytearray``, ``memoryview``, a contiguous ``numpy`` array) or, with
``codec="json"`` / ``codec="msgpack"``, objects encoded for you. JSON payloads
are what Rust's ``Json<T>`` handlers and callers read and write.

Zero-copy reads. A raw handler receives, and a raw request returns, a
``memoryview`` over the received message. A large message over shared
memory arrives in its own sealed, read-only shared mapping and the view
points straight into it, so ``numpy.frombuffer(view, dtype)`` copies
nothing. The rule: the view is valid for as long as you hold it (holding it
keeps that mapping alive, so do not keep views of large messages longer
than you need them); it is read-only, and its bytes never change.

The GIL is released while waiting on a ring or the network, and handlers run
on a pool of worker threads, never on a transport's reader: a slow handler
holds up no other link.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, Callable, Optional, Union

from . import _native
from ._native import (
    ActiveMessageError,
    CodecError,
    ConfigError,
    Full,
    HandlerError,
    HandlerExists,
    InvalidHandlerName,
    NoSuchHandler,
    PayloadTooLarge,
    PeerLost,
    PeerUnresponsive,
    ProtocolError,
    Refused,
    ShuttingDown,
    Cancelled,
    Timeout,
    TransportError,
    UnknownPeer,
    CohortFailed,
    JoinRefused,
    MissingRanks,
    RankCancelled,
    RankLost,
    RankVacant,
)
from ._cohort import Cohort, Membership, join_cohort

__all__ = [
    "Manager",
    "Peer",
    "ActiveMessageError",
    "CodecError",
    "ConfigError",
    "Full",
    "HandlerError",
    "HandlerExists",
    "InvalidHandlerName",
    "NoSuchHandler",
    "PayloadTooLarge",
    "PeerLost",
    "PeerUnresponsive",
    "ProtocolError",
    "Refused",
    "ShuttingDown",
    "Cancelled",
    "Stream",
    "Timeout",
    "TransportError",
    "UnknownPeer",
    "Cohort",
    "Membership",
    "join_cohort",
    "CohortFailed",
    "JoinRefused",
    "MissingRanks",
    "RankCancelled",
    "RankLost",
    "RankVacant",
]

from ._codec import decode as _decode, encode as _encode, check as _check_codec


class Peer:
    """A connected peer: its instance id and, when known, its ``PeerInfo``."""

    __slots__ = ("instance_id", "info")

    def __init__(self, instance_id: str, info: Optional[dict] = None):
        self.instance_id = instance_id
        self.info = info

    def __repr__(self) -> str:
        return f"Peer({self.instance_id!r})"


PeerLike = Union[Peer, str]


def _target(peer: PeerLike) -> str:
    return peer.instance_id if isinstance(peer, Peer) else str(peer)


def _settle(fut: asyncio.Future, error: Optional[BaseException], value: Any, codec: str) -> None:
    if fut.done():  # cancelled by the caller meanwhile
        return
    if error is not None:
        fut.set_exception(error)
        return
    try:
        fut.set_result(None if value is None else _decode(value, codec))
    except Exception as exc:  # an undecodable response is the caller's error
        fut.set_exception(exc)


def _adapt(fn: Callable, codec: str, loop: Optional[asyncio.AbstractEventLoop]) -> Callable:
    """The synchronous ``payload -> bytes | None`` callable the runtime calls."""
    is_async = inspect.iscoroutinefunction(fn)

    def call(payload: "_native.Payload"):
        arg = _decode(payload, codec)
        if not is_async:
            out = fn(arg)
        elif loop is not None:
            out = asyncio.run_coroutine_threadsafe(fn(arg), loop).result()
        else:
            out = asyncio.run(fn(arg))
        return None if out is None else _encode(out, codec)

    return call


class Stream:
    """The items of a streamed call, as an iterator. Ends at the handler's
    normal end; raises the stream's error (:class:`HandlerError` after the
    items sent before it, :class:`PeerLost`, :class:`Timeout`,
    :class:`Cancelled` after :meth:`cancel`)."""

    def __init__(self, native: "_native.Stream", codec: str):
        self._native = native
        self._codec = codec

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Any:
        return _decode(next(self._native), self._codec)

    def cancel(self) -> None:
        """Stops the stream: the handler's cancellation fires."""
        self._native.cancel()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()


class Manager:
    """One participant of the runtime.

    Keyword arguments are the builder's options:

    - ``endpoint``: ``"tcp://host:port"`` (port 0 picks one; shared memory is
      bound beside it), ``"shm://"`` or ``"ipc:///dir"`` (shared memory only),
      ``"local://"`` (in-process and shared memory);
    - ``max_concurrent_handlers``: handlers running at once (default 1024);
      beyond it the manager stops reading and senders wait;
    - ``wait_policy``: ``"adaptive"`` (default; spins ``spin_us`` then parks),
      ``"spin"`` or ``"park"``;
    - ``transport_policy``: ``"auto"`` (shm for local peers, else TCP),
      ``"shm"`` or ``"tcp"``;
    - ``default_timeout`` (seconds, default 30), ``max_message_bytes``
      (default 64 MiB), ``shm_dir``, ``auth_secret`` (bytes; TCP
      authentication).

    Building blocks the calling thread (GIL released). Use it as a context
    manager to shut down on exit.
    """

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:0",
        *,
        max_concurrent_handlers: Optional[int] = None,
        wait_policy: Optional[str] = None,
        spin_us: Optional[float] = None,
        transport_policy: Optional[str] = None,
        default_timeout: Optional[float] = None,
        max_message_bytes: Optional[int] = None,
        shm_dir: Optional[str] = None,
        auth_secret: Optional[bytes] = None,
    ):
        options = dict(
            endpoint=endpoint,
            max_concurrent_handlers=max_concurrent_handlers,
            wait_policy=wait_policy,
            spin_us=spin_us,
            transport_policy=transport_policy,
            default_timeout=default_timeout,
            max_message_bytes=max_message_bytes,
            shm_dir=shm_dir,
            auth_secret=None if auth_secret is None else bytes(auth_secret),
        )
        self._native = _native.Manager(options)

    # -- identity -------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """This manager's instance id (a UUID string)."""
        return self._native.instance_id()

    def peer_info(self) -> dict:
        """What other peers need to connect here, as a dict (JSON-able)."""
        return json.loads(self._native.peer_info_json())

    def peer_info_json(self) -> str:
        """:meth:`peer_info` as a JSON string (what ``am`` and Rust parse)."""
        return self._native.peer_info_json()

    # -- handlers -------------------------------------------------------

    def register(
        self,
        name: str,
        fn: Callable,
        *,
        codec: str = "bytes",
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        """Registers ``fn`` under ``name``; callable as soon as this returns.

        ``fn(payload)`` receives a read-only ``memoryview`` (``codec="bytes"``)
        or the decoded object (``"json"``, ``"msgpack"``) and returns the
        response: bytes-like / an encodable object, or ``None`` for an empty
        one. An exception reaches the caller as ``HandlerError`` (Rust:
        ``Error::Handler("<Type>: <message>")``). ``async def`` handlers run on
        ``loop`` (default: the running loop, if called from one), else each
        call runs on its own ``asyncio.run``. Sync handlers run on a worker
        thread; do not block the loop a handler needs.
        """
        _check_codec(codec)
        if loop is None and inspect.iscoroutinefunction(fn):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._native.register(name, _adapt(fn, codec, loop))

    def handler(self, name: str, *, codec: str = "bytes") -> Callable[[Callable], Callable]:
        """Decorator form of :meth:`register`."""

        def wrap(fn: Callable) -> Callable:
            self.register(name, fn, codec=codec)
            return fn

        return wrap

    def deregister(self, name: str) -> bool:
        """Removes a handler; returns whether it was registered."""
        return self._native.deregister(name)

    def list_handlers(self) -> list:
        """Names of the handlers registered here (the runtime's own start with `_`)."""
        return self._native.list_handlers()

    # -- peers ----------------------------------------------------------

    def connect(self, peer: Union[dict, str]) -> Peer:
        """Connects to a peer given its ``PeerInfo`` (dict or JSON string) or
        an address (``"tcp://host:port"``, or an shm rendezvous path).
        Shared memory is used when the peer is on this host."""
        if isinstance(peer, dict):
            text = json.dumps(peer)
            return Peer(self._native.connect_peer(text), peer)
        if peer.lstrip().startswith("{"):
            return Peer(self._native.connect_peer(peer), json.loads(peer))
        info = json.loads(self._native.connect_address(peer))
        return Peer(info["instance_id"], info)

    # -- blocking calls -------------------------------------------------

    def fire(self, peer: PeerLike, name: str, data: Any = b"", *, codec: str = "bytes",
             timeout: Optional[float] = None) -> None:
        """Fire-and-forget: returns once the link took the message."""
        self._native.call("fire", _target(peer), name, _encode(data, codec), timeout)

    def send(self, peer: PeerLike, name: str, data: Any = b"", *, codec: str = "bytes",
             timeout: Optional[float] = None) -> None:
        """Confirmed: returns once the peer's handler ran and accepted it."""
        self._native.call("confirm", _target(peer), name, _encode(data, codec), timeout)

    def request(self, peer: PeerLike, name: str, data: Any = b"", *, codec: str = "bytes",
                timeout: Optional[float] = None) -> Any:
        """Request/response: the handler's answer, as a read-only
        ``memoryview`` (``codec="bytes"``, zero-copy) or decoded."""
        out = self._native.call("request", _target(peer), name, _encode(data, codec), timeout)
        return _decode(out, codec)

    def stream(self, peer: PeerLike, name: str, data: Any = b"", *, codec: str = "bytes",
               window: int = 64, timeout: Optional[float] = None) -> "Stream":
        """A streamed call: iterate the returned :class:`Stream` for the
        handler's items (decoded with ``codec``; ``"bytes"``: zero-copy
        read-only ``memoryview`` objects). At most ``window`` items wait unread; ``timeout``
        bounds the wait for each item. ``cancel()`` (or dropping the stream)
        stops the handler."""
        native = self._native.stream(_target(peer), name, _encode(data, codec), window, timeout)
        return Stream(native, codec)

    # -- asyncio --------------------------------------------------------

    def _submit(self, mode: str, peer: PeerLike, name: str, data: Any, codec: str,
                timeout: Optional[float]) -> "asyncio.Future":
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        out_codec = codec if mode == "request" else "bytes"

        def done(error, value):
            loop.call_soon_threadsafe(_settle, fut, error, value, out_codec)

        self._native.submit(mode, _target(peer), name, _encode(data, codec), timeout, done)
        return fut

    async def fire_async(self, peer: PeerLike, name: str, data: Any = b"", *,
                         codec: str = "bytes", timeout: Optional[float] = None) -> None:
        """:meth:`fire`, awaited."""
        await self._submit("fire", peer, name, data, codec, timeout)

    async def send_async(self, peer: PeerLike, name: str, data: Any = b"", *,
                         codec: str = "bytes", timeout: Optional[float] = None) -> None:
        """:meth:`send`, awaited."""
        await self._submit("confirm", peer, name, data, codec, timeout)

    async def request_async(self, peer: PeerLike, name: str, data: Any = b"", *,
                            codec: str = "bytes", timeout: Optional[float] = None) -> Any:
        """:meth:`request`, awaited."""
        return await self._submit("request", peer, name, data, codec, timeout)

    # -- lifecycle ------------------------------------------------------

    def wait_stopped(self, timeout: Optional[float] = None) -> bool:
        """Blocks (GIL released, Ctrl-C honoured) until the manager stops:
        :meth:`shutdown`, or a trusted peer's shutdown request. Returns
        whether it stopped within ``timeout`` seconds (``None``: no limit)."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while True:
            # Short slices so that signal handlers (Ctrl-C) run in between.
            left = 0.2 if end is None else min(0.2, max(0.0, end - time.monotonic()))
            if self._native.wait_stopped(left):
                return True
            if end is not None and time.monotonic() >= end:
                return False

    def shutdown(self) -> None:
        """Stops admitting, drains running handlers, tells peers, closes links."""
        self._native.shutdown()

    def __enter__(self) -> "Manager":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
