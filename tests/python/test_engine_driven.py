"""The engine_driven transfer path (PREPARE/COMMIT) through the L1 pool in POSIX shared memory.

A fake engine-driven worker maps the server's pool (``/dev/shm/<shm_name>``) the way a 0.5.6
worker does and copies bytes into and out of the slots the server hands out; the server itself
copies nothing. Covers visibility, skipping resident chunks, lock hand-over from ``lookup``,
the refusal of pickled data, release of staging and pins, a full L1, pool naming and cleanup,
byte compatibility with the lmcache_driven path, and (marked e2e) the real 0.5.6 bench.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

from lmcache import errors
from lmcache.client.mp import MPClient
from lmcache.protocol.types import (
    IPCCacheServerKey,
    PrepareRetrieveResponse,
    PrepareStoreResponse,
    RegisterEngineDrivenContextPayload,
)
from lmcache.server.app import Server
from server_util import local_config

CHUNK = 256
LAYERS, HIDDEN = 2, 32
SHAPE = [2, LAYERS, CHUNK, HIDDEN]
OBJECT_BYTES = 2 * LAYERS * CHUNK * HIDDEN * 2  # float16
IID = 1000
POOL_PREFIX = "lmcache_l1_pool_"
REPO = Path(__file__).resolve().parents[2]
VENV = Path("/opt/lmcache-0.5.6-venv")


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(local_config())
    srv.startup(with_http=False)
    try:
        yield srv
    finally:
        srv.shutdown()


def _client(srv: Server) -> MPClient:
    return MPClient(f"tcp://127.0.0.1:{srv.zmq_port}", timeout=5)


def _payload(instance_id: int = IID, hidden: int = HIDDEN) -> RegisterEngineDrivenContextPayload:
    return RegisterEngineDrivenContextPayload(
        instance_id=instance_id,
        model_name="test-model",
        world_size=1,
        block_size=16,
        num_layers=LAYERS,
        hidden_dim_size=hidden,
        dtype_str="float16",
        use_mla=False,
        num_physical_slots=CHUNK,
    )


def key(tokens: list[int], request_id: str, worker_id: int | None = 0) -> IPCCacheServerKey:
    return IPCCacheServerKey(
        model_name="test-model",
        world_size=1,
        worker_id=worker_id,
        token_ids=tokens,
        start=0,
        end=len(tokens) // CHUNK * CHUNK,
        request_id=request_id,
        num_kv_readers=1,
    )


def _stats(srv: Server) -> dict[str, Any]:
    return srv.core.engine.l1.stats()


class PoolWorker:
    """A fake engine-driven worker: maps the server's pool and reads/writes slots in place."""

    def __init__(self, client: MPClient, instance_id: int = IID) -> None:
        self.client = client
        self.instance_id = instance_id
        reply = client.call("register_kv_cache_engine_driven_context", _payload(instance_id))
        self.shm_name: str = reply.shm_name
        self.pool_size: int = reply.pool_size
        fd = os.open(f"/dev/shm/{self.shm_name}", os.O_RDWR)
        try:
            self.pool = mmap.mmap(fd, self.pool_size)
        finally:
            os.close(fd)

    def slot(self, desc: Any) -> np.ndarray:
        assert desc.dtype == "float16" and desc.length == OBJECT_BYTES and list(desc.shape) == SHAPE
        assert desc.offset >= 0 and desc.offset + desc.length <= self.pool_size
        return np.frombuffer(self.pool, dtype=np.float16, count=desc.length // 2, offset=desc.offset).reshape(
            desc.shape
        )

    def store(self, k: IPCCacheServerKey, chunks: list[np.ndarray]) -> tuple[list[int], bool]:
        """prepare_store, write the chunks the server asks for, commit_store."""
        prep: PrepareStoreResponse = self.client.call("prepare_store", k, self.instance_id)
        if not isinstance(prep.context.slots, list):  # as 0.5.6: own buffers, then commit b""
            return [], self.client.call("commit_store", k, self.instance_id, b"")
        indices = list(prep.context.chunk_indices or [])
        if not indices:
            return [], True
        for desc, i in zip(prep.context.slots, indices, strict=True):
            self.slot(desc)[...] = chunks[i]
        return indices, self.client.call("commit_store", k, self.instance_id, b"")

    def retrieve(self, k: IPCCacheServerKey) -> list[np.ndarray] | None:
        prep: PrepareRetrieveResponse = self.client.call("prepare_retrieve", k, self.instance_id)
        if not prep.success:
            return None
        out = [self.slot(d).copy() for d in prep.context.slots]
        assert self.client.call("commit_retrieve", k, self.instance_id) is True
        return out

    def close(self) -> None:
        self.pool.close()


