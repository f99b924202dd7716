"""The server with L2 adapters, in-process on free ports, driven by our MP client over ZMQ.

Stores go to L1 and, by write-behind, to L2 (fs_native here); after ``POST /cache/clear`` (L1
only) a lookup is served from L2 through the prefetch controller, and retrieve returns the same
bytes. A restarted server on the same directory still hits. Also: the skip_l1 store policy,
polling a running prefetch, cancellation by ``end_session``, a failing adapter (misses, the
server stays healthy) and bad ``--l2-adapter`` specs at start-up.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmcache.cli.main import main
from lmcache.client.mp import MPClient
from lmcache.server.app import Server
from server_util import local_config
from test_server import CHUNK, Worker, blocks, key

N_CHUNKS = 2  # stored into blocks [0, 32), retrieved into [32, 64) of the 64-block worker
TOKENS = list(range(5000, 5000 + N_CHUNKS * CHUNK + 7))  # full chunks + a partial tail


def fs_spec(path: Path) -> str:
    return json.dumps({"type": "fs_native", "base_path": str(path)})


def start(*extra: str) -> Server:
    srv = Server(local_config(*extra))
    srv.startup()
    return srv


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    try:
        yield w
    finally:
        w.close()


def client(srv: Server) -> MPClient:
    return MPClient(f"tcp://127.0.0.1:{srv.zmq_port}", timeout=10)


def http(srv: Server, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"http://127.0.0.1:{srv.http_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if resp.headers.get("content-type", "").startswith("application/json") else raw


def metric(srv: Server, name: str) -> float:
    text = http(srv, "/metrics").decode()
    for line in text.splitlines():
        if line.startswith(f"lmcache_mp_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not in /metrics")


def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def storage(srv: Server) -> dict[str, Any]:
    sm: dict[str, Any] = http(srv, "/status")["storage_manager"]
    return sm


def written_behind(srv: Server, n: int) -> bool:
    sc = storage(srv)["store_controller"]
    return bool(sc["stored_keys"] >= n and sc["pending_keys_count"] == 0 and sc["in_flight_task_count"] == 0)


def block_digest(w: Worker, first_block: int, n_blocks: int) -> str:
    h = hashlib.sha256()
    for t in w.kv:
        h.update(np.ascontiguousarray(t[:, first_block : first_block + n_blocks]).tobytes())
    return h.hexdigest()


def lookup(c: MPClient, request_id: str, timeout: float = 10.0) -> int | None:
    c.call("lookup", key(TOKENS, request_id, worker_id=None), 1)
    result: int | None = c.call("wait_prefetch_status", request_id, timeout)
    return result


def retrieve_digest(c: MPClient, w: Worker, request_id: str, first_block: int = 32) -> str:
    n_blocks = N_CHUNKS * CHUNK // 16
    _, ok = c.call("retrieve", key(TOKENS, request_id), 7, blocks(first_block, N_CHUNKS * CHUNK), b"", 0)
    assert ok is True
    return block_digest(w, first_block, n_blocks)


def quiet_l1(srv: Server) -> bool:
    l1 = storage(srv)["l1_manager"]
    return bool(
        l1["read_locked_count"] == 0 and l1["temporary_count"] == 0 and l1["staging_object_count"] == 0
    )


def test_store_clear_l1_then_lookup_and_retrieve_from_l2_and_after_a_restart(
    tmp_path: Path, worker: Worker
) -> None:
    l2_dir = tmp_path / "l2"
    l2_dir.mkdir()
    stored_digest = block_digest(worker, 0, N_CHUNKS * CHUNK // 16)
    srv = start("--l2-adapter", fs_spec(l2_dir))
    try:
        with client(srv) as c:
            worker.register(c)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok is True
            c.call("end_session", "s")
            assert eventually(lambda: written_behind(srv, N_CHUNKS))
            assert len(list(l2_dir.glob("*.data"))) == N_CHUNKS  # one LMCache-named file per chunk
            # L1-only clear: the objects leave L1, the files stay.
            assert http(srv, "/cache/clear", {})["cleared"]["tier"] == "l1"
            assert storage(srv)["l1_manager"]["total_object_count"] == 0
            assert len(list(l2_dir.glob("*.data"))) == N_CHUNKS

            assert lookup(c, "warm") == N_CHUNKS
            assert retrieve_digest(c, worker, "warm") == stored_digest
            c.call("end_session", "warm")
            assert quiet_l1(srv)  # temporaries went with their reader; no lock left
            assert metric(srv, "lookup_hit_l2_tokens_total") == N_CHUNKS * CHUNK
            assert metric(srv, "lookup_hit_l1_tokens_total") == 0
            assert metric(srv, "l2_prefetch_load_completed_total") == N_CHUNKS
            sm = storage(srv)
            (adapter,) = sm["l2_adapters"]
            assert adapter["type"] == "fs_native" and adapter["healthy"] is True
            assert adapter["usage"]["objects"] == N_CHUNKS
            assert sm["prefetch_controller"]["l2_hit_chunks"] == N_CHUNKS
            # Objects loaded from L2 are not written back.
            assert sm["store_controller"]["queued_keys"] == N_CHUNKS
    finally:
        srv.shutdown()

    # A new server on the same directory finds the files again.
    for t in worker.kv:
        t[:, 32:] = 0  # the retrieve below must write these again
    srv = start("--l2-adapter", fs_spec(l2_dir))
    try:
        with client(srv) as c:
            worker.register(c)
            assert lookup(c, "after-restart") == N_CHUNKS
            assert retrieve_digest(c, worker, "after-restart") == stored_digest
            c.call("end_session", "after-restart")
            assert quiet_l1(srv)
            # tier l2 clears the adapters too.
            cleared = http(srv, "/cache/clear", {"tier": "all"})["cleared"]
            assert cleared["l2_objects"] == N_CHUNKS
            assert list(l2_dir.glob("*.data")) == []
            assert lookup(c, "gone") == 0
    finally:
        srv.shutdown()


def test_skip_l1_policy_empties_l1_and_serves_from_l2(tmp_path: Path, worker: Worker) -> None:
    srv = start("--l2-adapter", fs_spec(tmp_path), "--l2-store-policy", "skip_l1")
    try:
        with client(srv) as c:
            worker.register(c)
            stored_digest = block_digest(worker, 0, N_CHUNKS * CHUNK // 16)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok is True
            c.call("end_session", "s")
            assert eventually(lambda: storage(srv)["l1_manager"]["total_object_count"] == 0)
            assert storage(srv)["store_controller"]["l1_deleted_keys"] == N_CHUNKS
            assert len(list(tmp_path.glob("*.data"))) == N_CHUNKS
            assert lookup(c, "warm") == N_CHUNKS
            assert retrieve_digest(c, worker, "warm") == stored_digest
            c.call("end_session", "warm")
            assert quiet_l1(srv)
    finally:
        srv.shutdown()


def http_status(
    srv: Server, path: str, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{srv.http_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_cache_objects_lists_and_deletes_l2_objects(tmp_path: Path, worker: Worker) -> None:
    srv = start("--l2-adapter", '{"type": "mock"}', "--l2-adapter", fs_spec(tmp_path))
    try:
        with client(srv) as c:
            worker.register(c)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok is True
            c.call("end_session", "s")
            assert eventually(lambda: written_behind(srv, 2 * N_CHUNKS))
            # The second adapter (fs_native), by type, one entry per page.
            code, page = http_status(srv, "/cache/objects?tier=l2&adapter=fs_native&page_size=1")
            assert code == 200, page
            assert page["adapter"] == 1 and page["type"] == "fs_native" and page["shared"] is False
            assert len(page["entries"]) == 1 and page["next_page_token"]
            entries = list(page["entries"])
            code, page2 = http_status(
                srv, f"/cache/objects?adapter=1&page_size=1&page_token={page['next_page_token']}"
            )
            assert code == 200 and page2["next_page_token"] is None
            entries += page2["entries"]
            assert {e["model_name"] for e in entries} == {"test/model"}
            assert len({e["chunk_hash_hex"] for e in entries}) == N_CHUNKS
            assert all(e["size"] > 0 and e["cache_salt"] == "" for e in entries)
            files = {p.name for p in tmp_path.glob("*.data")}
            assert len(files) == N_CHUNKS and all(
                any(e["chunk_hash_hex"] in f for f in files) for e in entries
            )
            # The model filter.
            code, none = http_status(srv, "/cache/objects?adapter=1&model_name=other-model")
            assert code == 200 and none["entries"] == []
            # Delete one key from the fs adapter only; the mock keeps it.
            one = {k: entries[0][k] for k in ("chunk_hash_hex", "model_name", "kv_rank", "object_group_id")}
            code, res = http_status(srv, "/cache/objects", "DELETE", {"keys": [one], "adapter": "fs_native"})
            assert code == 200 and res == {"deleted": 1, "skipped": 0, "ok": True}
            assert len(list(tmp_path.glob("*.data"))) == N_CHUNKS - 1
            _, mock_page = http_status(srv, "/cache/objects?adapter=0")
            assert len(mock_page["entries"]) == N_CHUNKS
            # Delete from every tier: L1 and both adapters.
            code, res = http_status(srv, "/cache/objects", "DELETE", {"keys": [one], "tier": "all"})
            assert code == 200 and res["deleted"] == 2  # L1 + mock (fs already gone)
            # Bad input.
            assert http_status(srv, "/cache/objects?tier=all")[0] == 400
            assert http_status(srv, "/cache/objects?adapter=7")[0] == 400
            assert http_status(srv, "/cache/objects?adapter=redis")[0] == 400
            assert http_status(srv, "/cache/objects?page_size=0")[0] == 400
            bad = dict(one, chunk_hash_hex="zz")
            assert http_status(srv, "/cache/objects", "DELETE", {"keys": [bad]})[0] == 400
            assert http_status(srv, "/cache/objects", "DELETE", {"keys": "x"})[0] == 422
    finally:
        srv.shutdown()


def test_cache_prefetches_warms_l1_from_l2(tmp_path: Path, worker: Worker) -> None:
    srv = start("--l2-adapter", fs_spec(tmp_path))
    try:
        with client(srv) as c:
            worker.register(c)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok is True
            c.call("end_session", "s")
            assert eventually(lambda: written_behind(srv, N_CHUNKS))
            http(srv, "/cache/clear", {})
            assert storage(srv)["l1_manager"]["total_object_count"] == 0
            body = {"model_name": "test/model", "world_size": 1, "token_ids": TOKENS}
            code, res = http_status(srv, "/cache/prefetches", "POST", body)
            assert code == 202 and res["chunks"] == N_CHUNKS and res["status"] == "submitted"
            rid = res["request_id"]
            done: dict[str, Any] = {}

            def completed() -> bool:
                code, st = http_status(srv, f"/cache/prefetches/{rid}")
                assert code == 200 and st["request_id"] == rid
                done.update(st)
                return bool(st["status"] == "completed")

            assert eventually(completed)
            assert done["found_keys"] == N_CHUNKS and done["total_keys"] == N_CHUNKS
            assert http_status(srv, f"/cache/prefetches/{rid}")[1] == done  # stays answerable
            # Warmed objects are resident (not temporary) and hold no lock.
            l1 = storage(srv)["l1_manager"]
            assert l1["total_object_count"] == N_CHUNKS
            assert l1["temporary_count"] == 0 and l1["read_locked_count"] == 0
            before = metric(srv, "lookup_hit_l1_tokens_total")
            assert lookup(c, "warm") == N_CHUNKS
            assert metric(srv, "lookup_hit_l1_tokens_total") == before + N_CHUNKS * CHUNK
            c.call("end_session", "warm")
            # Edge cases.
            short = dict(body, token_ids=TOKENS[: CHUNK - 1])
            assert http_status(srv, "/cache/prefetches", "POST", short) == (
                200,
                {"chunks": 0, "status": "noop"},
            )
            other = dict(body, model_name="no/such-model")
            assert http_status(srv, "/cache/prefetches", "POST", other)[0] == 503
            assert http_status(srv, "/cache/prefetches", "POST", dict(body, source_tier="l1"))[0] == 422
            assert http_status(srv, "/cache/prefetches", "POST", dict(body, world_size=0))[0] == 400
            assert http_status(srv, "/cache/prefetches/nope")[0] == 404
    finally:
        srv.shutdown()


def test_cache_objects_without_l2_is_503(worker: Worker) -> None:
    srv = start()
    try:
        assert http_status(srv, "/cache/objects")[0] == 503
    finally:
        srv.shutdown()


def test_query_prefetch_status_is_none_while_loading_then_the_result_once(worker: Worker) -> None:
    srv = start("--l2-adapter", '{"type": "mock", "latency_ms": 300}')
    try:
        with client(srv) as c:
            worker.register(c)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok
            assert eventually(lambda: written_behind(srv, N_CHUNKS))
            http(srv, "/cache/clear", {})
            c.call("lookup", key(TOKENS, "poll", worker_id=None), 1)
            assert c.call("query_prefetch_status", "poll") is None  # lookup + load take >= 600 ms
            assert storage(srv)["prefetch_controller"]["in_flight"] == 1
            assert http(srv, "/status")["active_prefetch_jobs"] == 1
            results: list[Any] = []
            assert eventually(
                lambda: results.append(c.call("query_prefetch_status", "poll")) or results[-1] is not None
            )
            assert results[-1] == N_CHUNKS
            assert c.call("query_prefetch_status", "poll") == 0  # handed out once
            _, ok = c.call("retrieve", key(TOKENS, "poll"), 7, blocks(32, N_CHUNKS * CHUNK), b"", 0)
            assert ok
            c.call("end_session", "poll")
            assert quiet_l1(srv)
    finally:
        srv.shutdown()


def test_end_session_cancels_a_pending_prefetch(worker: Worker) -> None:
    srv = start("--l2-adapter", '{"type": "mock", "latency_ms": 300}')
    try:
        with client(srv) as c:
            worker.register(c)
            c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert eventually(lambda: written_behind(srv, N_CHUNKS))
            http(srv, "/cache/clear", {})
            c.call("lookup", key(TOKENS, "gone", worker_id=None), 1)
            c.call("end_session", "gone")
            # A repeated lookup replaces (cancels) the previous one too.
            c.call("lookup", key(TOKENS, "again", worker_id=None), 1)
            c.call("lookup", key(TOKENS, "again", worker_id=None), 1)
            assert c.call("wait_prefetch_status", "again", 10.0) == N_CHUNKS
            c.call("end_session", "again")
            assert eventually(lambda: storage(srv)["prefetch_controller"]["in_flight"] == 0)
            assert storage(srv)["prefetch_controller"]["cancelled"] == 2
            assert eventually(lambda: quiet_l1(srv))
    finally:
        srv.shutdown()


def test_a_failing_adapter_gives_the_l1_result_and_the_server_stays_healthy(
    tmp_path: Path, worker: Worker
) -> None:
    spec = json.dumps({"type": "fault_inject", "fail_rate": 1, "inner": json.loads(fs_spec(tmp_path))})
    srv = start("--l2-adapter", spec)
    try:
        with client(srv) as c:
            worker.register(c)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok is True  # L1 took it; the failing L2 does not fail the store
            assert lookup(c, "l1") == N_CHUNKS  # L1 holds everything: served by L1
            c.call("end_session", "l1")
            assert eventually(lambda: storage(srv)["store_controller"]["failed_keys"] == N_CHUNKS)
            http(srv, "/cache/clear", {})
            t0 = time.monotonic()
            assert lookup(c, "miss") == 0  # L2 fails: misses, promptly
            assert time.monotonic() - t0 < 5
            c.call("end_session", "miss")
            assert http(srv, "/healthcheck") == {"status": "healthy"}
            assert metric(srv, "l2_store_failed_objects_total") == N_CHUNKS
            assert quiet_l1(srv)
    finally:
        srv.shutdown()


def test_l2_flags_are_active_and_bad_specs_fail_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["server", "--host", "127.0.0.1", "--port", "0", "--http-host", "127.0.0.1", "--http-port", "0"]
    base += ["--l1-size-gb", "0.01", "--eviction-policy", "LRU"]
    for spec, expect in (
        ('{"type":"nope"}', "--l2-adapter"),
        ('{"type":"mock","x":1}', "--l2-adapter: L2 adapter #1: L2 adapter 'mock': unknown field 'x'"),
        ('{"type":"fs_native"}', "--l2-adapter: L2 adapter #1: L2 adapter 'fs_native': field 'base_path'"),
    ):
        rc = main([*base, "--l2-adapter", spec])
        err = capsys.readouterr().err
        assert rc == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and expect in lines[0], err
        assert "Traceback" not in err


def test_lookup_mixes_l1_and_l2_hits_and_a_full_l1_hit_needs_no_prefetch(
    tmp_path: Path, worker: Worker
) -> None:
    """L1 holds chunk 0 only, L2 both: the lookup gives back the L1 lock it took, the prefetch
    locks chunk 0 in L1 and loads chunk 1; no lock is left after the session. A lookup that L1
    serves completely submits no prefetch at all."""
    srv = start("--l2-adapter", fs_spec(tmp_path))
    try:
        with client(srv) as c:
            worker.register(c)
            _, ok = c.call("store", key(TOKENS, "s"), 7, blocks(0, N_CHUNKS * CHUNK), b"")
            assert ok is True
            c.call("end_session", "s")
            assert eventually(lambda: written_behind(srv, N_CHUNKS))
            before = srv.core.counters.prefetches
            assert lookup(c, "all-l1") == N_CHUNKS
            c.call("end_session", "all-l1")
            assert srv.core.counters.prefetches == before  # L1 had it all
            assert quiet_l1(srv)

            chunk1 = srv.core.sessions.get("h").hashes(TOKENS, N_CHUNKS)[1].hex()
            _, page = http_status(srv, "/cache/objects?tier=l2")
            (entry,) = [e for e in page["entries"] if e["chunk_hash_hex"] == chunk1]
            one = {k: entry[k] for k in ("chunk_hash_hex", "model_name", "kv_rank", "object_group_id")}
            code, res = http_status(srv, "/cache/objects", "DELETE", {"keys": [one], "tier": "l1"})
            assert code == 200 and res["deleted"] == 1
            l1_hits, l2_hits = (
                metric(srv, "lookup_hit_l1_tokens_total"),
                metric(srv, "lookup_hit_l2_tokens_total"),
            )
            assert lookup(c, "mixed") == N_CHUNKS
            assert srv.core.counters.prefetches == before + 1
            assert metric(srv, "lookup_hit_l1_tokens_total") - l1_hits == CHUNK
            assert metric(srv, "lookup_hit_l2_tokens_total") - l2_hits == CHUNK
            assert retrieve_digest(c, worker, "mixed") == block_digest(worker, 0, N_CHUNKS * CHUNK // 16)
            c.call("end_session", "mixed")
            assert quiet_l1(srv)
    finally:
        srv.shutdown()
