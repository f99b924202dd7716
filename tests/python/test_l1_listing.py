"""``GET /cache/objects?tier=l1`` on a server started in-process, over real ZMQ and HTTP.

Stores chunks through the MP protocol from a fake worker, pages through L1 (every object exactly
once, the sizes the layout implies, read locks while a lookup holds them), proves the listed keys
are the stored ones by deleting them by key, and checks the 400s for bad input.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from lmcache.client.mp import MPClient
from lmcache.server.app import Server
from server_util import local_config
from test_server import CHUNK, HS, LAYERS, NH, Worker, blocks, key

N_CHUNKS = 4  # the whole 64-block worker
TOKENS = list(range(7000, 7000 + N_CHUNKS * CHUNK + 3))  # full chunks + a partial tail (not stored)
OBJECT_BYTES = LAYERS * 2 * CHUNK * NH * HS * 2  # K and V of every layer, fp16
KV_RANK = (1 << 24) | (0 << 16) | (1 << 8) | 0  # world 1, rank 0, local world 1, local rank 0


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(local_config())
    srv.startup()
    try:
        yield srv
    finally:
        srv.shutdown()


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    try:
        yield w
    finally:
        w.close()


def http(srv: Server, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{srv.http_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def list_l1(srv: Server, page_size: int, model_name: str | None = None) -> list[dict[str, Any]]:
    """Every page of one pass; asserts the page shape and that the pass ends."""
    pages: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {"tier": "l1", "page_size": str(page_size), "page_token": token}
        if model_name is not None:
            query["model_name"] = model_name
        code, page = http(srv, "/cache/objects?" + urllib.parse.urlencode(query))
        assert code == 200, page
        assert page["tier"] == "l1" and page["type"] == "l1" and page["adapter"] is None
        assert page["shared"] is False
        assert len(page["entries"]) <= page_size
        pages.append(page)
        assert len(pages) < 1000, "the listing does not end"
        if page["next_page_token"] is None:
            return pages
        assert page["next_page_token"] != token
        token = page["next_page_token"]


def entries(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for p in pages for e in p["entries"]]


def store(srv: Server, worker: Worker, request_id: str) -> MPClient:
    c = MPClient(f"tcp://127.0.0.1:{srv.zmq_port}", timeout=10)
    worker.register(c)
    _, ok = c.call("store", key(TOKENS, request_id), 7, blocks(0, N_CHUNKS * CHUNK), b"")
    assert ok is True
    c.call("end_session", request_id)
    return c


def test_l1_listing_pages_through_every_stored_object_once(server: Server, worker: Worker) -> None:
    assert entries(list_l1(server, 10)) == []
    with store(server, worker, "s") as c:
        for page_size in (1, 3, 4, 500):
            pages = list_l1(server, page_size)
            assert len(pages) == -(-N_CHUNKS // page_size)  # full pages, no empty one at the end
            listed = entries(pages)
            assert len(listed) == N_CHUNKS
            assert len({e["chunk_hash_hex"] for e in listed}) == N_CHUNKS
            for e in listed:
                assert len(bytes.fromhex(e["chunk_hash_hex"])) > 0
                assert e["model_name"] == "test/model" and e["cache_salt"] == ""
                assert e["kv_rank"] == KV_RANK and e["object_group_id"] == 0
                assert e["size"] == OBJECT_BYTES and e["allocated_bytes"] >= OBJECT_BYTES
                assert e["state"] == "resident" and e["read_locks"] == 0
        assert entries(list_l1(server, 2, model_name="test/model")) == entries(list_l1(server, 2))
        assert entries(list_l1(server, 2, model_name="other/model")) == []

        # A lookup read-locks the prefix until the retrieve; the listing shows it.
        c.call("lookup", key(TOKENS, "r", worker_id=None), 1)
        assert [e["read_locks"] for e in entries(list_l1(server, 10))] == [1] * N_CHUNKS
        _, ok = c.call("retrieve", key(TOKENS, "r"), 7, blocks(0, N_CHUNKS * CHUNK), b"", 0)
        assert ok is True
        c.call("end_session", "r")
        assert [e["read_locks"] for e in entries(list_l1(server, 10))] == [0] * N_CHUNKS

        # The listed keys are the stored ones: deleting them by key empties L1.
        listed = entries(list_l1(server, 500))
        keys = [
            {k: e[k] for k in ("chunk_hash_hex", "model_name", "kv_rank", "object_group_id", "cache_salt")}
            for e in listed
        ]
        code, res = http(server, "/cache/objects", "DELETE", {"keys": keys, "tier": "l1"})
        assert code == 200 and res["deleted"] == N_CHUNKS, res
        assert entries(list_l1(server, 10)) == []
        assert http(server, "/status")[1]["storage_manager"]["l1_manager"]["total_object_count"] == 0


def test_l1_listing_rejects_bad_input_with_one_line(server: Server, worker: Worker) -> None:
    with store(server, worker, "s"):
        code, first = http(server, "/cache/objects?tier=l1&page_size=1")
        assert code == 200 and first["next_page_token"]
        token = first["next_page_token"]
        bad_queries = {
            "tier=l1&page_token=garbage": "page_token",
            "tier=l1&page_token=" + urllib.parse.quote(token + "x"): "page_token",
            "tier=l1&page_token=" + urllib.parse.quote("l1-0-0-0-0\nX-Injected: 1"): "page_token",
            "tier=l1&page_size=0": "page_size",
            "tier=l1&page_size=10001": "page_size",
            "tier=l1&adapter=0": "adapter",
            "tier=all": "tier",
            "tier=l3": "tier",
        }
        for query, field in bad_queries.items():
            code, body = http(server, "/cache/objects?" + query)
            assert code == 400, (query, body)
            assert field in body["error"] and "\n" not in body["error"], (query, body)
            assert body["code"] == "invalid_argument"
        # The good token still works after the rejected ones.
        code, second = http(
            server, "/cache/objects?tier=l1&page_size=1&page_token=" + urllib.parse.quote(token)
        )
        assert code == 200 and len(second["entries"]) == 1
        assert second["entries"][0]["chunk_hash_hex"] != first["entries"][0]["chunk_hash_hex"]
        # Without L2, the default tier (l2) stays 503.
        assert http(server, "/cache/objects")[0] == 503


def test_l1_listing_excludes_objects_stored_after_the_pass_began(server: Server, worker: Worker) -> None:
    with store(server, worker, "s") as c:
        code, first = http(server, "/cache/objects?tier=l1&page_size=1")
        assert code == 200 and first["next_page_token"]
        seen = list(first["entries"])
        # Replace L1's content mid-pass: clear it, then store other tokens.
        assert http(server, "/cache/clear", "POST", {"tier": "l1"})[0] == 200
        other = [t + 100_000 for t in TOKENS]
        _, ok = c.call("store", key(other, "o"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
        assert ok is True
        c.call("end_session", "o")
        token = first["next_page_token"]
        while token:
            code, page = http(
                server, "/cache/objects?tier=l1&page_size=1&page_token=" + urllib.parse.quote(token)
            )
            assert code == 200, page
            seen += page["entries"]
            token = page["next_page_token"]
        assert len(seen) == 1  # the cleared objects are gone and the new ones came after the pass began
        fresh = entries(list_l1(server, 2))
        assert len(fresh) == N_CHUNKS and fresh[0]["chunk_hash_hex"] != seen[0]["chunk_hash_hex"]
