"""The transfer module through the bindings: SHM registrations, the L1 object
format, STORE/RETRIEVE round trips through an L1Store, checksums, cleanup."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import threading
from collections.abc import Iterator
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest

from lmcache import errors
from lmcache._native import keys, l1, transfer

MiB = 1 << 20
_counter = itertools.count()

# Geometry of the tests: classical K/V layers plus MLA layers (the bench's
# "(2,NB,BS,NH,HS):float16:L;(1,NB,BS,1,HS):...:L" spec).
NB, BS, NH, HS = 32, 4, 2, 16
CHUNK = 8  # tokens per chunk: 2 blocks


class Segment:
    """A POSIX SHM segment named like a 0.5.6 client's, unlinked at teardown."""

    def __init__(self, nbytes: int) -> None:
        self.name = f"lmcache_kv_{os.getpid()}_{next(_counter)}t"
        self.shm = shared_memory.SharedMemory(name=self.name, create=True, size=nbytes)
        self.nbytes = nbytes
        self.views: list[np.ndarray[Any, Any]] = []

    def array(self, shape: tuple[int, ...], dtype: Any, offset_bytes: int = 0) -> np.ndarray[Any, Any]:
        a: np.ndarray[Any, Any] = np.ndarray(shape, dtype=dtype, buffer=self.shm.buf, offset=offset_bytes)
        self.views.append(a)
        return a

    def close(self) -> None:
        self.views.clear()
        self.shm.close()
        self.shm.unlink()


