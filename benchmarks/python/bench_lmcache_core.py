"""Core micro-benchmarks of the REAL LMCache 0.5.6, to set next to ours.

Run it INSIDE the LMCache 0.5.6 venv (scripts/lmcache-venv.sh), never with our package:

    LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1 LMCACHE_DISABLE_BANNER=1 \\
        /opt/lmcache-0.5.6-venv/bin/python benchmarks/python/bench_lmcache_core.py --bench all

It mirrors benchmarks/cpp/bench_{allocator,index,metadata,copy}.cc with the same parameters
where Python allows. The components measured are the ones the 0.5.6 multiprocess (MP) server
uses for its L1 on a CPU-only host:

* L1 manager: ``lmcache.v1.distributed.l1_manager.L1Manager`` (object states, staging,
  TTL read/write locks from ``lmcache_native.TTLLock``). Every public method holds one
  global ``threading.Lock``: it is thread-safe, so the index benchmark uses 2 threads like
  ours (all Python, so the GIL serialises them anyway).
* Its memory: ``L1MemoryManager`` -> ``MixedMemoryAllocator`` (``--l1-use-lazy`` is switched
  off on CPU because pinning is unsupported, and the MP server's ``--shm-name`` default is
  "", so no SHM) -> ``TensorMemoryAllocator`` -> ``AddressManager`` (first-fit over a
  ``SortedList`` of free blocks keyed by address, coalescing on free). The whole L1 buffer is
  allocated and zero-filled (committed) at start.
* Eviction: the MP server's ``L1EvictionController`` registers an ``L1EvictionPolicy``
  listener around ``LRUEvictionPolicy`` (an ``OrderedDict`` of keys); we register the same
  listener (without the controller's thread), as our L1 store always runs its LRU hooks.
* Per-object metadata: an ``ObjectKey`` (frozen dataclass), an ``L1ObjectState`` dataclass,
  two ``TTLLock``s, a ``TensorMemoryObj`` + ``MemoryObjMetadata`` + a torch tensor view, the
  dict entries, and the LRU ``OrderedDict`` entry.
* Put copy: ``memory_obj.tensor.copy_(chunk)`` (torch), as the MP server's CPU store path
  (``multiprocess/modules/server_transfer.py``) does.

The event bus stays at its default (disabled, as the MP server runs without
``--enable-observability``); LMCache logging is raised to ERROR so that its per-failure
warnings (allocation failures in the fragmentation test) do not cost time. Both favour LMCache.

Each benchmark prints a table and ends with one line ``RESULT_JSON {...}``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import random
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Before anything imports lmcache: no usage reporting, no banner, quiet logs.
os.environ.setdefault("LMCACHE_TRACK_USAGE", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("LMCACHE_DISABLE_BANNER", "1")
os.environ.setdefault("LMCACHE_LOG_LEVEL", "ERROR")

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
IMPL = "lmcache-0.5.6"


class MissingApi(RuntimeError):
    """An LMCache API this benchmark needs is not there (wrong version?)."""


def load_lmcache() -> dict[str, Any]:
    """Import the LMCache 0.5.6 pieces we need; raise MissingApi with a clear message."""
    names: dict[str, Any] = {}
    try:
        import importlib.metadata as md

        names["version"] = md.version("lmcache")
    except Exception as e:
        raise MissingApi(f"lmcache is not installed in this interpreter ({sys.executable}): {e}") from e
    if names["version"] != "0.5.6":
        print(f"warning: expected lmcache 0.5.6, found {names['version']}", file=sys.stderr)
    wanted = [
        ("torch", None),
        ("lmcache.v1.memory_management", "AddressManager"),
        ("lmcache.v1.memory_allocators.mixed_memory_allocator", "MixedMemoryAllocator"),
        ("lmcache.v1.distributed.config", "L1MemoryManagerConfig"),
        ("lmcache.v1.distributed.config", "L1ManagerConfig"),
        ("lmcache.v1.distributed.l1_manager", "L1Manager"),
        ("lmcache.v1.distributed.api", "ObjectKey"),
        ("lmcache.v1.distributed.api", "MemoryLayoutDesc"),
        ("lmcache.v1.distributed.error", "L1Error"),
        ("lmcache.v1.distributed.eviction", "L1EvictionPolicy"),
        ("lmcache.v1.distributed.eviction_policy.lru", "LRUEvictionPolicy"),
    ]
    import importlib

    for module, attr in wanted:
        try:
            mod = importlib.import_module(module)
        except Exception as e:
            raise MissingApi(f"cannot import {module} from lmcache {names['version']}: {e}") from e
        if attr is None:
            names[module] = mod
            continue
        if not hasattr(mod, attr):
            raise MissingApi(f"{module}.{attr} not found in lmcache {names['version']}")
        names[attr] = getattr(mod, attr)
    # LMCache installs its own handlers at import time; silence them (warnings cost time).
    import logging

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("lmcache"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return names


# ---------------------------------------------------------------------------------------------
# helpers


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return ""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile, the same rule as benchmarks/cpp/bench_common.h."""
    if not values:
        return 0.0
    v = sorted(values)
    i = int(p / 100.0 * (len(v) - 1) + 0.5)
    return v[min(i, len(v) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def emit(result: dict[str, Any]) -> None:
    result.setdefault("impl", IMPL)
    result["loadavg"] = loadavg()
    print("RESULT_JSON " + json.dumps(result, separators=(",", ":")), flush=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
    ] + [(n, ctypes.c_size_t) for n in ("fordblks", "keepcost")]


def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def malloc_in_use() -> int | None:
    """glibc heap bytes in use (mallinfo2().uordblks + mmapped chunks), or None."""
    if _LIBC is None:
        return None
    mi = _LIBC.mallinfo2()
    return int(mi.uordblks + mi.hblkhd)


def malloc_trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def chunk_hash(n: int) -> bytes:
    """32 pseudo-random bytes (splitmix-style, as in bench_index.cc)."""
    mask = (1 << 64) - 1
    x = (n * 0x9E3779B97F4A7C15 + 1) & mask
    out = bytearray()
    for _ in range(4):
        x ^= x >> 31
        x = (x * 0xBF58476D1CE4E5B9) & mask
        out += x.to_bytes(8, "little")
    return bytes(out)


def make_l1_manager(
    lm: dict[str, Any], size_bytes: int, align_bytes: int, with_lru: bool = True
) -> tuple[Any, float]:
    """An L1Manager configured like the MP server on CPU; returns (manager, seconds to build)."""
    t0 = time.perf_counter()
    mem_cfg = lm["L1MemoryManagerConfig"](
        size_in_bytes=size_bytes, use_lazy=False, align_bytes=align_bytes, shm_name=""
    )
    manager = lm["L1Manager"](lm["L1ManagerConfig"](memory_config=mem_cfg))
    if with_lru:
        manager.register_listener(lm["L1EvictionPolicy"](lm["LRUEvictionPolicy"]()))
    return manager, time.perf_counter() - t0


def byte_layout(lm: dict[str, Any], nbytes: int) -> Any:
    torch = lm["torch"]
    return lm["MemoryLayoutDesc"](shapes=[torch.Size([nbytes])], dtypes=[torch.uint8])


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(title)
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(
        "  ".join(
            str(h).ljust(w) if i == 0 else str(h).rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for r in rows:
        print(
            "  ".join(
                _fmt(c).ljust(w) if i == 0 else _fmt(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


# ---------------------------------------------------------------------------------------------
# (a) allocator: alloc+free pairs/s and fragmentation


class _AddrAlloc:
    """AddressManager: the metadata-only free-list allocator (our Allocator's counterpart)."""

    def __init__(self, lm: dict[str, Any], region: int, align: int) -> None:
        self.am = lm["AddressManager"](region, align)

    def alloc(self, size: int) -> Any:
        return self.am.allocate(size)  # (address, aligned size); RuntimeError when full

    def free(self, handle: Any) -> None:
        self.am.free(handle[0], handle[1])

    def close(self) -> None:
        pass


class _MixedAlloc:
    """MixedMemoryAllocator, called the way L1MemoryManager calls it (batched, count 1)."""

    def __init__(self, lm: dict[str, Any], region: int, align: int, obj_bytes: int) -> None:
        torch = lm["torch"]
        self.ma = lm["MixedMemoryAllocator"](region, align_bytes=align, shm_name=None)
        self.shapes = [torch.Size([obj_bytes])]
        self.dtypes = [torch.uint8]

    def alloc(self, size: int) -> Any:
        objs = self.ma.batched_allocate(self.shapes, self.dtypes, 1)
        if objs is None:
            raise RuntimeError("out of memory")
        return objs[0]

    def free(self, handle: Any) -> None:
        self.ma.batched_free([handle])

    def close(self) -> None:
        self.ma.close()


def _pair_rate(alloc: Any, pairs: int, size: int) -> float:
    t0 = time.perf_counter()
    for _ in range(pairs):
        alloc.free(alloc.alloc(size))
    return pairs / (time.perf_counter() - t0) / 1e6


def _churn_rate(alloc: Any, pairs: int, size: int, live_n: int = 1024) -> float:
    live = [alloc.alloc(size) for _ in range(live_n)]
    rng = random.Random(5)
    victims = [rng.randrange(live_n) for _ in range(1 << 16)]
    t0 = time.perf_counter()
    for i in range(pairs):
        k = victims[i & 0xFFFF]
        alloc.free(live[k])
        live[k] = alloc.alloc(size)
    dt = time.perf_counter() - t0
    for h in live:
        alloc.free(h)
    return pairs / dt / 1e6


def _fragmentation(lm: dict[str, Any], mixed: bool, ops: int, seed: int) -> dict[str, Any]:
    """Same procedure as bench_allocator.cc (2): 4096 x 2 MiB region, ~90 % occupancy."""
    chunk, chunks, target_frac = 2 * MIB, 4096, 0.90
    region = chunk * chunks
    am = lm["AddressManager"](region, 4096)
    rng = random.Random(seed)

    def next_size() -> int:
        return rng.randint(1, chunk) if (mixed and rng.randrange(5) == 0) else chunk

    live: list[tuple[int, int]] = []
    used = 0
    hwm = 0
    target = int(target_frac * region)

    def drop_random() -> None:
        nonlocal used
        k = rng.randrange(len(live))
        a, s = live[k]
        live[k] = live[-1]
        live.pop()
        am.free(a, s)
        used -= s

    while used < target:
        try:
            a, s = am.allocate(next_size())
        except RuntimeError:
            break
        live.append((a, s))
        used += s
        hwm = max(hwm, a + s)
    attempts = failures = failures_below_free = 0
    t0 = time.perf_counter()
    while attempts < ops:
        if used >= target and live:
            drop_random()
            continue
        nbytes = next_size()
        attempts += 1
        try:
            a, s = am.allocate(nbytes)
        except RuntimeError:
            failures += 1
            if region - used >= am.compute_aligned_size(nbytes):
                failures_below_free += 1
            drop_random()
            continue
        live.append((a, s))
        used += s
        hwm = max(hwm, a + s)
    seconds = time.perf_counter() - t0
    blocks = list(am._explicit_list)  # the free list (no public accessor)
    free_bytes = am.get_free_size()
    largest = max((b.size for b in blocks), default=0)
    return {
        "region_bytes": region,
        "attempts": attempts,
        "occupancy": round((region - free_bytes) / region, 4),
        "free_bytes": free_bytes,
        "largest_free_block": largest,
        "largest_over_free": round(largest / free_bytes, 4) if free_bytes else 0.0,
        "failures": failures,
        "failures_with_enough_free_bytes": failures_below_free,
        "num_free_blocks": len(blocks),
        "high_water_mark": hwm,
        "mops_per_s": round(attempts / seconds / 1e6, 5),
    }


def bench_allocator(lm: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    obj = 256 * KIB
    levels: dict[str, Callable[[], Any]] = {
        # Our Allocator is metadata-only over a 64 GiB logical region; so is AddressManager.
        "address_manager": lambda: _AddrAlloc(lm, 64 * GIB, 4096),
        # The object allocator L1 really calls; it owns a real (committed) buffer, so 512 MiB.
        "mixed_allocator": lambda: _MixedAlloc(lm, 512 * MIB, 4096, obj),
    }
    result: dict[str, Any] = {
        "bench": "lmcache_allocator",
        "object_bytes": obj,
        "pairs_per_run": args.pairs,
        "runs": args.runs,
        "allocator_class": "MixedMemoryAllocator -> TensorMemoryAllocator -> AddressManager",
    }
    rows = []
    for name, factory in levels.items():
        alloc = factory()
        try:
            _pair_rate(alloc, max(1, args.pairs // 4), obj)  # warm-up
            pair_rates, churn_rates = [], []
            for _ in range(args.runs):
                pair_rates.append(_pair_rate(alloc, args.pairs, obj))
                churn_rates.append(_churn_rate(alloc, args.pairs, obj))
        finally:
            alloc.close()
        p, c = summary(pair_rates), summary(churn_rates)
        result[f"{name}_pair_mpairs_per_s"] = p
        result[f"{name}_churn_mpairs_per_s"] = c
        rows.append([f"{name} alloc+free", p["median"], p["min"], p["max"], 1.0 / p["median"]])
        rows.append([f"{name} free+alloc, 1024 live", c["median"], c["min"], c["max"], 1.0 / c["median"]])
    print_table(
        f"LMCache {lm['version']} allocator: 256 KiB objects, 4 KiB align, median of {args.runs} x "
        f"{args.pairs} pairs",
        ["case", "M pairs/s", "min", "max", "us/pair"],
        rows,
    )
    frag_mixed = _fragmentation(lm, True, args.frag_ops, 77)
    frag_fixed = _fragmentation(lm, False, args.frag_ops, 78)
    result["frag_mixed"] = frag_mixed
    result["frag_fixed"] = frag_fixed
    print_table(
        f"(2) AddressManager fragmentation: 4096 x 2 MiB region, ~90% occupancy, {args.frag_ops} attempts",
        [
            "sizes",
            "occupancy",
            "free MiB",
            "largest MiB",
            "lg/free",
            "failures",
            "fail<free",
            "blocks",
            "Mops/s",
        ],
        [
            [
                n,
                f["occupancy"],
                f["free_bytes"] / MIB,
                f["largest_free_block"] / MIB,
                f["largest_over_free"],
                f["failures"],
                f["failures_with_enough_free_bytes"],
                f["num_free_blocks"],
                f["mops_per_s"],
            ]
            for n, f in (("mixed", frag_mixed), ("fixed", frag_fixed))
        ],
    )
    return result


# ---------------------------------------------------------------------------------------------
# (b) L1 manager: reserve_write / finish_write / reserve_read / finish_read, one key per call


@dataclass
class _PhaseStats:
    lat_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0


def _index_worker(
    op: Callable[[Any], bool],
    keys: list[Any],
    t: int,
    threads: int,
    barrier: threading.Barrier,
    s: _PhaseStats,
) -> None:
    """Calls op on keys t, t + threads, ... timing each call (as bench_index.cc does)."""
    clock = time.perf_counter_ns
    lat = s.lat_ns
    barrier.wait()
    start = clock()
    for i in range(t, len(keys), threads):
        k = keys[i]
        t0 = clock()
        ok = op(k)
        lat.append(clock() - t0)
        if not ok:
            s.failures += 1
    s.seconds = (clock() - start) / 1e9


def bench_index(lm: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    n, threads, obj = args.keys, args.threads, 256
    success = lm["L1Error"].SUCCESS
    manager, _ = make_l1_manager(lm, n * obj * 2, 256)
    layout = byte_layout(lm, obj)
    key_cls = lm["ObjectKey"]
    keys = [key_cls(chunk_hash=chunk_hash(i), model_name="bench/model", kv_rank=1) for i in range(n)]

    def op_reserve_write(k: Any) -> bool:
        return bool(manager.reserve_write([k], [False], layout)[k][0] == success)

    def op_finish_write(k: Any) -> bool:
        return bool(manager.finish_write([k])[k] == success)

    def op_reserve_read(k: Any) -> bool:
        return bool(manager.reserve_read([k])[k][0] == success)

    def op_finish_read(k: Any) -> bool:
        return bool(manager.finish_read([k])[k] == success)

    phases: list[tuple[str, Callable[[Any], bool]]] = [
        ("reserve_write", op_reserve_write),
        ("finish_write", op_finish_write),
        ("reserve_read", op_reserve_read),
        ("finish_read", op_finish_read),
    ]
    result: dict[str, Any] = {
        "bench": "lmcache_index",
        "keys": n,
        "threads": threads,
        "object_bytes": obj,
        "thread_safe": "yes: one global threading.Lock per L1Manager call (and the GIL)",
    }
    rows = []
    try:
        for name, op in phases:
            stats = [_PhaseStats() for _ in range(threads)]
            barrier = threading.Barrier(threads)
            ths = [
                threading.Thread(target=_index_worker, args=(op, keys, t, threads, barrier, stats[t]))
                for t in range(threads)
            ]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            failures = sum(s.failures for s in stats)
            if failures:
                raise RuntimeError(f"phase {name}: {failures} calls did not return SUCCESS")
            lat_all: list[float] = [float(x) for s in stats for x in s.lat_ns]
            ops = n / max(s.seconds for s in stats)
            p50, p99 = percentile(lat_all, 50), percentile(lat_all, 99)
            result[name] = {"ops_per_s": round(ops), "p50_ns": round(p50), "p99_ns": round(p99)}
            rows.append([name, ops, p50, p99])
    finally:
        manager.close()
    print_table(
        f"LMCache {lm['version']} L1Manager: {n} keys, {threads} threads, one key per call, "
        f"load avg {loadavg().split(' ')[0]}",
        ["op", "ops/s", "p50 ns", "p99 ns"],
        rows,
    )
    return result


# ---------------------------------------------------------------------------------------------
# (c) host memory per resident object


def _admit(lm: dict[str, Any], manager: Any, layout: Any, first: int, count: int, batch: int) -> None:
    key_cls = lm["ObjectKey"]
    success = lm["L1Error"].SUCCESS
    for base in range(first, first + count, batch):
        m = min(batch, first + count - base)
        keys = [
            key_cls(
                chunk_hash=(base + i).to_bytes(8, "little") + bytes(24), model_name="bench/model", kv_rank=1
            )
            for i in range(m)
        ]
        r1 = manager.reserve_write(keys, [False] * m, layout)
        r2 = manager.finish_write(keys)
        if any(v[0] != success for v in r1.values()) or any(v != success for v in r2.values()):
            raise RuntimeError(f"store failed at {base}")


def bench_metadata(lm: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    n, obj, batch, warm = args.objects, 4096, 1024, 1024
    layout = byte_layout(lm, obj)
    # Pass 1: RSS and glibc heap (no tracemalloc: its own tables would count).
    manager, _ = make_l1_manager(lm, (n + warm) * obj, 4096)
    try:
        _admit(lm, manager, layout, 1 << 40, warm, batch)  # warm-up, as ours interns its symbols
        gc.collect()
        malloc_trim()
        rss0, heap0 = rss_bytes(), malloc_in_use()
        _admit(lm, manager, layout, 0, n, batch)
        gc.collect()
        rss1, heap1 = rss_bytes(), malloc_in_use()
        resident = manager.report_status()["total_object_count"] - warm
    finally:
        manager.close()
    # Pass 2: what the Python allocator holds (tracemalloc; slow, so fewer objects).
    traced: float | None = None
    nt = min(n, args.tracemalloc_objects)
    if nt > 0:
        manager, _ = make_l1_manager(lm, (nt + warm) * obj, 4096)
        try:
            _admit(lm, manager, layout, 1 << 40, warm, batch)
            gc.collect()
            tracemalloc.start()
            t0, _ = tracemalloc.get_traced_memory()
            _admit(lm, manager, layout, 0, nt, batch)
            gc.collect()
            t1, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            traced = (t1 - t0) / nt
        finally:
            manager.close()
    per_rss = (rss1 - rss0) / n
    per_heap = (heap1 - heap0) / n if heap0 is not None and heap1 is not None else None
    rows = [["RSS delta (primary: everything, incl. pymalloc arenas)", per_rss]]
    if per_heap is not None:
        rows.append(["glibc malloc in use (C/C++ heap: TTLLock, torch views...)", per_heap])
    if traced is not None:
        rows.append([f"tracemalloc (Python allocations only, {nt} objects)", traced])
    print_table(
        f"LMCache {lm['version']} L1 metadata: {resident} resident objects of {obj} B, LRU listener",
        ["measure", "bytes/object"],
        rows,
    )
    return {
        "bench": "lmcache_metadata",
        "objects": n,
        "resident_objects": resident,
        "policy": "LRU",
        "bytes_per_object": round(per_rss, 1),
        "rss_bytes_per_object": round(per_rss, 1),
        "malloc_bytes_per_object": None if per_heap is None else round(per_heap, 1),
        "tracemalloc_bytes_per_object": None if traced is None else round(traced, 1),
        "tracemalloc_objects": nt,
    }


# ---------------------------------------------------------------------------------------------
# (d) copy of a 32 MiB object into L1 memory vs plain numpy / torch copies


def bench_copy(lm: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    torch = lm["torch"]
    obj, live_max, warmup, reps = 32 * MIB, 8, 5, max(20, args.reps)
    default_threads = torch.get_num_threads()
    src = torch.empty(obj, dtype=torch.uint8)
    src.fill_(0x5A)
    dst = torch.empty(obj, dtype=torch.uint8)
    dst.fill_(0)
    src_np, dst_np = src.numpy(), dst.numpy()
    layout = byte_layout(lm, obj)
    success = lm["L1Error"].SUCCESS
    # 1 GiB L1, built as the MP server builds it (eager, zero-filled): time it too.
    manager, build_s = make_l1_manager(lm, 1 * GIB, 4096)
    mixed = _MixedAlloc(lm, 512 * MIB, 4096, obj)
    key_cls = lm["ObjectKey"]
    rng = random.Random(1234)
    live_keys: list[Any] = []
    live_objs: list[Any] = []
    counter = 0

    def l1_put() -> float:
        """reserve_write + tensor.copy_ + finish_write, churning 8 live objects (like ours)."""
        nonlocal counter
        if len(live_keys) >= live_max:
            k = rng.randrange(len(live_keys))
            manager.delete([live_keys[k]])
            live_keys[k] = live_keys[-1]
            live_keys.pop()
        key = key_cls(chunk_hash=chunk_hash(counter), model_name="bench/model", kv_rank=1)
        counter += 1
        t0 = time.perf_counter()
        err, mem = manager.reserve_write([key], [False], layout)[key]
        if err != success:
            raise RuntimeError(f"reserve_write failed: {err}")
        mem.tensor.copy_(src)
        manager.finish_write([key])
        t1 = time.perf_counter()
        live_keys.append(key)
        return t1 - t0

    def alloc_put() -> float:
        """Allocator-level put (allocate + copy), the scope of ours 'arena put'."""
        if len(live_objs) >= live_max:
            k = rng.randrange(len(live_objs))
            mixed.free(live_objs[k])
            live_objs[k] = live_objs[-1]
            live_objs.pop()
        t0 = time.perf_counter()
        o = mixed.alloc(obj)
        o.tensor.copy_(src)
        t1 = time.perf_counter()
        live_objs.append(o)
        return t1 - t0

    def timed(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    cases: dict[str, list[float]] = {
        "numpy_copyto": [],
        "torch_copy": [],
        "torch_copy_1t": [],
        "l1_put": [],
        "l1_put_1t": [],
        "alloc_put": [],
    }
    try:
        for i in range(warmup + reps):
            sample = {
                "numpy_copyto": timed(lambda: np.copyto(dst_np, src_np)),
                "torch_copy": timed(lambda: dst.copy_(src)),
                "l1_put": l1_put(),
                "alloc_put": alloc_put(),
            }
            torch.set_num_threads(1)
            try:
                sample["torch_copy_1t"] = timed(lambda: dst.copy_(src))
                sample["l1_put_1t"] = l1_put()
            finally:
                torch.set_num_threads(default_threads)
            if i >= warmup:
                for name, secs in sample.items():
                    cases[name].append(obj / secs / 1e9)
    finally:
        mixed.close()
        manager.close()
    res = {name: summary(v) for name, v in cases.items()}
    labels = {
        "numpy_copyto": "numpy copyto (pre-faulted, 1 thread)",
        "torch_copy": f"torch copy_ (pre-faulted, {default_threads} threads)",
        "torch_copy_1t": "torch copy_ (pre-faulted, 1 thread)",
        "l1_put": f"L1Manager put (reserve+copy_+finish, {default_threads}T)",
        "l1_put_1t": "L1Manager put, torch 1 thread",
        "alloc_put": f"allocator put (alloc + copy_, {default_threads}T)",
    }
    print_table(
        f"LMCache {lm['version']} copy: 32 MiB objects, {reps} reps after {warmup} warm-up, GB/s = 1e9 B/s",
        ["case", "median", "min", "max"],
        [[labels[k], v["median"], v["min"], v["max"]] for k, v in res.items()],
    )
    ratio = res["l1_put"]["median"] / res["numpy_copyto"]["median"]
    print(
        f"L1 put / numpy copy median ratio: {ratio:.3f}; L1 build (eager, zero-filled 1 GiB): {build_s:.3f} s"
    )
    out: dict[str, Any] = {
        "bench": "lmcache_copy",
        "object_bytes": obj,
        "reps": reps,
        "torch_threads": default_threads,
    }
    for name, v in res.items():
        out[f"{name}_gbps"] = v
    out["ratio_l1_put_numpy"] = round(ratio, 4)
    out["l1_build_seconds_per_gib"] = round(build_s, 4)
    return out


# ---------------------------------------------------------------------------------------------

BENCHES: dict[str, Callable[[dict[str, Any], argparse.Namespace], dict[str, Any]]] = {
    "allocator": bench_allocator,
    "index": bench_index,
    "metadata": bench_metadata,
    "copy": bench_copy,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", choices=[*BENCHES, "all"], default="all")
    p.add_argument("--keys", type=int, default=100_000, help="index: distinct keys (ours: 1 M)")
    p.add_argument("--threads", type=int, default=2, help="index: threads (ours: 2)")
    p.add_argument("--pairs", type=int, default=10_000, help="allocator: pairs per run (ours: 4 M)")
    p.add_argument("--runs", type=int, default=3, help="allocator: runs, median reported (ours: 5)")
    p.add_argument(
        "--frag-ops",
        type=int,
        default=50_000,
        help="allocator: fragmentation attempts (ours: argv[1], default 1 M)",
    )
    p.add_argument("--objects", type=int, default=100_000, help="metadata: resident objects (ours: 1 M)")
    p.add_argument(
        "--tracemalloc-objects",
        type=int,
        default=20_000,
        help="metadata: objects in the (slow) tracemalloc pass; 0 skips it",
    )
    p.add_argument("--reps", type=int, default=40, help="copy: timed reps (ours: 40)")
    args = p.parse_args(argv)
    names = list(BENCHES) if args.bench == "all" else [args.bench]
    try:
        lm = load_lmcache()
    except MissingApi as e:
        print(f"bench_lmcache_core: {e}", file=sys.stderr)
        for name in names:
            emit({"bench": f"lmcache_{name}", "error": str(e)})
        return 2
    rc = 0
    for name in names:
        try:
            result = BENCHES[name](lm, args)
        except (MissingApi, AttributeError, TypeError, ImportError) as e:
            # An API of another shape than 0.5.6's: say which, keep going.
            msg = f"LMCache API mismatch in '{name}': {type(e).__name__}: {e}"
            print(f"bench_lmcache_core: {msg}", file=sys.stderr)
            result, rc = {"bench": f"lmcache_{name}", "error": msg}, 2
        except RuntimeError as e:
            print(f"bench_lmcache_core: {name} failed: {e}", file=sys.stderr)
            result, rc = {"bench": f"lmcache_{name}", "error": str(e)}, 1
        result["lmcache_version"] = lm["version"]
        emit(result)
    return rc


if __name__ == "__main__":
    sys.exit(main())