def _chunks(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float16) for _ in range(n)]


def test_native_l1_in_shared_memory() -> None:
    from lmcache._native import keys, l1

    name = f"lmcache_test_native_{os.getpid()}"
    store = l1.L1Store(1 << 22, lazy=True, shm_name="/" + name)
    try:
        assert store.shm_name == name and os.path.exists(f"/dev/shm/{name}")
        ks = keys.make_keys([bytes([i]) * 32 for i in range(3)], "m", 0)
        bufs = store.reserve_write(ks, 8192, tag=1)
        offsets = store.offsets([*bufs, None])
        assert offsets[3] is None and sorted(o for o in offsets if o is not None) == [0, 8192, 16384]
        target = bufs[1]
        assert target is not None
        target[:4] = b"abcd"
        with open(f"/dev/shm/{name}", "rb") as f:
            f.seek(offsets[1] or 0)
            assert f.read(4) == b"abcd"
        with pytest.raises(errors.InvalidArgumentError, match="not an object of this L1 store"):
            store.offsets([bytearray(16)])
        with pytest.raises(errors.AlreadyExistsError):
            l1.L1Store(1 << 20, shm_name=name)
        assert store.unlink_shm() is True and store.unlink_shm() is False
        assert not os.path.exists(f"/dev/shm/{name}")
        assert l1.L1Store(1 << 20).shm_name == ""
    finally:
        store.unlink_shm()


def test_register_advertises_the_pool(server: Server) -> None:
    with _client(server) as c:
        assert "engine_driven" in c.hello().transfer_modes
        reply = c.call("register_kv_cache_engine_driven_context", _payload())
        assert reply.shm_name.startswith(f"{POOL_PREFIX}{os.getpid()}_")
        assert reply.shm_name == server.core.engine.l1.shm_name
        assert reply.pool_size == _stats(server)["capacity_bytes"] == 1 << 26
        assert os.stat(f"/dev/shm/{reply.shm_name}").st_size == reply.pool_size
        # Re-registering refreshes liveness only.
        assert c.call("register_kv_cache_engine_driven_context", _payload()) == reply
        st = server.facade.status()
        assert st["registered_non_cuda_instance_ids"] == [IID]
        assert st["non_cuda_context_meta"][str(IID)]["object_shape"] == SHAPE
        assert st["engine_driven"]["shm_name"] == reply.shm_name
        # Bad layouts are refused.
        with pytest.raises(errors.InvalidArgumentError, match="dtype_str"):
            bad = _payload(instance_id=5)
            bad.dtype_str = "complex32"
            c.call("register_kv_cache_engine_driven_context", bad)
        with pytest.raises(errors.InvalidArgumentError, match="exceeds the L1 pool"):
            c.call("register_kv_cache_engine_driven_context", _payload(instance_id=6, hidden=1 << 20))


