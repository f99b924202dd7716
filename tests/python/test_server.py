"""The server in-process on free ports, driven by our MP client over real ZMQ and HTTP.

Covers the lmcache_driven CPU data path end to end (register -> store -> lookup -> retrieve
with byte-exact comparison), store visibility, full-L1 behaviour, bad input on the wire and
unregistration (no mapping leak).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest

from lmcache import errors
from lmcache.client.mp import MPClient
from lmcache.protocol.types import (
    CpuShmIPCData,
    EngineGroupInfo,
    EngineType,
    IPCCacheServerKey,
    LayoutHints,
    TensorMetadata,
)
from lmcache.server.app import Server
from server_util import local_config

NB, BS, NH, HS, LAYERS = 64, 16, 2, 32, 2
CHUNK = 256


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(local_config())
    srv.startup()
    try:
        yield srv
    finally:
        srv.shutdown()


def _client(srv: Server) -> MPClient:
    return MPClient(f"tcp://127.0.0.1:{srv.zmq_port}", timeout=5)


class Worker:
    """A fake CPU worker: per-layer KV tensors [2, NB, BS, NH, HS] fp16 in POSIX SHM."""

    def __init__(self) -> None:
        self.shms = [
            shared_memory.SharedMemory(create=True, size=2 * NB * BS * NH * HS * 2) for _ in range(LAYERS)
        ]
        self.kv = [np.ndarray((2, NB, BS, NH, HS), dtype=np.float16, buffer=s.buf) for s in self.shms]
        rng = np.random.default_rng(0)
        for t in self.kv:
            t[:] = rng.standard_normal(t.shape).astype(np.float16)

    def handles(self) -> list[CpuShmIPCData]:
        out = []
        for s, t in zip(self.shms, self.kv, strict=True):
            meta = TensorMetadata(
                dtype="float16",
                shape=tuple(t.shape),
                stride=tuple(x // 2 for x in t.strides),
                storage_offset=0,
                device_uuid="cpu",
            )
            out.append(CpuShmIPCData(version=1, metadata=meta, shm_name="/" + s.name, nbytes=s.size))
        return out

    def register(self, client: MPClient, instance_id: int = 7) -> None:
        client.call(
            "register_kv_cache",
            instance_id,
            self.handles(),
            "test/model",
            1,
            EngineType.VLLM,
            LayoutHints(kv_layout="NHD"),
            [EngineGroupInfo(engine_group_id=0, layer_indices=tuple(range(LAYERS)), tokens_per_block=BS)],
        )

    def close(self) -> None:
        del self.kv
        for s in self.shms:
            s.close()
            s.unlink()


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    try:
        yield w
    finally:
        w.close()


def key(
    tokens: list[int], request_id: str, worker_id: int | None = 0, end: int | None = None
) -> IPCCacheServerKey:
    return IPCCacheServerKey(
        model_name="test/model",
        world_size=1,
        worker_id=worker_id,
        token_ids=tokens,
        start=0,
        end=len(tokens) if end is None else end,
        request_id=request_id,
        num_kv_readers=1,
    )


def blocks(first: int, n_tokens: int) -> list[list[int]]:
    return [list(range(first, first + n_tokens // BS))]


def test_simple_ops_by_id_and_name(server: Server) -> None:
    with _client(server) as c:
        assert c.call("noop") == "OK"
        assert c.call("noop", by_name=True) == "OK"
        assert c.call("get_chunk_size") == CHUNK
        assert c.call("ping", None) is True
        assert "error_frames" in c.call("get_experimental")
        assert c.call("query_prefetch_status", "nope") == 0
        hello = c.hello()
        assert hello.enabled == ["error_frames"] and hello.chunk_size == CHUNK
        assert "lmcache_driven" in hello.transfer_modes


def test_store_lookup_retrieve_round_trip(server: Server, worker: Worker) -> None:
    tokens = list(range(1000, 1000 + 2 * CHUNK + 5))  # 2 full chunks + a partial tail
    with _client(server) as c:
        worker.register(c)
        c.call("lookup", key(tokens, "cold", worker_id=None), 1)
        assert c.call("query_prefetch_status", "cold") == 0
        c.call("end_session", "cold")
        handle, ok = c.call("store", key(tokens, "cold"), 7, blocks(0, 2 * CHUNK), b"stub_ipc_handle")
        assert ok is True and handle == b"stub_ipc_handle"
        c.call("lookup", key(tokens, "warm", worker_id=None), 1)
        assert c.call("wait_prefetch_status", "warm", 1.0) == 2
        # Retrieve into other blocks, then compare the bytes block for block.
        _, ok = c.call("retrieve", key(tokens, "warm"), 7, blocks(32, 2 * CHUNK), b"x", 0)
        assert ok is True
        c.call("end_session", "warm")
        for t in worker.kv:
            np.testing.assert_array_equal(t[:, 32:64], t[:, 0:32])
        st = server.facade.status()
        assert st["storage_manager"]["l1_manager"]["read_locked_count"] == 0
        assert st["storage_manager"]["l1_manager"]["total_object_count"] == 2


def test_store_is_visible_to_the_next_lookup(server: Server, worker: Worker) -> None:
    """LMCache 0.5.6 misses 35-70 % of these (its commit runs after the reply)."""
    with _client(server) as c, _client(server) as scheduler:
        worker.register(c)
        for i in range(30):
            tokens = [i] * CHUNK
            _, ok = c.call("store", key(tokens, f"s{i}"), 7, blocks(0, CHUNK), b"")
            assert ok
            scheduler.call("lookup", key(tokens, f"l{i}", worker_id=None), 1)
            assert scheduler.call("query_prefetch_status", f"l{i}") == 1
            scheduler.call("end_session", f"l{i}")
            c.call("end_session", f"s{i}")


def test_lookups_are_answered_on_the_socket_thread(server: Server, worker: Worker) -> None:
    tokens = list(range(5000, 5000 + 2 * CHUNK))
    stats = server.dispatcher.stats
    with _client(server) as c:
        worker.register(c)
        _, ok = c.call("store", key(tokens, "s"), 7, blocks(0, 2 * CHUNK), b"")
        assert ok
        before = stats.inline
        c.call("lookup", key(tokens, "l", worker_id=None), 1)
        assert c.call("query_prefetch_status", "l") == 2
        c.call("free_lookup_locks", key(tokens, "l", worker_id=None), 1)
        assert stats.inline - before == 3
        assert server.facade.status()["storage_manager"]["l1_manager"]["read_locked_count"] == 0


def test_a_lookup_that_would_wait_goes_to_the_pool(server: Server, worker: Worker) -> None:
    """While a data op holds a session's lock, a lookup on that session must not stall the socket
    thread (every client would wait): it is deferred to the normal pool and answered later."""
    import threading

    tokens = list(range(7000, 7000 + CHUNK))
    with _client(server) as c, _client(server) as other:
        worker.register(c)
        _, ok = c.call("store", key(tokens, "busy"), 7, blocks(0, CHUNK), b"")
        assert ok
        session = server.core.sessions.get("busy")
        deferred = server.dispatcher.stats.deferred
        result: list[Any] = []
        with session.lock:  # what a retrieve on this session holds while it copies
            t = threading.Thread(
                target=lambda: result.append(other.call("lookup", key(tokens, "busy", worker_id=None), 1))
            )
            t.start()
            for _ in range(500):  # the socket thread defers it and keeps serving others
                if server.dispatcher.stats.deferred > deferred:
                    break
                threading.Event().wait(0.01)
            assert server.dispatcher.stats.deferred == deferred + 1
            assert c.call("noop") == "OK"
            assert result == []  # still waiting for the lock, on a pool thread
        t.join(5)
        assert result == [None]
        assert c.call("query_prefetch_status", "busy") == 1
        c.call("end_session", "busy")


def test_full_l1_is_reported_not_dropped(worker: Worker) -> None:
    srv = Server(local_config("--l1-size-gb", "0.001", "--eviction-policy", "noop"))  # ~1 MiB, never evicts
    srv.startup(with_http=False)
    try:
        with _client(srv) as c:
            worker.register(c)
            object_bytes = 2 * LAYERS * CHUNK * NH * HS * 2  # 128 KiB per chunk
            stored = 0
            for i in range(20):
                _, ok = c.call("store", key([i] * CHUNK, f"f{i}"), 7, blocks(0, CHUNK), b"")
                if not ok:
                    break
                stored += 1
            assert 0 < stored < 20
            assert stored * object_bytes <= 1 << 20
            assert srv.core.engine.l1.stats()["allocation_failures"] >= 1
            # With error frames, the same failure names its cause.
            c.hello()
            with pytest.raises(errors.NoSpaceError, match="L1 is full"):
                c.call("store", key([99] * CHUNK, "g"), 7, blocks(0, CHUNK), b"")
    finally:
        srv.shutdown()


def test_bad_input_is_answered_and_the_server_keeps_serving(server: Server) -> None:
    import msgspec

    enc = msgspec.msgpack.encode
    with _client(server) as c:
        # Old peer: a store for an unknown instance gets the op's failure value, not silence.
        _, ok = c.call("store", key([1] * CHUNK, "x"), 12345, blocks(0, CHUNK), b"")
        assert ok is False
        c.hello()
        with pytest.raises(errors.NotFoundError, match="instance 12345"):
            c.call("store", key([1] * CHUNK, "x"), 12345, blocks(0, CHUNK), b"")
        for frames in (
            [enc(5), enc("bogus")],
            [enc(6), enc(11)],
            [enc(7), enc("noop"), enc(1)],  # extra frame
            [enc(8), enc(13)],  # end_session without its argument
            [enc(9), enc(13), enc(12)],  # wrong type
            [b"\xc1", b"\xc1"],  # not msgpack
        ):
            c.send_raw(frames)
            reply = c.recv_raw(2.0)
            assert reply is not None, frames
            assert len(reply) == 4 and reply[2] == b"", reply
            assert msgspec.msgpack.decode(reply[3])["code"]
        assert c.call("noop") == "OK"
    assert sum(server.dispatcher.stats.rejected.values()) >= 6


def test_unregister_unmaps_everything(server: Server, worker: Worker) -> None:
    with _client(server) as c:
        for i in range(5):
            worker.register(c, instance_id=100 + i)
            assert server.facade.status()["shm_mappings"]["live"] == LAYERS
            c.call("unregister_kv_cache", 100 + i)
            assert server.facade.status()["shm_mappings"]["live"] == 0


def _get(srv: Server, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}{path}", timeout=5) as r:
        return json.loads(r.read())


def test_http_frontend(server: Server) -> None:
    assert _get(server, "/healthcheck") == {"status": "healthy"}
    st = _get(server, "/status")
    assert st["is_healthy"] is True and st["chunk_size"] == CHUNK
    assert st["storage_manager"]["l1_eviction_controller"]["eviction_policy"] == "LRU"
    assert _get(server, "/config")["mp"]["chunk_size"] == CHUNK
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/cache/clear", data=b'{"tier":"l1"}', method="POST"
    )
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=5) as r:
        assert b"lmcache_mp_lookup_hit_tokens_total" in r.read()
