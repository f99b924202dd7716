"""``Server``: the lifecycle of one ``lmcache server`` process.

``startup()`` validates nothing (the configuration is already validated), builds the storage
engine, binds the ZMQ socket and the HTTP frontend, and starts the background threads;
``serve()`` blocks until ``request_stop()`` (the signal handler calls it); ``shutdown()``
stops accepting requests, finishes the ones in flight, unmaps every worker's memory, drains
and closes the L2 tier (before L1 goes) and stops the threads. Tests run a ``Server``
in-process on port 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from lmcache import __version__
from lmcache._native import transfer
from lmcache.config.server import ServerConfig
from lmcache.server.core import ServerCore
from lmcache.server.dispatcher import Dispatcher
from lmcache.server.facade_impl import CoreFacade

log = logging.getLogger("lmcache.server")


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.core = ServerCore(config)
        mp = config.mp
        self.dispatcher = Dispatcher(
            mp.host,
            mp.port,
            self.core.handlers(),
            affinity_workers=mp.gpu_workers,
            normal_workers=mp.cpu_workers,
            inline_ops=self.core.INLINE_OPS,
        )
        self.facade = CoreFacade(self.core, self.dispatcher, self.reaper_alive)
        self._http: Any = None
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self.zmq_port = 0
        self.http_port = 0

    # ---- lifecycle ----

    def startup(self, *, with_http: bool = True) -> None:
        removed = transfer.unlink_stale_segments()
        if removed:
            log.info("removed %d stale shared-memory segments of dead processes", len(removed))
        self.core.engine.start()
        l2 = self.core.engine.l2
        if l2 is not None:  # built with the engine; its controllers run from here on
            sm = self.config.storage_manager.l2
            log.info(
                "L2: %s (cascade order); store policy %s, prefetch policy %s, %d prefetches in flight",
                ", ".join(a["type"] for a in l2.adapters_status()),
                sm.l2_store_policy,
                sm.l2_prefetch_policy,
                sm.l2_prefetch_max_in_flight,
            )
        self.dispatcher.start()
        self.zmq_port = self.dispatcher.bound_port
        if with_http:
            from lmcache.http import create_app, serve_http

            app = create_app(self.facade, auth_token=self.config.http.http_auth_token, version=__version__)
            self._http = serve_http(app, self.config.http.http_host, self.config.http.http_port)
            self.http_port = self._http.port
        self._reaper = threading.Thread(target=self._reap_loop, name="lmcache-reaper", daemon=True)
        self._reaper.start()

    def serve(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def request_stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.stop()
            self._http = None
        self.dispatcher.stop()
        if self._reaper is not None:
            self._reaper.join(timeout=5)
        self.core.close()
        # Flushes the L2 write-behind (bounded), closes the L2 tier while L1 is still alive,
        # stops the threads and removes the L1 pool's name from /dev/shm.
        self.core.engine.close()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    # ---- background: worker liveness and session expiry ----

    def reaper_alive(self) -> bool:
        return self._reaper is not None and self._reaper.is_alive()

    def _reap_loop(self) -> None:
        mp = self.config.mp
        interval = 1.0
        last_sessions = time.monotonic()
        while not self._stop.wait(interval):
            try:
                now = time.monotonic()
                if mp.worker_reap_timeout_seconds > 0:
                    for reg in self.core.registrations():
                        silent = now - (reg.last_ping if reg.last_ping is not None else reg.registered_at)
                        budget = (
                            mp.worker_reap_timeout_seconds
                            if reg.last_ping is not None
                            else mp.worker_registration_grace_seconds
                        )
                        if silent > budget:
                            log.warning(
                                "reaping instance %d: silent for %.0f s (budget %.0f s)",
                                reg.instance_id,
                                silent,
                                budget,
                            )
                            self.core.reap(reg.instance_id)
                    self.core.engine_driven.reap_stale(
                        now, mp.worker_reap_timeout_seconds, mp.worker_registration_grace_seconds
                    )
                if now - last_sessions >= min(60.0, mp.session_ttl_seconds / 2):
                    self.core.sessions.expire(now)
                    last_sessions = now
            except Exception:  # never let the reaper die silently
                log.exception("reaper tick failed")
