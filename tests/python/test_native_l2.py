"""L2 adapters through the Python bindings (lmcache._native.l2): round trips, results handed out
once, eventfds, errors, buffer lifetimes, close."""

from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lmcache import errors
from lmcache._native import keys, l2

SIZE = 64 * 1024


def make(n: int, start: int = 0, salt: str = "", model: str = "org/model") -> keys.KeyList:
    return keys.make_keys([i.to_bytes(16, "big") for i in range(start, start + n)], model, 0, 0, salt)


def spec(kind: str, tmp_path: Path) -> str:
    if kind == "fs_native":
        return json.dumps({"type": "fs_native", "base_path": str(tmp_path / "l2"), "num_workers": 2})
    if kind == "mock":
        return json.dumps({"type": "mock", "max_size_gb": 1, "mock_bandwidth_gb": 0})
    raise AssertionError(kind)


def wait_stores(
    a: l2.Adapter, n_tasks: int, timeout: float = 10.0
) -> dict[int, tuple[bool, list[bool], int]]:
    done: dict[int, tuple[bool, list[bool], int]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < n_tasks:
        for tid, ok, bits, nbytes in a.pop_completed_stores():
            done[tid] = (ok, bits, nbytes)
        if len(done) < n_tasks:
            assert a.wait_fd(a.store_event_fd, max(0.0, deadline - time.monotonic())), "store timed out"
    return done


def wait_result(a: l2.Adapter, fd: int, query, tid: int, timeout: float = 10.0) -> list[bool]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        r = query(tid)
        if r is not None:
            return r  # type: ignore[no-any-return]
        assert a.wait_fd(fd, max(0.0, deadline - time.monotonic())), "task timed out"


@pytest.mark.parametrize("kind", ["fs_native", "mock"])
def test_round_trip_numpy_and_bytearray(kind: str, tmp_path: Path) -> None:
    with l2.create_adapter(spec(kind, tmp_path)) as a:
        assert a.type == kind
        fds = {a.store_event_fd, a.lookup_event_fd, a.load_event_fd}
        assert len(fds) == 3
        k = make(4)
        rng = np.random.default_rng(1)
        src: list[object] = [rng.integers(0, 256, SIZE, dtype=np.uint8) for _ in range(2)]
        src += [bytearray(rng.integers(0, 256, SIZE, dtype=np.uint8).tobytes()) for _ in range(2)]
        tid = a.submit_store(k, src)  # type: ignore[arg-type]
        done = wait_stores(a, 1)
        assert done == {tid: (True, [True] * 4, 4 * SIZE)}
        assert a.pop_completed_stores() == []  # handed out once

        lt = a.submit_lookup_and_lock(make(6))
        assert wait_result(a, a.lookup_event_fd, a.query_lookup_result, lt) == [True] * 4 + [False] * 2
        assert a.query_lookup_result(lt) is None
        a.submit_unlock(k)

        out: list[object] = [np.zeros(SIZE, np.uint8), np.zeros((16, SIZE // 16), np.uint8)]
        out += [bytearray(SIZE), memoryview(bytearray(SIZE))]
        t = a.submit_load(k, out)  # type: ignore[arg-type]
        assert wait_result(a, a.load_event_fd, a.query_load_result, t) == [True] * 4
        assert a.query_load_result(t) is None
        for s, o in zip(src, out, strict=True):
            assert bytes(memoryview(s)) == bytes(memoryview(o))  # type: ignore[arg-type]

        # A miss and a wrong-size buffer are 0 bits.
        t = a.submit_load(make(2, start=3), [bytearray(SIZE), bytearray(SIZE)])
        assert wait_result(a, a.load_event_fd, a.query_load_result, t) == [True, False]
        t = a.submit_load(make(1), [bytearray(SIZE + 1)])
        assert wait_result(a, a.load_event_fd, a.query_load_result, t) == [False]
        assert a._pinned_tasks == 0


def test_eventfd_fires_and_timeout(tmp_path: Path) -> None:
    with l2.create_adapter(spec("fs_native", tmp_path)) as a:
        assert a.wait_fd(a.load_event_fd, 0.05) is False  # nothing pending
        t0 = time.monotonic()
        assert a.wait_fd(a.store_event_fd, 0.1) is False
        assert time.monotonic() - t0 >= 0.09
        tid = a.submit_store(make(1), [bytearray(b"x" * 100)])
        assert a.wait_fd(a.store_event_fd, 5.0) is True
        assert a.wait_fd(a.store_event_fd, 0.0) is False  # drained
        assert [r[0] for r in a.pop_completed_stores()] == [tid]
        with pytest.raises(errors.InvalidArgumentError, match="not an event fd"):
            a.wait_fd(0, 0.0)


def test_wait_fd_releases_the_gil(tmp_path: Path) -> None:
    with l2.create_adapter(spec("fs_native", tmp_path)) as a:
        ticks = 0
        stop = threading.Event()

        def spin() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1

        th = threading.Thread(target=spin)
        th.start()
        try:
            a.wait_fd(a.load_event_fd, 0.3)
        finally:
            stop.set()
            th.join()
        assert ticks > 1000


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "JSON"),
        ('{"base_path": "/tmp/x"}', "type"),
        ('{"type": "nope"}', "unknown L2 adapter type 'nope'"),
        ('{"type": "fs_native"}', "base_path"),
        ('{"type": "fs_native", "base_path": "/tmp/x", "num_workers": "4"}', "num_workers"),
        ('{"type": "mock", "bogus": 1}', "bogus"),
    ],
)
def test_bad_specs(text: str, match: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=match) as info:
        l2.create_adapter(text)
    assert "\n" not in str(info.value)


def test_unwritable_base_path_is_io_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.StorageIOError, match="base_path"):
        l2.create_adapter(json.dumps({"type": "fs_native", "base_path": str(blocker / "sub")}))


