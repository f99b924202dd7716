"""Optional bearer-token authentication of the HTTP admin API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fake_facade import FakeFacade
from live_http import RawClient, live_server
from lmcache.http import create_app

TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with live_server(auth_token=TOKEN) as (handle, _):
        yield handle.port


def concrete_routes() -> list[tuple[str, str]]:
    paths = create_app(FakeFacade(), version="0").openapi()["paths"]
    return [(m.upper(), p.replace("{cache_salt}", "alice")) for p, ops in paths.items() for m in ops]


def test_open_routes_need_no_token(port: int) -> None:
    anon = RawClient(port)
    assert anon.get("/").status_code == 200
    assert anon.get("/healthcheck").json() == {"status": "healthy"}


def test_unhealthy_healthcheck_is_open_too() -> None:
    fake = FakeFacade()
    fake.healthy = False
    with live_server(fake, auth_token=TOKEN) as (handle, _):
        assert RawClient(handle.port).get("/healthcheck").status_code == 503


def test_every_other_route_needs_the_token(port: int) -> None:
    anon = RawClient(port)
    routes = concrete_routes()
    assert len(routes) >= 19
    for method, path in routes:
        if path in ("/", "/healthcheck"):
            continue
        resp = anon.request(method, path, json_body={"limit_gb": 1} if method == "PUT" else None)
        assert resp.status_code == 401, (method, path, resp.status_code)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["code"] == "unauthorized"


def test_docs_unknown_paths_and_junk_are_401_before_anything_else(port: int) -> None:
    anon = RawClient(port)
    for path in ("/openapi.json", "/docs", "/no/such/route"):
        assert anon.get(path).status_code == 401
    resp = anon.request(
        "POST", "/cache/clear", content=b"{junk", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer",
        "Bearer ",
        TOKEN,
        f"Token {TOKEN}",
        "Bearer \u00e9\u00e9",
    ],
)
def test_wrong_credentials(port: int, header: str) -> None:
    resp = RawClient(port).get("/status", headers={"authorization": header.encode("utf-8").decode("latin-1")})
    assert resp.status_code == 401


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token(port: int, scheme: str) -> None:
    resp = RawClient(port).get("/status", headers={"authorization": f"{scheme} {TOKEN}"})
    assert resp.status_code == 200
    authed = RawClient(port, token=TOKEN)
    assert authed.put("/quota/alice", json={"limit_gb": 1}).status_code == 200
    assert authed.get("/metrics").status_code == 200
    assert authed.get("/no/such/route").status_code == 404


def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="auth_token"):
        create_app(FakeFacade(), auth_token="", version="0")
