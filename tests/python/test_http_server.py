"""serve_http: uvicorn in a background thread, port 0, graceful stop."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from fake_facade import FakeFacade
from live_http import RawClient
from lmcache.errors import StorageIOError
from lmcache.http import create_app, serve_http


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_port_zero_binds_a_free_port_and_stop_closes_it() -> None:
    handle = serve_http(create_app(FakeFacade(), version="0"), "127.0.0.1", 0)
    try:
        assert handle.port > 0 and handle.host == "127.0.0.1"
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        assert handle.running
        assert RawClient(handle.port).get("/healthcheck").status_code == 200
        assert threading.current_thread() is threading.main_thread()
        assert any(t.name == "lmcache-http" for t in threading.enumerate())
    finally:
        handle.stop()
    assert not handle.running
    assert refused(handle.port)
    handle.stop()  # idempotent


def test_context_manager_and_two_servers_side_by_side() -> None:
    a, b = FakeFacade(), FakeFacade()
    b.healthy = False
    with (
        serve_http(create_app(a, version="0"), "127.0.0.1", 0) as ha,
        serve_http(create_app(b, version="0"), "127.0.0.1", 0) as hb,
    ):
        assert ha.port != hb.port
        assert RawClient(ha.port).get("/healthcheck").status_code == 200
        assert RawClient(hb.port).get("/healthcheck").status_code == 503
    assert refused(ha.port) and refused(hb.port)


def test_port_in_use_fails_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(StorageIOError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_http(create_app(FakeFacade(), version="0"), "127.0.0.1", port)


class SlowFacade(FakeFacade):
    def status(self) -> dict[str, Any]:
        time.sleep(0.5)
        return super().status()


def test_stop_lets_in_flight_requests_finish() -> None:
    handle = serve_http(create_app(SlowFacade(), version="0"), "127.0.0.1", 0)
    results: list[int] = []
    worker = threading.Thread(
        target=lambda: results.append(RawClient(handle.port).get("/status").status_code)
    )
    worker.start()
    time.sleep(0.2)  # the request is being served
    handle.stop()
    worker.join(5)
    assert results == [200]