def test_zero_copy_round_trip(server: Server) -> None:
    tokens = list(range(5000, 5000 + 2 * CHUNK + 1))
    data = _chunks(2, seed=1)
    with _client(server) as c, _client(server) as scheduler:
        w = PoolWorker(c)
        try:
            prep = c.call("prepare_store", key(tokens, "cold"), IID)
            assert prep.context.chunk_indices == [0, 1]
            offsets = [s.offset for s in prep.context.slots]
            assert len(set(offsets)) == 2 and all(o % 4096 == 0 for o in offsets)
            for s, chunk in zip(prep.context.slots, data, strict=True):
                w.slot(s)[...] = chunk
            # Staged objects are invisible until the commit.
            assert _stats(server)["staging_objects"] == 2
            scheduler.call("lookup", key(tokens, "peek", worker_id=None), 1)
            assert scheduler.call("query_prefetch_status", "peek") == 0
            scheduler.call("end_session", "peek")
            assert c.call("commit_store", key(tokens, "cold"), IID, b"") is True
            # Visible to the next lookup from any client, at once (compat §20 item 1).
            scheduler.call("lookup", key(tokens, "warm", worker_id=None), 1)
            assert scheduler.call("query_prefetch_status", "warm") == 2
            st = _stats(server)
            assert st["staging_objects"] == 0 and st["resident_objects"] == 2
            assert st["read_locked_objects"] == 2  # the lookup's locks

            # The retrieve pins the objects, consumes the lookup's locks and points at the
            # very bytes the worker wrote (no copy on the server).
            prep_r = c.call("prepare_retrieve", key(tokens, "warm"), IID)
            assert prep_r.success and prep_r.data == b""
            assert [s.offset for s in prep_r.context.slots] == offsets
            assert _stats(server)["read_locked_objects"] == 2
            lookup_locks = server.core.sessions.find("warm")
            assert lookup_locks is not None
            assert lookup_locks.lookup_locks[(0, 0)].consumed == {0: 1, 1: 1}
            for s, chunk in zip(prep_r.context.slots, data, strict=True):
                np.testing.assert_array_equal(w.slot(s), chunk)
            assert c.call("commit_retrieve", key(tokens, "warm"), IID) is True
            assert _stats(server)["read_locked_objects"] == 0
            scheduler.call("end_session", "warm")
            assert _stats(server)["read_locked_objects"] == 0
            assert server.facade.status()["engine_driven"]["pending_retrieves"] == 0

            # Resident chunks are skipped: nothing to do for the same tokens, and only the new
            # third chunk for a longer sequence.
            assert w.store(key(tokens, "again"), data) == ([], True)
            longer = tokens[: 2 * CHUNK] + list(range(CHUNK))
            more = [*data, *_chunks(1, seed=2)]
            assert w.store(key(longer, "longer"), more) == ([2], True)
            got = w.retrieve(key(longer, "read-longer"))
            assert got is not None and len(got) == 3
            for a, b in zip(got, more, strict=True):
                np.testing.assert_array_equal(a, b)
            assert _stats(server)["read_locked_objects"] == 0

            # A retrieve of chunks that are not all there fails and pins nothing.
            assert w.retrieve(key(list(range(9, 9 + CHUNK)), "miss")) is None
            assert _stats(server)["read_locked_objects"] == 0
            assert server.core.counters.stores == 2 and server.core.counters.store_chunks == 3
        finally:
            w.close()