def test_bad_buffers(tmp_path: Path) -> None:
    with l2.create_adapter(spec("mock", tmp_path)) as a:
        with pytest.raises(errors.InvalidArgumentError, match="not writable"):
            a.submit_load(make(1), [b"x" * 10])
        with pytest.raises(errors.InvalidArgumentError, match="buffer protocol"):
            a.submit_store(make(1), ["text"])  # type: ignore[list-item]
        with pytest.raises(errors.InvalidArgumentError, match="C-contiguous"):
            a.submit_store(make(1), [memoryview(np.zeros((8, 8), np.uint8)[:, ::2])])  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidArgumentError, match="single buffer"):
            a.submit_store(make(1), bytearray(10))  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidArgumentError):
            a.submit_store(make(2), [bytearray(10)])  # lengths differ
        with pytest.raises(errors.InvalidArgumentError):
            a.submit_store(make(1), [bytearray(0)])  # empty view
        assert a._pinned_tasks == 0


def test_buffers_outlive_python_references(tmp_path: Path) -> None:
    # Slow link: the tasks are still running when Python drops its references.
    s = json.dumps({"type": "mock", "max_size_gb": 1, "mock_bandwidth_gb": 0, "latency_ms": 150})
    with l2.create_adapter(s) as a:
        k = make(8)
        data = [np.full(SIZE, i, np.uint8) for i in range(8)]
        tid = a.submit_store(k, data)  # type: ignore[arg-type]
        del data
        gc.collect()
        np.ones(8 * SIZE, np.uint8)  # churn the allocator
        assert a._pinned_tasks == 1
        assert wait_stores(a, 1)[tid][0] is True
        assert a._pinned_tasks == 0

        out = [bytearray(SIZE) for _ in range(8)]
        views = [memoryview(o) for o in out]
        t = a.submit_load(k, views)
        del views
        gc.collect()
        assert wait_result(a, a.load_event_fd, a.query_load_result, t) == [True] * 8
        assert [o[0] for o in out] == list(range(8))

        # Dropped entirely, and the adapter closed before completion: no crash, no leak.
        a.submit_load(k, [bytearray(SIZE) for _ in range(8)])
        gc.collect()
        assert a._pinned_tasks == 1
    assert a._pinned_tasks == 0


