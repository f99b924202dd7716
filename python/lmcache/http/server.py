"""Running the admin API next to the request server: :func:`serve_http` serves an ASGI app
with uvicorn in a background thread and returns a handle to stop it.

The listening socket is bound in the caller's thread before the thread starts, so a port that
is taken fails right there (StorageIOError naming the address), and ``port=0`` gives the port
the OS picked in :attr:`HttpServerHandle.port` at once. uvicorn does not install signal
handlers outside the main thread, so the owning process keeps its own; uvicorn's logging
configuration is not applied (the process's logging stays as it is).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from lmcache.errors import LMCacheTimeoutError, StorageIOError, UnavailableError

__all__ = ["HttpServerHandle", "serve_http"]


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StorageIOError(f"HTTP server: cannot resolve host {host!r}: {exc.strerror}") from exc
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(2048)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    reason = (last.strerror or str(last)) if last is not None else "no usable address"
    raise StorageIOError(f"HTTP server: cannot listen on {host}:{port}: {reason}")


class HttpServerHandle:
    """A running HTTP server. ``stop()`` (or leaving a ``with`` block) shuts it down gracefully:
    no new connections, in-flight requests finish within the grace period, then the thread ends."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        addr = sock.getsockname()
        self.host: str = str(addr[0])
        self.port: int = int(addr[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound address (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; waits up to ``timeout`` seconds, then closes remaining connections."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> HttpServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_http(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    access_log: bool = False,
    graceful_timeout_s: int = 5,
    startup_timeout_s: float = 10.0,
) -> HttpServerHandle:
    """Serve ``app`` on ``host:port`` (0: any free port) in a daemon thread; return once it
    accepts connections.

    Raises StorageIOError when the address cannot be bound, UnavailableError when the server
    stops during startup, LMCacheTimeoutError when it is not up within ``startup_timeout_s``.
    """
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=access_log,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=graceful_timeout_s,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lmcache-http", daemon=True)
    handle = HttpServerHandle(server, thread, sock)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise UnavailableError(f"HTTP server on {handle.url} stopped during startup (see the log)")
        if time.monotonic() > deadline:
            handle.stop()
            raise LMCacheTimeoutError(
                f"HTTP server on {handle.url} did not start within {startup_timeout_s} s"
            )
        time.sleep(0.005)
    return handle