class _Boom:
    """Unpickling this would run code (and fail the test)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (pytest.fail, ("the server unpickled commit_store data",))


def test_non_empty_commit_data_is_refused_never_unpickled(server: Server) -> None:
    tokens = [7] * CHUNK
    # A pickle that would run code if anyone unpickled it.
    evil = pickle.dumps(_Boom())
    with _client(server) as c:
        w = PoolWorker(c)
        try:
            prep = c.call("prepare_store", key(tokens, "p"), IID)
            assert len(prep.context.slots) == 1
            assert c.call("commit_store", key(tokens, "p"), IID, evil) is False  # 0.5.6 peer: false
            st = _stats(server)
            assert st["staging_objects"] == 0 and st["resident_objects"] == 0
            c.hello()  # opted-in peers get an error frame naming the cause
            with pytest.raises(errors.InvalidArgumentError, match="never unpickles"):
                c.call("commit_store", key(tokens, "p"), IID, evil)
            # A commit without a prepare fails instead of claiming success.
            assert c.call("commit_store", key(tokens, "p"), IID, b"") is False
        finally:
            w.close()


def test_unregister_and_reap_release_staging_and_pins(server: Server) -> None:
    stored = [1] * CHUNK
    with _client(server) as c:
        w = PoolWorker(c)
        try:
            assert w.store(key(stored, "s"), _chunks(1, 3)) == ([0], True)
            c.call("prepare_store", key([2] * 2 * CHUNK, "staged"), IID)
            prep_r = c.call("prepare_retrieve", key(stored, "pinned"), IID)
            assert prep_r.success
            st = _stats(server)
            assert st["staging_objects"] == 2 and st["read_locked_objects"] == 1
            assert server.facade.status()["engine_driven"]["pending_stores"] == 1
            c.call("unregister_kv_cache_engine_driven_context", IID)
            st = _stats(server)
            assert st["staging_objects"] == 0 and st["read_locked_objects"] == 0
            assert server.facade.status()["registered_non_cuda_instance_ids"] == []
            # The worker's late commit cannot publish anything.
            with pytest.raises(errors.NotFoundError):
                c.hello()
                c.call("prepare_store", key([3] * CHUNK, "late"), IID)
            assert c.call("commit_store", key([2] * 2 * CHUNK, "staged"), IID, b"") is False

            # Reaping (silent worker) releases the same way.
            w2 = PoolWorker(c, instance_id=IID + 1)
            c.call("prepare_store", key([4] * CHUNK, "r"), IID + 1)
            assert _stats(server)["staging_objects"] == 1
            core = server.core
            assert core.engine_driven.reap_stale(time.monotonic(), 120.0, 3600.0) == []
            assert core.engine_driven.reap_stale(time.monotonic() + 4000, 120.0, 3600.0) == [IID + 1]
            assert _stats(server)["staging_objects"] == 0
            w2.close()
        finally:
            w.close()


def test_ping_keeps_an_instance_alive(server: Server) -> None:
    with _client(server) as c:
        c.call("register_kv_cache_engine_driven_context", _payload())
        assert c.call("ping", IID) is True
        core = server.core
        # Pinged: judged against the reap timeout, not the registration grace.
        assert core.engine_driven.reap_stale(time.monotonic() + 60, 120.0, 3600.0) == []
        assert core.engine_driven.reap_stale(time.monotonic() + 200, 120.0, 3600.0) == [IID]


def test_full_l1_fails_the_store_instead_of_dropping_it() -> None:
    srv = Server(local_config("--l1-size-gb", "0.0005", "--eviction-policy", "noop"))  # 512 KiB: 8 objects
    srv.startup(with_http=False)
    try:
        with _client(srv) as c:
            w = PoolWorker(c)
            try:
                results = [w.store(key([i] * CHUNK, f"f{i}"), _chunks(1, i))[1] for i in range(12)]
                assert results[:8] == [True] * 8
                # Full: 0.5.6 clients get a context without slots, gather into their own buffers
                # and their commit fails; nothing is claimed stored.
                prep = c.call("prepare_store", key([99] * CHUNK, "full"), IID)
                assert prep == PrepareStoreResponse()
                assert c.call("commit_store", key([99] * CHUNK, "full"), IID, b"") is False
                assert not any(results[8:])
                assert srv.core.counters.allocation_failure_chunks >= 1
                c.hello()
                with pytest.raises(errors.NoSpaceError):
                    c.call("prepare_store", key([99] * CHUNK, "full"), IID)
            finally:
                w.close()
    finally:
        srv.shutdown()


def test_pool_name_given_and_removed_at_shutdown() -> None:
    name = f"lmcache_test_pool_{os.getpid()}"
    srv = Server(local_config("--shm-name", "/" + name))
    assert os.path.exists(f"/dev/shm/{name}")
    srv.startup(with_http=False)
    try:
        with _client(srv) as c:
            assert c.call("register_kv_cache_engine_driven_context", _payload()).shm_name == name
        # The name is taken: a second server with it fails clearly and leaves it alone.
        with pytest.raises(errors.AlreadyExistsError, match="already exists"):
            Server(local_config("--shm-name", name))
        assert os.path.exists(f"/dev/shm/{name}")
    finally:
        srv.shutdown()
    assert not os.path.exists(f"/dev/shm/{name}")
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"{POOL_PREFIX}{os.getpid()}_")]


def test_stale_pools_of_dead_servers_are_removed_live_ones_kept() -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = Path(f"/dev/shm/{POOL_PREFIX}{dead_pid}_deadbeef")
    live = Path(f"/dev/shm/{POOL_PREFIX}{os.getppid()}_cafe")  # our parent is alive
    stale.write_bytes(b"x")
    live.write_bytes(b"y")
    try:
        srv = Server(local_config())
        try:
            assert not stale.exists() or os.path.exists(f"/proc/{dead_pid}")  # pid reuse: kept
            assert live.exists()
        finally:
            srv.shutdown()
    finally:
        for p in (stale, live):
            p.unlink(missing_ok=True)


def test_lmcache_driven_only_has_no_pool() -> None:
    before = set(os.listdir("/dev/shm"))
    srv = Server(local_config("--supported-transfer-mode", "lmcache_driven"))
    srv.startup(with_http=False)
    try:
        assert srv.core.engine.shm_pool is None and srv.core.transfer_modes == ["lmcache_driven"]
        assert set(os.listdir("/dev/shm")) - before == set()
        with _client(srv) as c:
            c.hello()
            with pytest.raises(errors.LMCacheError):
                c.call("register_kv_cache_engine_driven_context", _payload())
    finally:
        srv.shutdown()


def test_without_room_in_dev_shm_or_with_dax_engine_driven_is_not_served(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lmcache.server import engine_driven

    dax = tmp_path / "dax"
    dax.write_bytes(b"")
    srv = Server(local_config("--l1-devdax-path", str(dax)))
    try:
        assert srv.core.engine.shm_pool is None and srv.core.transfer_modes == ["lmcache_driven"]
    finally:
        srv.shutdown()
    with pytest.raises(errors.ConfigError, match="devdax"):
        Server(local_config("--l1-devdax-path", str(dax), "--supported-transfer-mode", "engine_driven"))

    monkeypatch.setattr(engine_driven.shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
    srv = Server(local_config())
    try:
        assert srv.core.engine.shm_pool is None and srv.core.transfer_modes == ["lmcache_driven"]
    finally:
        srv.shutdown()
    with pytest.raises(errors.NoSpaceError, match="/dev/shm"):
        Server(local_config("--shm-name", f"lmcache_test_nospace_{os.getpid()}"))
    assert not os.path.exists(f"/dev/shm/lmcache_test_nospace_{os.getpid()}")


def test_objects_are_shared_with_the_lmcache_driven_path(server: Server) -> None:
    """An engine-driven store is retrieved by an lmcache_driven worker byte for byte: one object
    format ([2, layers, tokens, heads*head_size]) for both paths."""
    from test_server import BS, NH, Worker, blocks
    from test_server import HS as HEAD
    from test_server import key as lm_key

    tokens = list(range(300, 300 + CHUNK))
    kvw = Worker()
    try:
        with _client(server) as c:
            kvw.register(c)  # lmcache_driven instance 7, model "test/model"
            reply = c.call(
                "register_kv_cache_engine_driven_context",
                RegisterEngineDrivenContextPayload(
                    instance_id=IID,
                    model_name="test/model",
                    world_size=1,
                    block_size=BS,
                    num_layers=LAYERS,
                    hidden_dim_size=NH * HEAD,
                    dtype_str="float16",
                    use_mla=False,
                    num_physical_slots=CHUNK,
                ),
            )
            fd = os.open(f"/dev/shm/{reply.shm_name}", os.O_RDWR)
            pool = mmap.mmap(fd, reply.pool_size)
            os.close(fd)
            try:
                # Gather blocks 0..15 of the lmcache_driven worker's KV the way a 0.5.6 worker does.
                obj = np.stack(
                    [
                        np.stack([t[kv, 0 : CHUNK // BS].reshape(CHUNK, NH * HEAD) for t in kvw.kv])
                        for kv in range(2)
                    ]
                )
                ek = lm_key(tokens, "ed-store")
                prep = c.call("prepare_store", ek, IID)
                (slot,) = prep.context.slots
                assert list(slot.shape) == list(obj.shape)
                view = np.frombuffer(pool, dtype=np.float16, count=obj.size, offset=slot.offset)
                view[...] = obj.reshape(-1)
                del view
                assert c.call("commit_store", ek, IID, b"") is True
                c.call("lookup", lm_key(tokens, "lm", worker_id=None), 1)
                assert c.call("wait_prefetch_status", "lm", 1.0) == 1
                _, ok = c.call("retrieve", lm_key(tokens, "lm"), 7, blocks(32, CHUNK), b"", 0)
                assert ok is True
                for t in kvw.kv:
                    np.testing.assert_array_equal(t[:, 32:48], t[:, 0:16])
            finally:
                pool.close()
    finally:
        kvw.close()


def test_replayed_056_client_traffic_gets_056_answers() -> None:
    """Every request of the captured 0.5.6 bench session (fixtures/wire/engine_driven_shm.json),
    sent verbatim, is answered like 0.5.6 answered it: same frames, except the pool's name (0.5.6
    prefixes a given --shm-name with lmcache_l1_pool_; we use the name as given)."""
    data = json.loads((REPO / "tests/python/fixtures/wire/engine_driven_shm.json").read_text())
    srv = Server(local_config("--l1-size-gb", "1"))
    srv.startup(with_http=False)
    pool = srv.core.engine.l1.shm_name
    try:
        with _client(srv) as c:
            for m in data["messages"]:
                frames = [bytes.fromhex(f) for f in m["frames"]]
                if m["dir"] == "c2s":
                    c.send_raw(frames)
                    continue
                got = c.recv_raw(5.0)
                assert got is not None, m["seq"]
                want = [msgspec.msgpack.decode(f) for f in frames]
                have = [msgspec.msgpack.decode(f) for f in got]
                if isinstance(want[-1], dict) and "shm_name" in want[-1]:
                    assert have[-1]["shm_name"] == pool
                    have[-1]["shm_name"] = want[-1]["shm_name"]
                assert have == want, m["seq"]
    finally:
        srv.shutdown()


# --------------------------------------------------------------------------- real 0.5.6 bench

SERVER_ARGS = shlex.split(
    "--host 127.0.0.1 --port 0 --http-host 127.0.0.1 --http-port 0 --l1-size-gb 1 --eviction-policy LRU"
)
BENCH_ARGS = shlex.split(
    "bench server --mode cpu --transfer-mode engine_driven --start 0 --end 10 --interval 0"
)


def _start_server(tmp: Path) -> tuple[subprocess.Popen[str], int, int, Path]:
    """Our server as a separate process (as the task runs it), ports read from its ready line."""
    log_path = tmp / "server.log"
    env = dict(os.environ)  # the lmcache under test: installed, or the tree via the caller's PYTHONPATH
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmcache", "server", *SERVER_ARGS],
            cwd="/tmp",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text()
        zmq_port = re.search(r"ZMQ tcp://127\.0\.0\.1:(\d+)", text)
        http_port = re.search(r"HTTP http://127\.0\.0\.1:(\d+)", text)
        if zmq_port and http_port:
            return proc, int(zmq_port.group(1)), int(http_port.group(1)), log_path
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise AssertionError(f"server did not start:\n{log_path.read_text()}")


@pytest.mark.e2e
@pytest.mark.skipif(not (VENV / "bin" / "lmcache").exists(), reason="needs the LMCache 0.5.6 venv")
def test_real_056_bench_engine_driven(tmp_path: Path) -> None:
    """``lmcache bench server --transfer-mode engine_driven`` of LMCache 0.5.6 against our server:
    the worker uses the SHM pool, every checksum matches with ``--interval 0``, and the pool is
    gone from /dev/shm after the server stops."""
    proc, zmq_port, http_port, log_path = _start_server(tmp_path)
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(LMCACHE_TRACK_USAGE="false", DO_NOT_TRACK="1", LMCACHE_DISABLE_BANNER="1")
        urls = ["--rpc-url", f"tcp://127.0.0.1:{zmq_port}", "--url", f"http://127.0.0.1:{http_port}"]
        bench = subprocess.run(
            [str(VENV / "bin" / "lmcache"), *BENCH_ARGS, *urls],
            cwd="/tmp",
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = bench.stdout + bench.stderr
        assert bench.returncode == 0, out
        assert "mode=SHM" in out, out  # the worker uses the pool, not the pickle path
        assert re.search(r"Checksum OK:\s+10\b", out), out
        assert re.search(r"Checksum FAIL:\s+0\b", out), out
        assert re.search(r"Pass rate \(%\):\s+100\.00", out), out
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    pools = set(re.findall(rf"/dev/shm/({POOL_PREFIX}\d+_[0-9a-f]+)", log_path.read_text()))
    assert len(pools) == 1, log_path.read_text()
    for name in pools:
        assert not os.path.exists(f"/dev/shm/{name}"), f"pool {name} left behind"
