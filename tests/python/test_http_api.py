"""The HTTP admin API (lmcache.http) against a fake facade: routes, shapes and status codes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from fake_facade import FULL_VERSION, GIB, VERSION, FakeFacade
from live_http import RawClient, Response, live_server
from lmcache.errors import (
    AlreadyExistsError,
    BusyError,
    CorruptionError,
    InvalidArgumentError,
    LMCacheError,
    LMCacheTimeoutError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
    UnavailableError,
)
from lmcache.http.cache import compress_ids
from lmcache.http.errors import UnsupportedError, status_for


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, FakeFacade]]:
    with live_server() as (handle, fake):
        yield handle.port, fake


@pytest.fixture
def facade(server: tuple[int, FakeFacade]) -> FakeFacade:
    fake = server[1]
    fake.reset()
    return fake


@pytest.fixture
def client(server: tuple[int, FakeFacade], facade: FakeFacade) -> RawClient:
    return RawClient(server[0])


def error_of(resp: Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and "\n" not in body["error"]
    return str(body["error"])


# ---------------------------------------------------------------------------------------------
# Health and root
# ---------------------------------------------------------------------------------------------


def test_root(client: RawClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "service": "LMCache HTTP API"}


def test_healthcheck_healthy(client: RawClient) -> None:
    resp = client.get("/healthcheck")
    assert (resp.status_code, resp.json()) == (200, {"status": "healthy"})


def test_healthcheck_unhealthy_names_failing_components(client: RawClient, facade: FakeFacade) -> None:
    facade.healthy = False
    facade.failing = {"l1_eviction": "thread died", "l2.fs": "no answer in 5 s"}
    resp = client.get("/healthcheck")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unhealthy"
    assert body["failing"] == facade.failing
    assert body["reason"] == "l1_eviction: thread died; l2.fs: no answer in 5 s"


def test_healthcheck_when_health_itself_fails(client: RawClient, facade: FakeFacade) -> None:
    facade.fail["health"] = UnavailableError("engine not started")
    resp = client.get("/healthcheck")
    assert resp.status_code == 503
    assert resp.json()["failing"] == {"server": "engine not started"}


@pytest.mark.parametrize("healthy", [True, False])
def test_health_views_agree(client: RawClient, facade: FakeFacade, healthy: bool) -> None:
    facade.healthy = healthy
    facade.failing = {} if healthy else {"store_controller": "stalled"}
    check = client.get("/healthcheck")
    periodic = client.get("/periodic-threads-health").json()
    status = client.get("/status").json()
    assert (check.status_code == 200) is healthy
    assert periodic["healthy"] is healthy and status["is_healthy"] is healthy
    if healthy:
        assert periodic == {"healthy": True, "unhealthy_count": 0, "unhealthy_threads": []}
        assert "failing" not in status
    else:
        assert periodic["unhealthy_count"] == 1
        assert periodic["unhealthy_threads"] == [{"name": "store_controller", "reason": "stalled"}]
        assert status["failing"] == {"store_controller": "stalled"}


def test_unhealthy_without_details_still_counts(client: RawClient, facade: FakeFacade) -> None:
    facade.healthy = False
    periodic = client.get("/periodic-threads-health").json()
    assert periodic["healthy"] is False and periodic["unhealthy_count"] == 1
    assert client.get("/healthcheck").json()["reason"] == "unhealthy"


# ---------------------------------------------------------------------------------------------
# Status, config, versions
# ---------------------------------------------------------------------------------------------


def test_status_shape_and_compat_keys(client: RawClient, facade: FakeFacade) -> None:
    resp = client.get("/status")
    assert resp.status_code == 200
    body = resp.json()
    for key in ("is_healthy", "engine_type", "chunk_size", "active_sessions", "storage_manager"):
        assert key in body
    sm = body["storage_manager"]
    assert sm["l1_eviction_controller"]["eviction_policy"] == "LRU"
    # Where LMCache's own `describe kvcache` looks (0.5.6 showed null there).
    assert sm["eviction_controller"]["eviction_policy"] == "LRU"
    assert "eviction_controller" not in facade.status_doc["storage_manager"]  # not mutated


def test_status_health_overrides_document(client: RawClient, facade: FakeFacade) -> None:
    facade.healthy = False
    facade.failing = {"l2.fs": "down"}
    assert facade.status_doc["is_healthy"] is True
    body = client.get("/status").json()
    assert body["is_healthy"] is False
    assert body["failing"] == {"l2.fs": "down"}


def test_status_unavailable_is_503(client: RawClient, facade: FakeFacade) -> None:
    facade.fail["status"] = UnavailableError("engine not initialized")
    assert error_of(client.get("/status"), 503, "unavailable") == "engine not initialized"


def test_versions(client: RawClient) -> None:
    assert client.get("/version").json() == FULL_VERSION
    assert client.get("/lmc_version").json() == VERSION
    assert client.get("/commit_id").json() == "g3e11e108"


def test_commit_id_empty_without_suffix() -> None:
    facade = FakeFacade()
    with live_server(facade, version="9.9.9") as (handle, _):
        assert RawClient(handle.port).get("/commit_id").json() == ""


def test_config(client: RawClient) -> None:
    resp = client.get("/config")
    assert resp.status_code == 200
    assert resp.json()["mp"]["chunk_size"] == 256


def test_config_adapters(client: RawClient, facade: FakeFacade) -> None:
    assert client.get("/config/adapters").json() == {
        "adapters": [
            {
                "index": 0,
                "type_name": "NixlStoreL2Adapter",
                "tier": "l2",
                "primary": True,
                "reconfigurable": False,
            }
        ]
    }
    del facade.status_doc["storage_manager"]["l2_adapters"]
    assert client.get("/config/adapters").json() == {"adapters": []}


def test_apps_do_not_share_state() -> None:
    a, b = FakeFacade(), FakeFacade()
    b.healthy = False
    with live_server(a, version="1.0.0") as (ha, _), live_server(b, version="2.0.0") as (hb, _):
        ca, cb = RawClient(ha.port), RawClient(hb.port)
        assert ca.get("/lmc_version").json() == "1.0.0"
        assert cb.get("/lmc_version").json() == "2.0.0"
        assert ca.get("/healthcheck").status_code == 200
        assert cb.get("/healthcheck").status_code == 503


def test_openapi_document(client: RawClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/healthcheck", "/status", "/cache/clear", "/cache/checksums", "/quota/{cache_salt}"):
        assert path in paths


# ---------------------------------------------------------------------------------------------
# Cache clear
# ---------------------------------------------------------------------------------------------


def test_clear_empty_body_is_l1(client: RawClient, facade: FakeFacade) -> None:
    resp = client.post("/cache/clear")
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "ok",
        "cleared": {"tier": "l1", "l1": {"objects": 1024, "bytes": int(0.72 * GIB)}},
    }
    assert ("clear", ("l1", False)) in facade.calls


@pytest.mark.parametrize(
    ("body", "tier", "force"),
    [
        ({}, "l1", False),
        ({"tier": "l1"}, "l1", False),
        ({"tier": "l2"}, "l2", False),
        ({"tier": "all", "force": True}, "all", True),
    ],
)
def test_clear_tiers(
    client: RawClient, facade: FakeFacade, body: dict[str, Any], tier: str, force: bool
) -> None:
    resp = client.post("/cache/clear", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["cleared"]["tier"] == tier
    assert facade.calls[-1] == ("clear", (tier, force))


@pytest.mark.parametrize(
    "body", [{"tier": "l3"}, {"tier": "L1"}, {"tier": 1}, {"force": "yes"}, {"tier": "l1", "x": 1}]
)
def test_clear_invalid_body_is_422(client: RawClient, facade: FakeFacade, body: dict[str, Any]) -> None:
    resp = client.post("/cache/clear", json=body)
    error_of(resp, 422, "invalid_argument")
    assert resp.json()["detail"]
    assert not [c for c in facade.calls if c[0] == "clear"]


def test_clear_l2_that_cannot_be_cleared_is_501(client: RawClient, facade: FakeFacade) -> None:
    facade.unclearable = {"l2", "all"}
    message = error_of(client.post("/cache/clear", json={"tier": "l2"}), 501, "unsupported")
    assert "cannot clear tier 'l2'" in message and "cannot delete" in message
    # L1 is unaffected; an unavailable L1 stays a 503.
    assert client.post("/cache/clear", json={"tier": "l1"}).status_code == 200
    facade.fail["clear"] = UnavailableError("engine stopping")
    error_of(client.post("/cache/clear", json={"tier": "l1"}), 503, "unavailable")


# ---------------------------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------------------------


def test_checksums_shape(client: RawClient, facade: FakeFacade) -> None:
    ids = [0, 2, 3, 4, 5, 8]
    resp = client.post("/cache/checksums", json={"block_ids": ids, "chunk_size": 4, "instance_id": 7})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success"
    assert body["chunk_size"] == 4 and body["num_chunks"] == 2 and body["layerwise"] is False
    assert len(body["chunk_checksums"]) == 2 and all(len(h) == 32 for h in body["chunk_checksums"])
    assert body["block_id_ranges"] == [0, [2, 5], 8]
    assert facade.calls[-1] == ("checksums", (7, ids, 4, False))


def test_checksums_layerwise(client: RawClient) -> None:
    body = {"block_ids": [1, 2, 3], "chunk_size": 2, "instance_id": 7, "layerwise": True}
    out = client.post("/cache/checksums", json=body).json()
    assert out["layerwise"] is True and out["num_chunks"] == 2
    assert sorted(out["chunk_checksums"]) == ["layer_0", "layer_1", "layer_2", "layer_3"]
    assert all(len(v) == 2 for v in out["chunk_checksums"].values())


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"block_ids": [], "chunk_size": 2, "instance_id": 7}, "block_ids"),
        ({"chunk_size": 2, "instance_id": 7}, "block_ids"),
        ({"block_ids": [1], "chunk_size": 0, "instance_id": 7}, "chunk_size"),
        ({"block_ids": [1], "chunk_size": -3, "instance_id": 7}, "chunk_size"),
        ({"block_ids": [1], "instance_id": 7}, "chunk_size"),
        ({"block_ids": [-1], "chunk_size": 1, "instance_id": 7}, "block_ids"),
        ({"block_ids": [2**40], "chunk_size": 1, "instance_id": 7}, "block_ids"),
        ({"block_ids": [1], "chunk_size": 2**40, "instance_id": 7}, "chunk_size"),
        ({"block_ids": [1], "chunk_size": 1, "instance_id": 2**64}, "instance_id"),
    ],
)
def test_checksums_bad_values_are_400(client: RawClient, body: dict[str, Any], needle: str) -> None:
    assert needle in error_of(client.post("/cache/checksums", json=body), 400, "invalid_argument")


def test_checksums_unknown_instance_is_404(client: RawClient) -> None:
    resp = client.post("/cache/checksums", json={"block_ids": [1], "chunk_size": 1, "instance_id": 3})
    assert "instance_id 3" in error_of(resp, 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"block_ids": "0,1", "chunk_size": 1},
        {"block_ids": [1.5], "chunk_size": 1},
        {"block_ids": [1], "chunk_size": "2"},
        {"block_ids": [1], "chunk_size": 1, "layerwise": "no"},
        {"block_ids": [1], "chunk_size": 1, "bogus": 0},
    ],
)
def test_checksums_wrong_types_are_422(client: RawClient, body: dict[str, Any]) -> None:
    error_of(client.post("/cache/checksums", json=body), 422, "invalid_argument")


def test_compress_ids() -> None:
    assert compress_ids([]) == []
    assert compress_ids([1, 2, 3, 4, 5, 9, 10, 11, 12]) == [[1, 5], [9, 12]]
    assert compress_ids([5, 3, 1, 2, 4]) == [5, 3, 1, 2, 4]
    assert compress_ids([1, 2, 3, 4, 5, 7, 8]) == [[1, 5], 7, 8]


# ---------------------------------------------------------------------------------------------
# Quota
# ---------------------------------------------------------------------------------------------


def test_quota_set_get_delete(client: RawClient, facade: FakeFacade) -> None:
    resp = client.put("/quota/alice", json={"limit_gb": 1.5})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"cache_salt": "alice", "limit_gb": 1.5, "status": "ok", "enforced": False}
    assert facade.quotas["alice"] == int(1.5 * GIB)  # GB = 2**30 bytes, as LMCache
    assert client.get("/quota/alice").json() == {
        "cache_salt": "alice",
        "limit_gb": 1.5,
        "current_usage_gb": 0.5,
        "exists": True,
        "enforced": False,
    }
    assert client.delete("/quota/alice").json() == {"cache_salt": "alice", "status": "removed"}
    assert client.delete("/quota/alice").json() == {"cache_salt": "alice", "status": "not_found"}
    missing = client.get("/quota/alice").json()
    assert missing["exists"] is False and missing["limit_gb"] == 0.0


def test_quota_integer_and_zero_limits(client: RawClient, facade: FakeFacade) -> None:
    assert client.put("/quota/bob", json={"limit_gb": 2}).json()["limit_gb"] == 2
    assert facade.quotas["bob"] == 2 * GIB
    assert client.put("/quota/bob", json={"limit_gb": 0}).status_code == 200
    assert facade.quotas["bob"] == 0


def test_quota_default_salt_is_the_empty_salt(client: RawClient, facade: FakeFacade) -> None:
    assert client.put("/quota/_default", json={"limit_gb": 1}).json()["cache_salt"] == "_default"
    assert facade.quotas == {"": GIB}
    got = client.get("/quota/_default").json()
    assert got["cache_salt"] == "_default" and got["current_usage_gb"] == 0.75
    listed = client.get("/quota").json()
    assert listed["users"]["_default"] == {"limit_gb": 1.0, "current_usage_gb": 0.75, "exists": True}


def test_quota_list(client: RawClient, facade: FakeFacade) -> None:
    facade.quotas = {"alice": GIB}
    assert client.get("/quota").json() == {
        "users": {
            "_default": {"limit_gb": 0.0, "current_usage_gb": 0.75, "exists": False},
            "alice": {"limit_gb": 1.0, "current_usage_gb": 0.5, "exists": True},
        },
        "enforced": False,
    }


def test_quota_enforced_with_isolated_lru(client: RawClient, facade: FakeFacade) -> None:
    facade.policy = "IsolatedLRU"
    assert client.put("/quota/alice", json={"limit_gb": 1}).json()["enforced"] is True
    assert client.get("/quota/alice").json()["enforced"] is True
    assert client.get("/quota").json()["enforced"] is True


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/quota/bad@salt", "'@'"),
        ("/quota/bad%40salt", "'@'"),
        ("/quota/a/b", "'/'"),
        ("/quota/a%2Fb", "'/'"),
        ("/quota/a%5Cb", "'\\\\'"),
        ("/quota/a%00b", "NUL"),
        ("/quota/" + "x" * 129, "129 characters"),
        ("/quota/", "empty cache_salt"),
    ],
)
def test_quota_invalid_salts_are_400(client: RawClient, facade: FakeFacade, path: str, needle: str) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("PUT", {"json_body": {"limit_gb": 1}}),
        ("GET", {}),
        ("DELETE", {}),
    ]
    for method, kwargs in cases:
        resp = client.request(method, path, **kwargs)
        assert needle in error_of(resp, 400, "invalid_argument"), (method, path)
    assert facade.quotas == {}


def test_quota_salt_of_128_characters_is_fine(client: RawClient) -> None:
    assert client.put("/quota/" + "x" * 128, json={"limit_gb": 1}).status_code == 200


@pytest.mark.parametrize(
    "content",
    [
        b'{"limit_gb": NaN}',
        b'{"limit_gb": Infinity}',
        b'{"limit_gb": -Infinity}',
        b'{"limit_gb": 1e999}',
        b'{"limit_gb": -1}',
        b'{"limit_gb": -0.001}',
        b'{"limit_gb": 1e300}',
        b'{"limit_gb": "abc"}',
        b'{"limit_gb": "1.5"}',
        b'{"limit_gb": true}',
        b'{"limit_gb": null}',
        b'{"limit_gb": [1]}',
        b"{}",
        b'{"limit": 1}',
        b'{"limit_gb": 1, "extra": 2}',
        b"{bad json",
        b"[]",
        b"null",
        b"",
    ],
)
def test_quota_bad_bodies_are_400(client: RawClient, facade: FakeFacade, content: bytes) -> None:
    resp = client.put("/quota/alice", content=content, headers={"content-type": "application/json"})
    error_of(resp, 400, "invalid_argument")
    assert facade.quotas == {}


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_metrics_prometheus_text(client: RawClient) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    ctype = resp.headers["content-type"]
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
    assert 'lmcache_mp_lookup_hit_tokens_total{model_name="m",cache_salt=""} 42' in resp.text


def test_metrics_reset(client: RawClient, facade: FakeFacade) -> None:
    resp = client.post("/metrics/reset")
    assert (resp.status_code, resp.text) == (200, "ok")
    assert resp.headers["content-type"].startswith("text/plain")
    assert facade.hits == 0
    assert "} 0\n" in client.get("/metrics").text


# ---------------------------------------------------------------------------------------------
# Debug routes
# ---------------------------------------------------------------------------------------------


def test_threads(client: RawClient) -> None:
    threads = client.get("/threads").json()
    assert any(t["name"] == "MainThread" for t in threads)
    for t in threads:
        assert set(t) == {"thread_id", "native_id", "name", "state", "daemon"}
    main = next(t for t in threads if t["name"] == "MainThread")
    assert client.get("/threads", params={"name": "mainthr"}).json() == [main]
    assert client.get("/threads", params={"thread_id": main["thread_id"]}).json() == [main]
    assert client.get("/threads", params={"name": "no-such-thread"}).json() == []
    assert client.get("/threads", params={"thread_id": "abc"}).status_code == 422


def test_loglevel(client: RawClient) -> None:
    logger = logging.getLogger("lmcache.test_http_api.probe")
    logger.setLevel(logging.WARNING)
    listing = client.get("/loglevel")
    assert listing.status_code == 200 and listing.headers["content-type"].startswith("text/plain")
    assert "lmcache.test_http_api.probe: WARNING" in listing.text.splitlines()
    assert listing.text.splitlines()[0].startswith("root: ")
    name = {"logger_name": logger.name}
    assert client.get("/loglevel", params=name).text == f"{logger.name}: WARNING\n"
    resp = client.get("/loglevel", params={**name, "level": "debug"})
    assert resp.text == f"{logger.name}: DEBUG (was WARNING)\n"
    assert logger.level == logging.DEBUG
    assert "level" in error_of(
        client.get("/loglevel", params={**name, "level": "LOUD"}), 400, "invalid_argument"
    )
    assert logger.level == logging.DEBUG
    error_of(client.get("/loglevel", params={"level": "DEBUG"}), 400, "invalid_argument")
    error_of(client.get("/loglevel", params={"logger_name": "no.such.logger.anywhere"}), 404, "not_found")
    assert "no.such.logger.anywhere" not in logging.Logger.manager.loggerDict


# ---------------------------------------------------------------------------------------------
# The error map
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidArgumentError("x"), 400),
        (NotFoundError("x"), 404),
        (AlreadyExistsError("x"), 409),
        (BusyError("x"), 409),
        (NoSpaceError("x"), 507),
        (UnsupportedError("x"), 501),
        (UnavailableError("x"), 503),
        (LMCacheTimeoutError("x"), 504),
        (StorageIOError("x"), 500),
        (CorruptionError("x"), 500),
        (LMCacheError("x"), 500),
    ],
)
def test_status_for(exc: LMCacheError, status: int) -> None:
    assert status_for(exc) == status


def test_facade_errors_reach_the_client_as_json(client: RawClient, facade: FakeFacade) -> None:
    facade.fail["config"] = LMCacheTimeoutError("config snapshot timed out")
    assert error_of(client.get("/config"), 504, "timeout") == "config snapshot timed out"
    facade.fail["metrics_text"] = StorageIOError("disk\nfull")
    assert error_of(client.get("/metrics"), 500, "io_error") == "disk full"
