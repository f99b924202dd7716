"""A real HTTP server for tests (uvicorn through lmcache.http.serve_http on 127.0.0.1, port 0)
and a raw client that can send any bytes, path, method and headers."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fake_facade import VERSION, FakeFacade
from lmcache.http import HttpServerHandle, create_app, serve_http


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """``client.get("/status")``, ``client.put(path, json=...)``, ``client.request(m, p, content=b...)``."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 10.0) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Response:
        hdrs = dict(headers or {})
        body = content
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("content-type", "application/json")
        if self.token is not None:
            hdrs.setdefault("authorization", f"Bearer {self.token}")
        if params:
            from urllib.parse import urlencode

            path = f"{path}?{urlencode(params)}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("PUT", path, json_body=json, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


@contextmanager
def live_server(
    facade: FakeFacade | None = None, *, auth_token: str | None = None, version: str = VERSION
) -> Iterator[tuple[HttpServerHandle, FakeFacade]]:
    fake = facade or FakeFacade()
    handle = serve_http(create_app(fake, auth_token=auth_token, version=version), "127.0.0.1", 0)
    try:
        yield handle, fake
    finally:
        handle.stop()
