"""The ZMQ request loop: one ROUTER socket, one socket thread, two worker pools.

Threading (compat reference §2.8, with its ordering defect fixed):

* the **socket thread** owns the ROUTER socket (a ZMQ socket is single-threaded). It decodes
  every request, runs SYNC handlers inline, and hands the others to a pool; replies computed
  by pool threads come back through a queue and an eventfd that the socket thread polls;
* the **affinity pool** (``--max-gpu-workers`` threads) runs data ops; a client (ZMQ
  identity) is always served by the same thread, so one client's stores and retrieves run in
  arrival order;
* the **normal pool** (``--max-cpu-workers`` threads) runs everything else;
* **inline ops** (``inline_ops``, the lookup family) are normal-pool ops that the socket thread
  first tries to answer itself: a lookup that L1 answers costs microseconds, and the two thread
  hand-offs of a pool round trip (a queue wake-up there, an eventfd wake-up back) cost more than
  the work. Such a handler runs with ``ctx.inline`` set and must not block: where it would (a
  lock held by a data op, a wait), it raises :class:`WouldBlock` before changing anything, and
  the request goes to its pool as usual.

Every request gets an answer where the protocol allows one: decoding errors, unknown ops,
ops this server does not implement and handler failures are answered through
:func:`lmcache.protocol.framing.failure_reply` (an error frame for peers that opted in with
``hello``, the op's failure value or 0.5.6's silence otherwise), logged once with the reason,
and counted per reason in ``rejected``.

Handlers are plain callables ``handler(ctx, *args) -> result``; the native work inside them
releases the GIL, so pool threads really run in parallel with the socket thread.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from lmcache import errors
from lmcache.protocol import framing
from lmcache.protocol.ops import HandlerKind, OpSpec

log = logging.getLogger("lmcache.server")

Handler = Callable[..., Any]


@dataclass
class CallContext:
    """Who sent a request, and what that peer opted in to; ``inline`` while the socket thread
    runs the handler (which must then raise :class:`WouldBlock` instead of blocking)."""

    identity: bytes
    error_frames: bool
    dispatcher: Dispatcher
    inline: bool = False


class WouldBlock(Exception):
    """Raised by a handler running inline (``ctx.inline``) before it does anything that could
    block; the dispatcher then runs the request on its pool instead."""


@dataclass
class _Job:
    identity: bytes
    request: framing.Request
    handler: Handler
    ctx: CallContext


@dataclass
class DispatcherStats:
    requests: int = 0
    replies: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    peers_gone: int = 0
    inline: int = 0  # non-SYNC requests answered on the socket thread
    deferred: int = 0  # inline attempts that went to their pool (WouldBlock)


class _Pool:
    """``n`` worker threads; ``lanes=True`` gives each thread its own queue (affinity)."""

    def __init__(self, name: str, n: int, lanes: bool, run: Callable[[_Job], None]) -> None:
        self._queues: list[queue.SimpleQueue[_Job | None]] = [
            queue.SimpleQueue() for _ in range(n if lanes else 1)
        ]
        self._run = run
        self._threads = [
            threading.Thread(
                target=self._loop, args=(self._queues[i if lanes else 0],), name=f"{name}-{i}", daemon=True
            )
            for i in range(n)
        ]
        self.in_flight = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, job: _Job, lane_key: bytes = b"") -> None:
        with self._lock:
            self.in_flight += 1
        q = (
            self._queues[zlib.crc32(lane_key) % len(self._queues)]
            if len(self._queues) > 1
            else self._queues[0]
        )
        q.put(job)

    def _loop(self, q: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = q.get()
            if job is None:
                return
            try:
                self._run(job)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def stop(self) -> None:
        """Finish every queued job, then end the threads."""
        for q in self._queues:
            for _ in range(len(self._threads) if len(self._queues) == 1 else 1):
                q.put(None)
        for t in self._threads:
            t.join()

    @property
    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)


class Dispatcher:
    """Serves one ROUTER socket. ``start()`` binds and returns; ``stop()`` drains and closes."""

    def __init__(
        self,
        host: str,
        port: int,
        handlers: Mapping[str, Handler],
        *,
        affinity_workers: int = 1,
        normal_workers: int = 1,
        inline_ops: frozenset[str] = frozenset(),
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self._endpoint_host = host
        self._port = port
        self._handlers = dict(handlers)
        self._inline_ops = inline_ops
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._replies: collections.deque[tuple[bytes, list[bytes]]] = collections.deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opted_in: dict[bytes, frozenset[str]] = {}
        self.stats = DispatcherStats()
        self._affinity = _Pool("lmcache-affinity", affinity_workers, True, self._run_job)
        self._normal = _Pool("lmcache-normal", normal_workers, False, self._run_job)
        self.bound_port = 0

    # ---- lifecycle ----

    def start(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.LINGER, 0)
        host = self._endpoint_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
            sock.setsockopt(zmq.IPV6, 1)
        if self._port == 0:
            self.bound_port = sock.bind_to_random_port(f"tcp://{host}")
        else:
            sock.bind(f"tcp://{host}:{self._port}")
            self.bound_port = self._port
        self._sock = sock
        self._affinity.start()
        self._normal.start()
        self._thread = threading.Thread(target=self._loop, name="lmcache-zmq", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading requests, finish the in-flight ones, send their replies, close."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake()
        self._thread.join()
        self._thread = None
        self._affinity.stop()
        self._normal.stop()
        self._flush_replies()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        os.close(self._wake_fd)

    @property
    def healthy(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._affinity.alive
            and self._normal.alive
        )

    def health_reasons(self) -> dict[str, str]:
        reasons: dict[str, str] = {}
        if self._thread is None or not self._thread.is_alive():
            reasons["request_loop"] = "the ZMQ socket thread is not running"
        if not self._affinity.alive:
            reasons["affinity_pool"] = "a data-op worker thread died"
        if not self._normal.alive:
            reasons["normal_pool"] = "a worker thread died"
        return reasons

    def in_flight(self) -> int:
        return self._affinity.in_flight + self._normal.in_flight

    # ---- peers ----

    def set_capabilities(self, identity: bytes, enabled: list[str]) -> None:
        self._opted_in[identity] = frozenset(enabled)

    def _error_frames(self, identity: bytes) -> bool:
        return "error_frames" in self._opted_in.get(identity, ())

    # ---- socket thread ----

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.eventfd_write(self._wake_fd, 1)

    def _loop(self) -> None:
        assert self._sock is not None
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_fd, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                events = dict(poller.poll(1000))
            except zmq.ZMQError as e:  # pragma: no cover - context terminated
                log.error("ZMQ poll failed: %s", e)
                return
            if self._wake_fd in events:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            self._flush_replies()
            if self._sock in events:
                for _ in range(256):  # bounded batch, then look at replies again
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_message(frames)
                    self._flush_replies()

    def _on_message(self, frames: list[bytes]) -> None:
        self.stats.requests += 1
        if len(frames) < 2:
            self._reject("malformed", "message without identity or payload", None, None)
            return
        identity = frames[0]
        decoded = framing.decode_request(frames[1:])
        if isinstance(decoded, framing.RequestError):
            self._reject(
                decoded.code.value,
                decoded.message,
                identity,
                decoded.reply(error_frames=self._error_frames(identity)),
            )
            return
        if isinstance(decoded, framing.StreamControl):
            handler = self._handlers.get("__stream_control__")
            if handler is not None:
                handler(CallContext(identity, self._error_frames(identity), self), decoded)
            return
        op = decoded.op
        ctx = CallContext(identity, self._error_frames(identity), self)
        handler = self._handlers.get(op.name)
        if handler is None:
            self._fail(
                identity, decoded, ctx, "unsupported", f"operation {op.name} is not supported by this server"
            )
            return
        job = _Job(identity, decoded, handler, ctx)
        if op.kind is HandlerKind.SYNC:
            self._run_job(job)
        elif op.name in self._inline_ops and self._try_inline(job):
            self.stats.inline += 1
        elif op.kind is HandlerKind.AFFINITY:
            self._affinity.submit(job, identity)
        else:
            self._normal.submit(job)

    def _try_inline(self, job: _Job) -> bool:
        """Run a non-SYNC job on the socket thread unless its handler says it would block."""
        job.ctx.inline = True
        try:
            self._run_job(job)
        except WouldBlock:
            job.ctx.inline = False
            self.stats.deferred += 1
            return False
        return True

    def _run_job(self, job: _Job) -> None:
        req = job.request
        try:
            result = job.handler(job.ctx, *req.args)
        except WouldBlock:
            if job.ctx.inline:
                raise
            # not inline: nothing to defer to, so it is a handler bug; answer it like one
            log.error("handler %s raised WouldBlock outside the socket thread", req.op.name)
            self._fail(job.identity, req, job.ctx, "internal", "handler raised WouldBlock on a pool")
            return
        except errors.LMCacheError as e:
            self._fail(job.identity, req, job.ctx, e.code, str(e))
            return
        except Exception as e:  # a handler bug: answer, log, keep serving
            log.exception("handler %s failed", req.op.name)
            self._fail(job.identity, req, job.ctx, "internal", f"{type(e).__name__}: {e}")
            return
        if result is _NO_REPLY:
            return
        try:
            reply = framing.encode_reply(req.uid_frame, req.op_frame, req.op, result)
        except Exception as e:
            log.exception("cannot encode the reply of %s", req.op.name)
            self._fail(job.identity, req, job.ctx, "internal", f"reply encoding failed: {e}")
            return
        self._send(job.identity, reply)

    def _fail(self, identity: bytes, req: framing.Request, ctx: CallContext, code: str, message: str) -> None:
        reply = framing.failure_reply(
            req.uid_frame, req.op_frame, req.op, code, message, error_frames=ctx.error_frames
        )
        self._reject(code, f"{req.op.name}: {message}", identity, reply)

    def _reject(self, reason: str, message: str, identity: bytes | None, reply: list[bytes] | None) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected request (%s): %s", reason, message)
        if identity is not None and reply is not None:
            self._send(identity, reply)

    def _send(self, identity: bytes, reply: list[bytes]) -> None:
        """Queue a reply; the socket thread sends it (from any thread)."""
        self._replies.append((identity, reply))
        if threading.current_thread() is not self._thread:
            self._wake()

    def _flush_replies(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while self._replies:
            identity, reply = self._replies.popleft()
            try:
                sock.send_multipart([identity, *reply], copy=False)
                self.stats.replies += 1
            except zmq.ZMQError as e:
                if e.errno == zmq.EHOSTUNREACH:
                    self.stats.peers_gone += 1
                    self._opted_in.pop(identity, None)
                else:
                    log.error("sending a reply failed: %s", e)


class _NoReply:
    """Returned by a handler that answers later (streams) or never (none required)."""


_NO_REPLY: Any = _NoReply()
NO_REPLY = _NO_REPLY


def describe_ops(handlers: Mapping[str, Handler], ops: Mapping[str, OpSpec]) -> dict[str, str]:
    """op name -> "served" / "unsupported" (for status pages and tests)."""
    return {name: ("served" if name in handlers else "unsupported") for name in ops}


__all__ = ["NO_REPLY", "CallContext", "Dispatcher", "DispatcherStats", "WouldBlock", "describe_ops"]
