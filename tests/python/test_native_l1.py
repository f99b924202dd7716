"""The L1 store through the Python bindings: data round trips, errors, GIL release."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from lmcache import errors
from lmcache._native import eviction, keys, l1

MiB = 1 << 20


def hashes(n: int, start: int = 0) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(start, start + n)]


def make(n: int, start: int = 0, salt: str = "") -> keys.KeyList:
    return keys.make_keys(hashes(n, start), "org/model", keys.pack_kv_rank(1, 0, 1, 0), 0, salt)


def store(capacity: int = 8 * MiB, policy: str = "LRU", **kw: object) -> l1.L1Store:
    return l1.L1Store(capacity, lazy=False, huge_pages=False, eviction_policy=policy, **kw)  # type: ignore[arg-type]


def test_keylist_shape() -> None:
    k = make(3, salt="t1")
    assert len(k) == 3
    h, model, rank, group, salt = k[0]
    assert h == hashes(1)[0] and model == "org/model" and rank == 0x01000100 and group == 0 and salt == "t1"
    assert k[-1][0] == hashes(3)[2]
    assert k.to_string(0).startswith("org-SEP-model@0x01000100@0@") and k.to_string(0).endswith("@t1")
    assert len(k.slice(1, 10)) == 2
    with pytest.raises(IndexError):
        k[3]


def test_make_keys_rejects_bad_input() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="longer than 32"):
        keys.make_keys([b"x" * 33], "m", 0)
    with pytest.raises(errors.InvalidArgumentError, match="sequence of bytes"):
        keys.make_keys(b"abc", "m", 0)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgumentError):
        keys.pack_kv_rank(256, 0, 1, 0)


def test_put_and_get_prefix_round_trip() -> None:
    s = store()
    k = make(4)
    data = bytes(range(256)) * (4 * 1024)  # 4 objects of 256 KiB
    assert s.put(k, data) == 4
    assert s.put(k, data) == 0  # already resident: first writer wins
    out = bytearray(len(data))
    assert s.get_prefix(k, out) == 4
    assert bytes(out) == data
    st = s.stats()
    assert st["resident_objects"] == 4 and st["read_locked_objects"] == 0
    assert st["used_bytes"] == len(data)


def test_zero_copy_buffers_and_locks() -> None:
    s = store()
    k = make(2)
    bufs = s.reserve_write(k, 8192, tag=7)
    assert all(b is not None for b in bufs)
    for i, b in enumerate(bufs):
        assert b is not None
        b[:] = bytes([i + 1]) * 8192
    assert s.prefix_hits(k) == 0  # staging is invisible
    s.finish_write(k, tag=7)
    views = s.reserve_read_prefix(k, readers=2)
    assert [v[0] for v in views] == [1, 2]
    assert views[0].readonly
    assert s.stats()["read_locked_objects"] == 2
    assert s.finish_read(k) == 2
    assert s.finish_read(k) == 2
    assert s.finish_read(k) == 0


def test_buffers_keep_store_alive() -> None:
    s = store()
    k = make(1)
    s.put(k, b"\x05" * 4096)
    view = s.reserve_read_prefix(k)[0]
    del s
    assert view[0] == 5  # the memoryview holds the store


def test_full_store_evicts_or_reports_no_space() -> None:
    s = store(4 * MiB)
    s.put(make(4), b"\0" * (4 * MiB))
    s.put(make(1, 100), b"\1" * MiB)  # evicts the LRU object synchronously
    assert s.stats()["evicted_objects"] == 1
    assert s.reserve_read_prefix(make(4)) == []  # object 0 (the LRU) was evicted: no prefix
    locked = s.reserve_read(make(4))
    assert locked[0] is None and all(v is not None for v in locked[1:])
    with pytest.raises(errors.NoSpaceError, match="L1 is full"):
        s.put(make(1, 200), b"\2" * (2 * MiB))
    assert s.stats()["allocation_failures"] == 1
    s.finish_read(make(4))


def test_noop_policy_never_drops_silently() -> None:
    s = store(2 * MiB, policy="noop")
    s.put(make(2), b"\0" * (2 * MiB))
    with pytest.raises(errors.NoSpaceError):
        s.put(make(1, 9), b"\0" * MiB)
    assert s.prefix_hits(make(2)) == 2


def test_bad_arguments_raise_one_translated_error() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="unknown eviction policy 'FIFO'"):
        l1.L1Store(MiB, eviction_policy="FIFO")
    s = store()
    with pytest.raises(errors.InvalidArgumentError, match="multiple of len"):
        s.put(make(3), b"\0" * 10)
    with pytest.raises(errors.InvalidArgumentError, match="readers"):
        s.reserve_read_prefix(make(1), readers=0)
    with pytest.raises(errors.NotFoundError):
        s.finish_write(make(1), tag=99)
    with pytest.raises(errors.InvalidArgumentError, match="no quotas"):
        s.set_quota("a", 1)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("not_found", errors.NotFoundError),
        ("no_space", errors.NoSpaceError),
        ("io_error", errors.StorageIOError),
        ("invalid_argument", errors.InvalidArgumentError),
        ("unavailable", errors.UnavailableError),
        ("corruption", errors.CorruptionError),
        ("timeout", errors.LMCacheTimeoutError),
        ("already_exists", errors.AlreadyExistsError),
        ("busy", errors.BusyError),
    ],
)
def test_every_status_code_maps_to_its_class(code: str, cls: type[errors.LMCacheError]) -> None:
    from lmcache import _native

    with pytest.raises(cls, match=r"^boom$") as info:
        _native._raise_status(code, "boom")
    assert isinstance(info.value, errors.LMCacheError)
    assert info.value.code == code


def test_isolated_lru_quotas_from_python() -> None:
    s = store(16 * MiB, policy="IsolatedLRU")
    assert s.supports_quotas
    s.set_quota("paid", 2 * MiB)
    assert s.quotas() == {"paid": 2 * MiB}
    s.put(make(4, salt="paid"), b"\0" * (4 * MiB))
    s.put(make(2, 50, salt="free"), b"\0" * (2 * MiB))
    assert s.usage_by_salt() == {"paid": 4 * MiB, "free": 2 * MiB}
    with eviction.EvictionController(s, 0.8, 0.2, 0.01) as ctl:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and s.usage_by_salt().get("free"):
            time.sleep(0.01)
        assert ctl.healthy
    usage = s.usage_by_salt()
    assert "free" not in usage
    assert usage["paid"] <= 2 * MiB
    s.remove_quota("paid")
    with pytest.raises(errors.NotFoundError):
        s.remove_quota("paid")


def test_controller_stats_and_lifecycle() -> None:
    s = store(4 * MiB)
    ctl = eviction.EvictionController(s, trigger_watermark=0.5, eviction_ratio=0.5, interval_seconds=0.01)
    assert not ctl.healthy
    s.put(make(4), b"\0" * (4 * MiB))
    ctl.run_once()
    st = ctl.stats()
    assert st["evictions_triggered"] == 1 and st["evicted_bytes"] == 2 * MiB
    assert st["eviction_policy"] == "LRU" and st["trigger_watermark"] == 0.5
    ctl.start()
    with pytest.raises(errors.UnavailableError):
        ctl.start()
    ctl.stop()
    with pytest.raises(errors.InvalidArgumentError):
        eviction.EvictionController(s, trigger_watermark=1.5)


def test_copies_release_the_gil() -> None:
    """A big put in one thread must not stop a Python thread from running."""
    s = l1.L1Store(512 * MiB, lazy=False, huge_pages=True)
    data = bytearray(256 * MiB)
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = ticks
        out = bytearray(len(data))
        for i in range(3):
            s.put(make(64, i * 64), data)
            s.get_prefix(make(64, i * 64), out)
        progressed = ticks - before
    finally:
        stop.set()
        t.join()
    assert progressed > 1000
