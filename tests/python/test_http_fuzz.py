"""Malformed requests get a 4xx answer from every route, never a 5xx.

Every route of the app is listed in ROUTES (a test fails when a new route is not), and each gets
junk bodies under several content types, type-confused fields, odd paths and query strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fake_facade import FakeFacade
from live_http import RawClient, Response, live_server
from lmcache.http import create_app

# (method, path template, concrete path, takes a JSON body)
ROUTES: list[tuple[str, str, str, bool]] = [
    ("GET", "/", "/", False),
    ("GET", "/healthcheck", "/healthcheck", False),
    ("GET", "/status", "/status", False),
    ("GET", "/config", "/config", False),
    ("GET", "/config/adapters", "/config/adapters", False),
    ("GET", "/version", "/version", False),
    ("GET", "/lmc_version", "/lmc_version", False),
    ("GET", "/commit_id", "/commit_id", False),
    ("POST", "/cache/clear", "/cache/clear", True),
    ("POST", "/cache/checksums", "/cache/checksums", True),
    ("GET", "/cache/objects", "/cache/objects", False),
    ("DELETE", "/cache/objects", "/cache/objects", True),
    ("POST", "/cache/prefetches", "/cache/prefetches", True),
    ("GET", "/cache/prefetches/{request_id}", "/cache/prefetches/warm-1", False),
    ("GET", "/quota", "/quota", False),
    ("PUT", "/quota/{cache_salt}", "/quota/alice", True),
    ("GET", "/quota/{cache_salt}", "/quota/alice", False),
    ("DELETE", "/quota/{cache_salt}", "/quota/alice", False),
    ("GET", "/metrics", "/metrics", False),
    ("POST", "/metrics/reset", "/metrics/reset", False),
    ("GET", "/threads", "/threads", False),
    ("GET", "/loglevel", "/loglevel", False),
    ("GET", "/periodic-threads-health", "/periodic-threads-health", False),
]

JUNK_BODIES: list[bytes] = [
    b"{",
    b"}",
    b"[]",
    b"[1, 2, 3]",
    b"123",
    b"-1e999",
    b'"a string"',
    b"true",
    b"NaN",
    b"\x00\x01\x02",
    b"\xff\xfe\xfd\xfc",
    b'{"\xff": 1}',
    b"[" * 100_000,
    b'{"a":' * 20_000,
    b'{"tier": "l1"' + b" " * 10_000,
    json.dumps({"nested": {"deep": [1, 2, {"x": None}]}}).encode(),
    json.dumps({"unknown_field": 1}).encode(),
    b"A" * 200_000,
]

CONTENT_TYPES: list[str | None] = [
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    None,
]

# Type-confused or out-of-range fields for each body route (must be 4xx, as JSON).
FIELD_JUNK: dict[str, list[Any]] = {
    "/cache/clear": [
        {"tier": None},
        {"tier": 1},
        {"tier": ["l1"]},
        {"tier": {"l1": True}},
        {"tier": "l1 "},
        {"tier": ""},
        {"force": 1},
        {"force": "true"},
        {"force": None},
        {"tier": "l1", "force": False, "extra": 0},
        [{"tier": "l1"}],
        "l1",
        0,
    ],
    "/cache/checksums": [
        {},
        {"block_ids": None, "chunk_size": 1},
        {"block_ids": {"0": 1}, "chunk_size": 1},
        {"block_ids": [None], "chunk_size": 1},
        {"block_ids": ["1"], "chunk_size": 1},
        {"block_ids": [True], "chunk_size": 1},
        {"block_ids": [10**30], "chunk_size": 1},
        {"block_ids": [-(10**30)], "chunk_size": 1},
        {"block_ids": [1], "chunk_size": 10**30},
        {"block_ids": [1], "chunk_size": 1.5},
        {"block_ids": [1], "chunk_size": None},
        {"block_ids": [1], "chunk_size": 1, "instance_id": "7"},
        {"block_ids": [1], "chunk_size": 1, "instance_id": 10**30},
        {"block_ids": [1], "chunk_size": 1, "instance_id": -(10**30)},
        {"block_ids": [1], "chunk_size": 1, "instance_id": 12345},
        {"block_ids": [1], "chunk_size": 1, "layerwise": 1},
        {"block_ids": list(range(100_000)), "chunk_size": 0},
    ],
    "/quota/alice": [
        {"limit_gb": None},
        {"limit_gb": "1"},
        {"limit_gb": [1]},
        {"limit_gb": {"v": 1}},
        {"limit_gb": True},
        {"limit_gb": -1},
        {"limit_gb": 10**400},
        {"limit_gb": -(10**400)},
        {"limit_gb": 1e308},
        {"limit_gb": 1, "cache_salt": "bob"},
        {},
        [1],
    ],
}

QUOTA_PATHS = [
    "/quota/%00",
    "/quota/%ff%fe",
    "/quota/%",
    "/quota/%zz",
    "/quota/..%2F..%2Fetc",
    "/quota/../status",
    "/quota//x",
    "/quota/" + "y" * 5000,
    "/quota/_default/",
    "/quota/a@b",
    "/quota/%5C",
]

QUERIES = [
    ("/threads", {"thread_id": "abc"}),
    ("/threads", {"thread_id": "9" * 400}),
    ("/threads", {"name": "\x00" * 10}),
    ("/loglevel", {"logger_name": "\x00"}),
    ("/loglevel", {"logger_name": "root", "level": "\x00"}),
    ("/loglevel", {"logger_name": "x" * 10_000, "level": "DEBUG"}),
    ("/loglevel", {"level": "DEBUG"}),
    ("/status", {"junk": "1"}),
]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RawClient, FakeFacade]]:
    with live_server() as (handle, fake):
        yield RawClient(handle.port), fake


@pytest.fixture
def client(server: tuple[RawClient, FakeFacade]) -> RawClient:
    server[1].reset()
    return server[0]


def assert_not_5xx(resp: Response, what: str) -> None:
    assert resp.status_code < 500, f"{what}: {resp.status_code} {resp.content[:300]!r}"


def assert_json_4xx(resp: Response, what: str) -> None:
    assert 400 <= resp.status_code < 500, f"{what}: {resp.status_code} {resp.content[:300]!r}"
    body = resp.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("code"), str), (what, body)


def test_route_table_is_complete() -> None:
    paths = create_app(FakeFacade(), version="0").openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    listed = {(m, p) for m, p, _, _ in ROUTES}
    assert routes == listed


@pytest.mark.parametrize(("method", "path", "takes_body"), [(m, c, b) for m, _, c, b in ROUTES])
def test_junk_bodies(client: RawClient, method: str, path: str, takes_body: bool) -> None:
    # Routes without a body never parse it: two content types are enough there.
    for ctype in CONTENT_TYPES if takes_body else CONTENT_TYPES[:2]:
        headers = {} if ctype is None else {"content-type": ctype}
        for body in JUNK_BODIES:
            resp = client.request(method, path, content=body, headers=headers)
            what = f"{method} {path} [{ctype}] {body[:40]!r}"
            if takes_body:
                assert_json_4xx(resp, what)
            else:
                assert_not_5xx(resp, what)


@pytest.mark.parametrize("path", sorted(FIELD_JUNK))
def test_type_confused_fields(client: RawClient, path: str) -> None:
    method = "PUT" if path.startswith("/quota") else "POST"
    for body in FIELD_JUNK[path]:
        resp = client.request(method, path, json_body=body)
        assert_json_4xx(resp, f"{method} {path} {json.dumps(body)[:80]}")


@pytest.mark.parametrize("path", QUOTA_PATHS)
def test_odd_quota_paths(client: RawClient, path: str) -> None:
    for method, body in (("PUT", {"limit_gb": 1}), ("GET", None), ("DELETE", None)):
        resp = client.request(method, path, json_body=body)
        assert_not_5xx(resp, f"{method} {path}")


@pytest.mark.parametrize(("path", "params"), QUERIES)
def test_odd_queries(client: RawClient, path: str, params: dict[str, str]) -> None:
    assert_not_5xx(client.get(path, params=params), f"GET {path} {params}")


def test_wrong_methods_and_unknown_paths(client: RawClient) -> None:
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        for _, _, path, _ in ROUTES:
            assert_not_5xx(client.request(method, path, content=b"{"), f"{method} {path}")
        resp = client.request(method, "/no/such/route")
        assert_json_4xx(resp, f"{method} /no/such/route")
        assert resp.json()["code"] == "not_found"
    resp = client.request("PATCH", "/status")
    assert_json_4xx(resp, "PATCH /status")
    assert resp.json()["code"] == "method_not_allowed" and "GET" in resp.headers["allow"]