def descriptor(seg: Segment, a: np.ndarray[Any, Any], dtype: str, offset_bytes: int = 0) -> dict[str, Any]:
    item = a.itemsize
    return {
        "shm_name": "/" + seg.name,
        "nbytes": seg.nbytes,
        "dtype": dtype,
        "shape": list(a.shape),
        "stride": [s // item for s in a.strides],
        "storage_offset": offset_bytes // item,
    }


class Worker:
    """A fake CPU worker: 3 float16 K/V layers in one segment, 2 bf16 MLA
    layers (numpy holds them as uint16) in another."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        kv_layer = 2 * NB * BS * NH * HS * 2
        self.kv_seg = Segment(3 * kv_layer)
        self.mla_seg = Segment(2 * NB * BS * HS * 2)
        self.kv = [self.kv_seg.array((2, NB, BS, NH, HS), np.float16, i * kv_layer) for i in range(3)]
        self.mla = [self.mla_seg.array((NB, BS, HS), np.uint16, i * NB * BS * HS * 2) for i in range(2)]
        for a in self.kv:
            a[...] = rng.standard_normal(a.shape).astype(np.float16)
        for m in self.mla:
            m[...] = rng.integers(0, 1 << 16, m.shape, dtype=np.uint16)
        self.descriptors = [
            descriptor(self.kv_seg, a, "float16", i * kv_layer) for i, a in enumerate(self.kv)
        ] + [descriptor(self.mla_seg, m, "bfloat16", i * NB * BS * HS * 2) for i, m in enumerate(self.mla)]

    def register(self) -> transfer.KvCacheRegistration:
        return transfer.KvCacheRegistration.open(self.descriptors, CHUNK)

    def expected_object(self, blocks: list[int]) -> bytes:
        """The documented object format, built with numpy: per kernel group
        [kv_size][layers][tokens][heads*head_size]."""
        kv = np.stack([a[:, blocks].reshape(2, len(blocks) * BS, NH * HS) for a in self.kv], axis=1)
        mla = np.stack([m[blocks].reshape(len(blocks) * BS, HS) for m in self.mla])[None]
        return kv.tobytes() + mla.tobytes()

    def close(self) -> None:
        self.kv.clear()
        self.mla.clear()
        self.kv_seg.close()
        self.mla_seg.close()


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker(1)
    yield w
    w.close()


def make_keys(n: int, start: int = 0) -> keys.KeyList:
    hs = [hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(start, start + n)]
    return keys.make_keys(hs, "org/model", keys.pack_kv_rank(1, 0, 1, 0), 0)


def l1_store(capacity: int = 16 * MiB) -> l1.L1Store:
    return l1.L1Store(capacity, lazy=False, huge_pages=False)


def test_registration_layout(worker: Worker) -> None:
    with worker.register() as reg:
        assert reg.num_layers == 5
        assert reg.num_kernel_groups == 2 and reg.num_object_groups == 1
        kv_region = 2 * 3 * CHUNK * NH * HS * 2
        mla_region = 1 * 2 * CHUNK * HS * 2
        assert reg.object_bytes() == kv_region + mla_region
        d = reg.describe()
        assert [g["layers"] for g in d["kernel_groups"]] == [[0, 1, 2], [3, 4]]
        assert d["object_groups"][0]["region_offsets"] == [0, kv_region]
        assert d["layers"][0]["format"] == "NL_X_TWO_NB_BS_NH_HS"
        assert d["layers"][3]["format"] == "NL_X_NB_BS_HS" and d["layers"][3]["dtype"] == "bfloat16"
        assert sorted(reg.shm_names) == sorted(["/" + worker.kv_seg.name, "/" + worker.mla_seg.name])
        assert reg.mapped_bytes == worker.kv_seg.nbytes + worker.mla_seg.nbytes
    assert reg.closed


def test_gather_writes_the_object_format(worker: Worker) -> None:
    blocks = [7, 3, 30, 12]  # 2 chunks of 2 blocks
    with worker.register() as reg:
        out = [bytearray(reg.object_bytes()) for _ in range(2)]
        reg.gather([blocks, blocks], out)
        assert bytes(out[0]) == worker.expected_object(blocks[:2])
        assert bytes(out[1]) == worker.expected_object(blocks[2:])
        # numpy arrays work as objects too; None skips a chunk.
        arr = np.zeros(reg.object_bytes(), np.uint8)
        reg.gather([blocks, blocks], [None, arr.data], pool=transfer.CopyPool(2))
        assert arr.tobytes() == worker.expected_object(blocks[2:])


def test_store_and_retrieve_through_l1(worker: Worker) -> None:
    s = l1_store()
    ks = make_keys(2)
    src, dst = [1, 2, 3, 4], [20, 21, 22, 23]
    with worker.register() as reg:
        assert transfer.store_chunks(s, reg, ks, [src, src], tag=7) == (2, 0)
        assert s.prefix_hits(ks) == 2
        assert s.stats()["staging_objects"] == 0
        buf = bytearray(2 * reg.object_bytes())
        assert s.get_prefix(ks, buf) == 2
        assert bytes(buf) == worker.expected_object(src[:2]) + worker.expected_object(src[2:])

        for a in worker.kv:
            a[:, dst] = 0
        for m in worker.mla:
            m[dst] = 0
        assert transfer.retrieve_chunks(s, reg, ks, [dst, dst], pool=transfer.CopyPool(2)) == 2
        for a in worker.kv:
            np.testing.assert_array_equal(a[:, dst], a[:, src])
        for m in worker.mla:
            np.testing.assert_array_equal(m[dst], m[src])
        assert s.stats()["read_locked_objects"] == 0
        assert transfer.store_chunks(s, reg, ks, [src, src]) == (0, 2)


def test_retrieve_skip_and_lookup_locks(worker: Worker) -> None:
    s = l1_store()
    ks = make_keys(2, start=50)
    src, dst = [5, 6, 7, 8], [9, 10, 11, 12]
    with worker.register() as reg:
        transfer.store_chunks(s, reg, ks, [src, src])
        s.reserve_read_prefix(ks)  # the lookup's locks
        assert s.stats()["read_locked_objects"] == 2
        for a in worker.kv:
            a[:, dst] = 0
        n = transfer.retrieve_chunks(s, reg, ks, [dst, dst], skip_first_n_tokens=6, consume_lookup_locks=True)
        assert n == 2
        assert s.stats()["read_locked_objects"] == 0
        for a in worker.kv:
            assert not a[:, dst[0]].any()  # tokens 0..3 skipped
            assert not a[:, dst[1], :2].any()  # tokens 4, 5 skipped
            np.testing.assert_array_equal(a[:, dst[1], 2:], a[:, src[1], 2:])
            np.testing.assert_array_equal(a[:, dst[2:]], a[:, src[2:]])


def test_checksums_follow_lmcache_056(worker: Worker) -> None:
    """POST /cache/checksums: per chunk, every layer's index_select on its
    block axis, bf16 upcast to fp32, one MD5 (0.5.6 http_apis/cache_api.py)."""
    blocks, per_chunk = [4, 0, 9, 9, 31], 2

    def layer_bytes(li: int, sel: list[int]) -> bytes:
        if li < 3:
            return np.ascontiguousarray(worker.kv[li][:, sel]).tobytes()
        bits = worker.mla[li - 3][sel].astype(np.uint32) << 16
        return bits.view(np.float32).tobytes()

    with worker.register() as reg:
        digests = reg.checksums(blocks, per_chunk)
        layerwise = reg.checksums(blocks, per_chunk, layerwise=True)
    assert len(digests) == 3 and len(layerwise) == 5
    for c in range(3):
        sel = blocks[c * per_chunk : (c + 1) * per_chunk]
        md5 = hashlib.md5()
        for li in range(5):
            b = layer_bytes(li, sel)
            md5.update(b)
            assert layerwise[li][c] == hashlib.md5(b).hexdigest()
        assert digests[c] == md5.hexdigest()


def test_errors(worker: Worker) -> None:
    with pytest.raises(errors.NotFoundError):
        transfer.KvCacheRegistration.open(
            [{**worker.descriptors[0], "shm_name": "/lmcache_kv_1_nope"}], CHUNK
        )
    with pytest.raises(errors.InvalidArgumentError, match="too small"):
        transfer.KvCacheRegistration.open(
            [{**worker.descriptors[0], "nbytes": worker.kv_seg.nbytes * 4}], CHUNK
        )
    with pytest.raises(errors.InvalidArgumentError, match="lacks 'dtype'"):
        transfer.KvCacheRegistration.open(
            [{k: v for k, v in worker.descriptors[0].items() if k != "dtype"}], CHUNK
        )
    with pytest.raises(errors.InvalidArgumentError, match="past the"):
        transfer.KvCacheRegistration.open([{**worker.descriptors[2], "storage_offset": 10**6}], CHUNK)
    with pytest.raises(errors.InvalidArgumentError):
        transfer.KvCacheRegistration.open(worker.descriptors, 6)  # not a multiple of the block size
    d = worker.descriptors[0]
    tup = (d["shm_name"], d["nbytes"], d["dtype"], d["shape"], d["stride"])
    reg = transfer.KvCacheRegistration.open([tup], CHUNK, kv_layout="NHD")
    s = l1_store()
    with pytest.raises(errors.InvalidArgumentError):
        transfer.store_chunks(s, reg, make_keys(1), [0, NB])
    with pytest.raises(errors.InvalidArgumentError):
        transfer.store_chunks(s, reg, make_keys(1), [0])
    with pytest.raises(errors.InvalidArgumentError):
        reg.gather([0, 1], [bytearray(reg.object_bytes() - 1)])
    assert s.stats()["used_bytes"] == 0
    with pytest.raises(errors.NoSpaceError):
        transfer.store_chunks(l1_store(1 * MiB), reg, make_keys(300, 100), list(range(NB)) * 20)
    reg.close()
    with pytest.raises(errors.UnavailableError):
        reg.gather([0, 1], [bytearray(reg.object_bytes())])


def test_close_unmaps_and_leaks_nothing(worker: Worker) -> None:
    count, size = transfer.live_mappings()
    regs = [worker.register() for _ in range(3)]
    assert transfer.live_mappings() == (count + 6, size + 3 * (worker.kv_seg.nbytes + worker.mla_seg.nbytes))
    for r in regs:
        r.close()
        r.close()
    assert transfer.live_mappings() == (count, size)


def test_detect_kv_format() -> None:
    assert transfer.detect_kv_format([2, 8, 16, 4, 64], [8192, 1024, 64, 16, 1]) == "NL_X_TWO_NB_BS_NH_HS"
    assert (
        transfer.detect_kv_format([2, 8, 4, 16, 64], [8192, 1024, 256, 64, 1], "HND")
        == "NL_X_TWO_NB_NH_BS_HS"
    )
    assert transfer.detect_kv_format([8, 16, 576], [9216, 576, 1]) == "NL_X_NB_BS_HS"
    with pytest.raises(errors.InvalidArgumentError):
        transfer.detect_kv_format([8, 16, 4, 64], [4096, 256, 64, 1])


def test_unlink_if_owner_dead() -> None:
    live = shared_memory.SharedMemory(
        name=f"lmcache_kv_{os.getpid()}_{next(_counter)}u", create=True, size=4096
    )
    child = subprocess.Popen(["true"])
    child.wait()
    dead = shared_memory.SharedMemory(
        name=f"lmcache_kv_{child.pid}_{next(_counter)}u", create=True, size=4096
    )
    try:
        assert transfer.unlink_if_owner_dead("/" + live.name) == "owner_alive"
        assert transfer.unlink_if_owner_dead(dead.name) == "unlinked"
        assert transfer.unlink_if_owner_dead(dead.name) == "not_found"
        with pytest.raises(errors.InvalidArgumentError):
            transfer.unlink_if_owner_dead("/not_ours")
    finally:
        live.close()
        live.unlink()
        dead.close()
        # Already unlinked by the server helper; tell the resource tracker.
        from multiprocessing import resource_tracker

        resource_tracker.unregister("/" + dead.name, "shared_memory")


def test_copies_release_the_gil(worker: Worker) -> None:
    """A long gather in one thread must not stop a Python thread."""
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    with worker.register() as reg:
        # One call copying ~100 MB: 30000 chunks into the same object.
        n = 30000
        obj = bytearray(reg.object_bytes())
        blocks = list(range(NB)) * (2 * n // NB)
        t = threading.Thread(target=spin)
        t.start()
        try:
            while ticks == 0:
                pass
            advanced = False
            for _ in range(5):
                before = ticks
                reg.gather([blocks, blocks], [obj] * n)
                if ticks > before:
                    advanced = True
                    break
            assert advanced
        finally:
            stop.set()
            t.join()
