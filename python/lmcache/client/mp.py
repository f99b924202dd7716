"""A synchronous client of the multiprocess protocol (ZMQ DEALER), for the CLI, benchmarks and
tests. One request at a time per client; thread-safe through a lock.

``MPClient.call(op, *args)`` encodes with :mod:`lmcache.protocol.framing`, waits for the reply
with a timeout, and returns the decoded value. A server error reply (after ``hello`` opted in
to error frames) raises the matching ``lmcache.errors`` class; a timeout raises
``LMCacheTimeoutError`` naming the op and the address.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import zmq

from lmcache import errors
from lmcache.protocol import framing
from lmcache.protocol.types import HelloRequest, HelloResponse


def normalize_url(url: str) -> str:
    """``host:port`` means ``tcp://host:port``; ZMQ schemes pass through."""
    if "://" not in url:
        return "tcp://" + url
    if url.startswith(("tcp://", "ipc://", "inproc://")):
        return url
    raise errors.InvalidArgumentError(
        f"unsupported RPC URL {url!r}: use tcp://host:port (gRPC is not available)"
    )


class MPClient:
    def __init__(self, url: str, *, timeout: float = 10.0, context: zmq.Context[Any] | None = None) -> None:
        self.url = normalize_url(url)
        self.timeout = timeout
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.CONNECT_TIMEOUT, 5000)
        self._sock.connect(self.url)
        self._uids = itertools.count(1)
        self._lock = threading.Lock()
        self.enabled: list[str] = []

    def close(self) -> None:
        self._sock.close(linger=0)

    def __enter__(self) -> MPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, frames: list[bytes]) -> None:
        """Send arbitrary frames (tests of malformed input)."""
        self._sock.send_multipart(frames)

    def recv_raw(self, timeout: float | None = None) -> list[bytes] | None:
        if not self._sock.poll(int(1000 * (self.timeout if timeout is None else timeout))):
            return None
        return self._sock.recv_multipart()

    def call(self, op: str, *args: Any, timeout: float | None = None, by_name: bool = False) -> Any:
        with self._lock:
            uid = next(self._uids)
            self._sock.send_multipart(framing.encode_request(uid, op, list(args), by_name=by_name))
            deadline = self.timeout if timeout is None else timeout
            while True:
                frames = self.recv_raw(deadline)
                if frames is None:
                    raise errors.LMCacheTimeoutError(f"{op}: no reply from {self.url} within {deadline:g} s")
                if framing.reply_uid(frames) != uid:
                    continue  # a late reply to an earlier, timed-out request
                reply = framing.decode_reply(frames, op)
                if isinstance(reply, framing.ErrorReply):
                    cls = errors.CODE_TO_ERROR.get(reply.code, errors.LMCacheError)
                    raise cls(f"{op}: {reply.message}")
                if isinstance(reply, framing.ReplyError):
                    raise errors.LMCacheError(f"{op}: bad reply: {reply.message}")
                return reply.value

    def hello(self, capabilities: list[str] | None = None, timeout: float = 2.0) -> HelloResponse:
        """Opt in to ``capabilities`` (default: error frames). A 0.5.6 server never answers
        ``hello``: that surfaces as LMCacheTimeoutError after ``timeout``."""
        caps = ["error_frames"] if capabilities is None else capabilities
        resp: HelloResponse = self.call(
            "hello", HelloRequest(capabilities=caps, client="lmcache"), timeout=timeout
        )
        self.enabled = list(resp.enabled)
        return resp