def test_adapter_dropped_with_tasks_in_flight(tmp_path: Path) -> None:
    s = json.dumps({"type": "mock", "max_size_gb": 1, "mock_bandwidth_gb": 0, "latency_ms": 100})
    a = l2.create_adapter(s)
    a.submit_store(make(4), [bytearray(SIZE) for _ in range(4)])
    del a
    gc.collect()


def test_close_twice_and_after_close(tmp_path: Path) -> None:
    a = l2.create_adapter(spec("fs_native", tmp_path))
    a.close()
    a.close()
    with pytest.raises(errors.UnavailableError):
        a.submit_store(make(1), [bytearray(10)])
    with pytest.raises(errors.UnavailableError):
        a.submit_lookup_and_lock(make(1))
    assert a.status()["healthy"] is False
    assert a.wait_fd(a.store_event_fd, 0.0) is False  # fds stay valid until the object goes


def test_close_completes_queued_tasks(tmp_path: Path) -> None:
    s = json.dumps({"type": "mock", "max_size_gb": 1, "mock_bandwidth_gb": 0.001})  # 1 MiB/s
    a = l2.create_adapter(s)
    tid = a.submit_store(make(4), [bytearray(SIZE) for _ in range(4)])
    a.close()
    results = {r[0]: r for r in a.pop_completed_stores()}
    assert tid in results


def test_list_usage_status_delete(tmp_path: Path) -> None:
    with l2.create_adapter(spec("fs_native", tmp_path)) as a:
        a.submit_store(make(3, model="a/m"), [bytearray(100)] * 3)
        a.submit_store(make(2, start=10, salt="s1", model="b"), [bytearray(50)] * 2)
        wait_stores(a, 2)
        page, cursor = a.list_keys(page_size=2)
        assert len(page) == 2 and cursor
        rest, end = a.list_keys(page_size=10, cursor=cursor)
        assert end == "" and len(page) + len(rest) == 5
        names = [n for n, _ in page + rest]
        assert names == sorted(names)
        assert all(size in (50, 100) for _, size in page + rest)
        only_a, _ = a.list_keys(model_name="a/m")
        assert len(only_a) == 3 and all(n.startswith("a-SEP-m@") for n, _ in only_a)
        assert (tmp_path / "l2" / f"{only_a[0][0]}.data").stat().st_size == 100
        with pytest.raises(errors.InvalidArgumentError):
            a.list_keys(page_size=0)
        with pytest.raises(errors.InvalidArgumentError):
            a.list_keys(cursor="\x01garbage")

        u = a.usage()
        assert u == {
            "total_bytes": 400,
            "capacity_bytes": 0,
            "objects": 5,
            "bytes_by_salt": {"": 300, "s1": 100},
        }
        st = a.status()
        assert st["healthy"] is True and st["type"] == "fs_native" and st["message"] == ""
        assert st["counters"]["stored_objects"] == 5 and st["counters"]["stored_bytes"] == 400
        assert st["details"]["base_path"] == str(tmp_path / "l2")
        assert isinstance(st["pending_tasks"], int)

        assert a.delete(make(3, model="a/m")) == 3
        assert a.usage()["objects"] == 2
        assert a.status()["counters"]["deleted_objects"] == 3


def test_adapter_types() -> None:
    types = l2.adapter_types()
    assert types == sorted(types)
    assert {"fs", "fs_native", "mock", "fault_inject"} <= set(types)


def test_corruption_is_a_miss(tmp_path: Path) -> None:
    inner = json.loads(spec("fs_native", tmp_path))
    s = json.dumps({"type": "fault_inject", "inner": inner, "corrupt_rate": 1.0, "seed": 3})
    with l2.create_adapter(s) as a:
        k = make(2)
        a.submit_store(k, [bytearray(b"a" * SIZE)] * 2)
        wait_stores(a, 1)
        t = a.submit_load(k, [bytearray(SIZE), bytearray(SIZE)])
        assert wait_result(a, a.load_event_fd, a.query_load_result, t) == [False, False]
        assert a.status()["counters"]["load_misses"] == 2
