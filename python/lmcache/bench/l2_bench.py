"""``lmcache bench l2``: throughput / latency of one L2 adapter (store, lookup-and-lock, load),
driven directly through its asynchronous submit / eventfd API (``lmcache._native.l2``).

What a run does (LMCache 0.5.6's ``bench l2``, the seeds' reference): the adapter is created from
one JSON spec; for each exercised operation (store -> lookup -> load, or ``--only`` one) it runs
``warmup + rounds`` rounds. A round issues ``in_flight`` submits of ``num_keys`` keys each from
this thread, then waits for all of them; its duration is the wall-clock time from the first
submit to the last completion. Warmup rounds are dropped from the summary.

Keys: round ``r`` (warmup rounds first) uses key indices ``[r * K, (r + 1) * K)`` with
``K = in_flight * num_keys``, so ``--only store`` then ``--only load`` with the same flags hit the
same keys. A key is ``chunk_hash(idx)`` (16 bytes: splitmix64(idx), then idx) of model
``bench-model``, rank 0. 0.5.6 uses ``idx.to_bytes(16, "big")``; ours is as unique but spread
like a real digest (the first 8 bytes of those are zero, which no real chunk hash has).
Lookup takes ``floor(K * rate)`` keys per round from that range and the rest from a range that
is never stored (from ``(warmup + rounds) * K`` on); the locks it takes are released after the
round (outside the timed window).

Data path: one buffer, aligned to ``--l1-align-bytes`` (at least a page), holds the store and
the load objects of one round; the adapter reads and writes it from its own threads (the GIL is
released while this thread waits on the eventfd). Python works per submit, never per byte.

Data and verification: the object of key ``idx`` is the uint64 sequence
``idx * 0x9E3779B97F4A7C15 + j`` (j = 0, 1, ...), written into the store buffers before each
round (outside the timed window), so an object's content depends only on its key and size: what
an earlier run stored is the same. With ``--no-skip-verify`` the load buffers of the last measured
round are compared with that pattern (numpy, one comparison per round): a key that did not load,
or whose bytes differ, fails the run. Unlike 0.5.6, ``--only load`` can verify too (the pattern
does not need the store buffers).

Differences from 0.5.6, each deliberate: ``--format json`` keeps stdout to the JSON document
(progress goes to stderr); an unknown adapter type is a one-line usage error (0.5.6 crashes with
a traceback); ``--lookup-max-hit-rate`` outside [0, 1] is refused (0.5.6 clamps it); the lookup
locks are released after each round; no ``--l1-use-hugepages`` / ``--flamegraph*``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lmcache import errors
from lmcache.report import Report, Row, Section

if TYPE_CHECKING:  # the native module loads when a run starts, not when the CLI is imported
    from lmcache._native import keys as native_keys
    from lmcache._native import l2 as native_l2

__all__ = [
    "MODEL_NAME",
    "OPERATIONS",
    "BenchOptions",
    "BenchUsageError",
    "L2BenchResult",
    "OpResult",
    "build_report",
    "chunk_hash",
    "expected_objects",
    "run_l2_bench",
]

OPERATIONS = ("store", "lookup", "load")
MODEL_NAME = "bench-model"
STORE_TIMEOUT_S = 120.0
LOOKUP_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 120.0
_PATTERN_MUL = 0x9E3779B97F4A7C15
_U64 = (1 << 64) - 1
_PAGE = 4096
_KB = 1024
_MB = 1024 * 1024  # the "MB" of 0.5.6's summary (MiB)

Log = Callable[[str], None]


class BenchUsageError(errors.InvalidArgumentError):
    """The invocation cannot work (missing / unparsable spec, bad flag values): exit status 2."""


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BenchOptions:
    spec_json: str
    num_keys: int = 32
    in_flight: int = 1
    data_size_kb: int = 256
    l1_align_bytes: int = 1
    rounds: int = 1
    warmup_rounds: int = 1
    lookup_max_hit_rate: float = 0.0
    skip_verify: bool = True
    only: str | None = None

    @property
    def data_size(self) -> int:
        return self.data_size_kb * _KB

    @property
    def keys_per_round(self) -> int:
        return self.in_flight * self.num_keys

    @property
    def total_rounds(self) -> int:
        return self.warmup_rounds + self.rounds

    def runs(self, op: str) -> bool:
        return self.only is None or self.only == op

    def validate(self) -> None:
        for flag, value, low in (
            ("--num-keys", self.num_keys, 1),
            ("--in-flight", self.in_flight, 1),
            ("--data-size-kb", self.data_size_kb, 1),
            ("--l1-align-bytes", self.l1_align_bytes, 1),
            ("--rounds", self.rounds, 1),
            ("--warmup-rounds", self.warmup_rounds, 0),
        ):
            if value < low:
                raise BenchUsageError(f"{flag} must be at least {low}, got {value}")
        if self.data_size % self.l1_align_bytes != 0:
            raise BenchUsageError(
                f"--data-size-kb * 1024 ({self.data_size}) must be a multiple of --l1-align-bytes "
                f"({self.l1_align_bytes})"
            )
        rate = self.lookup_max_hit_rate
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise BenchUsageError(f"--lookup-max-hit-rate must be in [0, 1], got {rate}")
        if self.only is not None and self.only not in OPERATIONS:
            raise BenchUsageError(f"--only must be one of {', '.join(OPERATIONS)}, got {self.only!r}")
        try:
            spec = json.loads(self.spec_json)
        except ValueError as exc:
            raise BenchUsageError(f"--l2-adapter: invalid JSON: {exc}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            raise BenchUsageError('--l2-adapter: the spec must be a JSON object with a string "type"')


# ---------------------------------------------------------------------------------- results


def _nearest_rank(values: list[float], pct: float) -> float:
    """0.5.6's percentile: nearest rank, ``sorted[ceil(pct/100 * n) - 1]``."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s), max(1, math.ceil(pct / 100.0 * len(s)))) - 1]


@dataclass
class OpResult:
    """The measured rounds of one operation (warmup already dropped)."""

    operation: str  # "Store", "Lookup", "Load"
    in_flight: int
    num_keys: int
    data_size_bytes: int  # 0 for lookup
    durations_s: list[float] = field(default_factory=list)  # rounds that completed
    success_counts: list[int] = field(default_factory=list)  # every measured round
    timed_out_rounds: int = 0
    expected_max_hit_rate: float = 0.0
    expected_hit_count: int = 0

    @property
    def keys_per_round(self) -> int:
        return self.in_flight * self.num_keys

    @property
    def attempted_rounds(self) -> int:
        return len(self.durations_s) + self.timed_out_rounds

    @property
    def total_keys(self) -> int:
        return self.keys_per_round * self.attempted_rounds

    @property
    def total_success(self) -> int:
        return sum(self.success_counts)

    @property
    def throughputs_mbps(self) -> list[float]:
        if self.data_size_bytes <= 0:
            return []
        per_round = self.keys_per_round * self.data_size_bytes / _MB
        return [per_round / d if d > 0 else math.inf for d in self.durations_s]

    @property
    def ops_per_sec(self) -> list[float]:
        return [self.keys_per_round / d if d > 0 else math.inf for d in self.durations_s]

    @property
    def actual_hit_rate(self) -> float:
        return self.total_success / self.total_keys if self.total_keys else 0.0

    def duration_ms(self, what: str) -> float:
        d = self.durations_s
        if not d:
            return 0.0
        value = {
            "avg": lambda: statistics.mean(d),
            "min": lambda: min(d),
            "max": lambda: max(d),
            "p50": lambda: _nearest_rank(d, 50.0),
            "p99": lambda: _nearest_rank(d, 99.0),
            "std": lambda: statistics.stdev(d) if len(d) > 1 else 0.0,
        }[what]()
        return value * 1000.0


@dataclass
class L2BenchResult:
    options: BenchOptions
    adapter_type: str = ""
    ops: list[OpResult] = field(default_factory=list)
    verified: bool | None = None  # None: not checked
    verify_failures: int = 0
    fatal: str | None = None  # why the run failed (all rounds of an op timed out)

    @property
    def ok(self) -> bool:
        return self.fatal is None and self.verified is not False


# ---------------------------------------------------------------------------------- data


def _aligned(nbytes: int, align: int) -> npt.NDArray[np.uint8]:
    """A zero-filled (hence pre-faulted) uint8 array whose data pointer is a multiple of ``align``."""
    align = max(align, _PAGE)
    backing = np.zeros(nbytes + align, dtype=np.uint8)
    offset = (-backing.ctypes.data) % align
    out = backing[offset : offset + nbytes]
    assert out.ctypes.data % align == 0
    return out


def chunk_hash(idx: int) -> bytes:
    """The 16-byte chunk hash of key ``idx``: splitmix64(idx) then idx, both big-endian.

    Unique per idx, and uniformly distributed like real chunk hashes (0.5.6 uses
    ``idx.to_bytes(16, "big")``, whose first 8 bytes are all zero).
    """
    z = (idx + 0x9E3779B97F4A7C15) & _U64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    z ^= z >> 31
    return z.to_bytes(8, "big") + (idx & _U64).to_bytes(8, "big")


def _keys(indices: range | list[int]) -> native_keys.KeyList:
    from lmcache._native import keys as native_keys

    return native_keys.make_keys([chunk_hash(i) for i in indices], MODEL_NAME, 0)


def expected_objects(
    first_idx: int, count: int, data_size: int, out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """The objects of keys ``first_idx .. first_idx+count-1`` as a ``(count, data_size)`` uint8 array."""
    words = data_size // 8
    if out is None:
        out = np.empty((count, data_size), dtype=np.uint8)
    view = out.reshape(count, data_size).view(np.uint64)
    bases = (np.arange(first_idx, first_idx + count, dtype=np.uint64) * np.uint64(_PATTERN_MUL))[:, None]
    np.add(np.arange(words, dtype=np.uint64)[None, :], bases, out=view)
    return out


# ---------------------------------------------------------------------------------- runner


class _Bench:
    def __init__(self, opts: BenchOptions, log: Log) -> None:
        self.o = opts
        self.log = log
        self.adapter: native_l2.Adapter | None = None
        k, size = opts.keys_per_round, opts.data_size
        self.store_buf: npt.NDArray[np.uint8] | None = None
        self.load_buf: npt.NDArray[np.uint8] | None = None
        self.store_views: list[list[memoryview]] = []
        self.load_views: list[list[memoryview]] = []
        self.k = k
        self.size = size

    # -- setup

    def _views(self, buf: npt.NDArray[np.uint8]) -> list[list[memoryview]]:
        o = self.o
        rows = buf.reshape(self.k, self.size)
        return [[memoryview(rows[b * o.num_keys + i]) for i in range(o.num_keys)] for b in range(o.in_flight)]

    def round_keys(self, r: int) -> list[native_keys.KeyList]:
        base = r * self.k
        n = self.o.num_keys
        return [_keys(range(base + b * n, base + (b + 1) * n)) for b in range(self.o.in_flight)]

    def lookup_round_keys(self, r: int) -> list[native_keys.KeyList]:
        o = self.o
        hit = int(self.k * o.lookup_max_hit_rate)
        miss = self.k - hit
        idx = list(range(r * hit, (r + 1) * hit))
        miss_origin = o.total_rounds * self.k
        idx += list(range(miss_origin + r * miss, miss_origin + (r + 1) * miss))
        return [_keys(idx[b * o.num_keys : (b + 1) * o.num_keys]) for b in range(o.in_flight)]

    # -- waiting

    def _wait_stores(
        self, a: native_l2.Adapter, ids: list[int], timeout: float
    ) -> dict[int, tuple[bool, int]]:
        pending = set(ids)
        done: dict[int, tuple[bool, int]] = {}
        deadline = time.perf_counter() + timeout
        while pending:
            for tid, _ok, bits, _nbytes in a.pop_completed_stores():
                if tid in pending:
                    pending.discard(tid)
                    done[tid] = (_ok, sum(bits))
            if pending and not a.wait_fd(a.store_event_fd, max(0.0, deadline - time.perf_counter())):
                break
        return done

    def _wait_bitmaps(
        self,
        a: native_l2.Adapter,
        fd: int,
        query: Callable[[int], list[bool] | None],
        ids: list[int],
        timeout: float,
    ) -> dict[int, list[bool]]:
        pending = list(ids)
        done: dict[int, list[bool]] = {}
        deadline = time.perf_counter() + timeout
        while pending:
            still = []
            for tid in pending:
                bits = query(tid)
                if bits is None:
                    still.append(tid)
                else:
                    done[tid] = bits
            pending = still
            if pending and not a.wait_fd(fd, max(0.0, deadline - time.perf_counter())):
                break
        return done

    # -- operations

    def _record(
        self, res: OpResult, r: int, elapsed: float, count: int, timed_out: int, tasks: int, what: str
    ) -> None:
        tag = res.operation
        total = self.k
        measured = r >= self.o.warmup_rounds
        if timed_out:
            self.log(
                f"  [{tag}] Round {r + 1}: TIMEOUT ({tasks - timed_out}/{tasks} tasks completed, "
                f"{what}={count}/{total})"
            )
            if measured:
                res.timed_out_rounds += 1
                res.success_counts.append(count)
            return
        self.log(f"  [{tag}] Round {r + 1}: {elapsed * 1000:.2f} ms, {what}={count}/{total}")
        if measured:
            res.durations_s.append(elapsed)
            res.success_counts.append(count)

    def bench_store(self, a: native_l2.Adapter) -> OpResult:
        o = self.o
        res = OpResult("Store", o.in_flight, o.num_keys, self.size)
        if self.store_buf is None:
            self.store_buf = _aligned(self.k * self.size, o.l1_align_bytes)
            self.store_views = self._views(self.store_buf)
        for r in range(o.total_rounds):
            batches = self.round_keys(r)
            expected_objects(r * self.k, self.k, self.size, out=self.store_buf)
            t0 = time.perf_counter()
            ids = [a.submit_store(kl, views) for kl, views in zip(batches, self.store_views, strict=True)]
            done = self._wait_stores(a, ids, STORE_TIMEOUT_S)
            elapsed = time.perf_counter() - t0
            # 0.5.6 counts the keys of successful tasks; with per-key bits we count stored keys.
            stored = sum(n for _ok, n in done.values())
            self._record(res, r, elapsed, stored, len(ids) - len(done), len(ids), "success_keys")
        return res

    def bench_lookup(self, a: native_l2.Adapter) -> OpResult:
        o = self.o
        per_round_hit = int(self.k * o.lookup_max_hit_rate)
        res = OpResult(
            "Lookup",
            o.in_flight,
            o.num_keys,
            0,
            expected_max_hit_rate=o.lookup_max_hit_rate,
            expected_hit_count=per_round_hit * o.rounds,
        )
        for r in range(o.total_rounds):
            batches = self.lookup_round_keys(r)
            t0 = time.perf_counter()
            ids = [a.submit_lookup_and_lock(kl) for kl in batches]
            done = self._wait_bitmaps(a, a.lookup_event_fd, a.query_lookup_result, ids, LOOKUP_TIMEOUT_S)
            elapsed = time.perf_counter() - t0
            found = sum(sum(bits) for bits in done.values())
            self._record(res, r, elapsed, found, len(ids) - len(done), len(ids), "found")
            for kl in batches:  # release the locks taken (misses are ignored by unlock)
                a.submit_unlock(kl)
        return res

    def bench_load(self, a: native_l2.Adapter) -> tuple[OpResult, list[bool] | None]:
        o = self.o
        res = OpResult("Load", o.in_flight, o.num_keys, self.size)
        if self.load_buf is None:
            self.load_buf = _aligned(self.k * self.size, o.l1_align_bytes)
            self.load_views = self._views(self.load_buf)
        last_bits: list[bool] | None = None
        for r in range(o.total_rounds):
            batches = self.round_keys(r)
            self.load_buf.fill(0)  # fresh buffers every round (outside the timed window)
            t0 = time.perf_counter()
            ids = [a.submit_load(kl, views) for kl, views in zip(batches, self.load_views, strict=True)]
            done = self._wait_bitmaps(a, a.load_event_fd, a.query_load_result, ids, LOAD_TIMEOUT_S)
            elapsed = time.perf_counter() - t0
            loaded = sum(sum(bits) for bits in done.values())
            self._record(res, r, elapsed, loaded, len(ids) - len(done), len(ids), "loaded")
            if r == o.total_rounds - 1:
                last_bits = [] if len(done) < len(ids) else [b for tid in ids for b in done[tid]]
        return res, last_bits

    def verify(self, bits: list[bool]) -> int:
        """Mismatching keys of the last measured load round (not loaded, or wrong bytes)."""
        assert self.load_buf is not None
        first = (self.o.total_rounds - 1) * self.k
        expected = expected_objects(first, self.k, self.size)
        got = self.load_buf.reshape(self.k, self.size)
        same = (got.view(np.uint64) == expected.view(np.uint64)).all(axis=1)
        loaded = np.array(bits if len(bits) == self.k else [False] * self.k, dtype=bool)
        bad = np.flatnonzero(~(same & loaded))
        for i in bad[:10]:
            why = "not loaded" if not loaded[i] else "data mismatch"
            self.log(f"  [Verify] Key {int(i)} (idx {first + int(i)}): MISMATCH ({why})")
        if len(bad) > 10:
            self.log(f"  [Verify] ... and {len(bad) - 10} more")
        return len(bad)

    # -- main

    def run(self) -> L2BenchResult:
        o = self.o
        o.validate()
        result = L2BenchResult(o)
        self.log(_banner(o))
        from lmcache._native import l2 as native_l2

        self.log("\n[Init] Creating adapter...")
        try:
            adapter = native_l2.create_adapter(o.spec_json)
        except errors.InvalidArgumentError as exc:
            raise BenchUsageError(f"--l2-adapter: {exc}") from None
        except errors.LMCacheError as exc:
            raise type(exc)(f"[Init] Failed to create adapter: {exc}") from None
        result.adapter_type = adapter.type
        self.log(f"[Init] Adapter created successfully ({adapter.type}).\n")
        with adapter:
            phases: list[tuple[str, Callable[[], OpResult]]] = []
            load_bits: list[list[bool] | None] = [None]

            def load() -> OpResult:
                res, load_bits[0] = self.bench_load(adapter)
                return res

            if o.runs("store"):
                phases.append(("Store", lambda: self.bench_store(adapter)))
            if o.runs("lookup"):
                phases.append(("Lookup", lambda: self.bench_lookup(adapter)))
            if o.runs("load"):
                phases.append(("Load", load))
            for name, fn in phases:
                self.log(f"[{name}] Running {o.warmup_rounds} warmup + {o.rounds} measurement rounds...")
                res = fn()
                result.ops.append(res)
                if not res.durations_s:
                    result.fatal = f"{name}: all {o.rounds} measured rounds timed out"
                self.log("")
            if not o.skip_verify and load_bits[0] is not None:
                self.log("[Verify] Checking store -> load data integrity for last measured round...")
                bad = self.verify(load_bits[0])
                result.verify_failures = bad
                result.verified = bad == 0
                if bad == 0:
                    self.log(f"  [Verify] All {self.k} keys data verified OK.")
                else:
                    self.log(f"  [Verify] {bad}/{self.k} keys have data mismatches!")
                self.log("")
            elif not o.skip_verify:
                self.log("[Verify] Skipped: verification needs the load operation.\n")
            self.log("[Cleanup] Closing adapter...")
        self.log("[Cleanup] Done.")
        return result


def _banner(o: BenchOptions) -> str:
    try:
        type_ = str(json.loads(o.spec_json).get("type"))
    except (ValueError, AttributeError):
        type_ = "?"
    rows = [
        ("Adapter type", type_),
        ("L2 adapter JSON", o.spec_json),
        ("Keys / submit", str(o.num_keys)),
        ("In-flight / round", str(o.in_flight)),
        ("Keys / round", str(o.keys_per_round)),
        ("Data size / key", f"{o.data_size_kb} KB"),
        ("Data / round", f"{o.keys_per_round * o.data_size / _MB:.2f} MB"),
        ("Rounds", f"{o.rounds} (+ {o.warmup_rounds} warmup)"),
    ]
    if o.runs("lookup"):
        rows.append(("Lookup max hit rate", f"{o.lookup_max_hit_rate * 100:.2f}%"))
    bar = "=" * 60
    return "\n".join([bar, "L2 Adapter Benchmark", bar, *(f"  {k:<23}: {v}" for k, v in rows), bar])


def run_l2_bench(opts: BenchOptions, log: Log) -> L2BenchResult:
    """Run the benchmark; progress lines go to ``log``.

    Raises :class:`BenchUsageError` for an invocation that cannot work (bad flag values, a spec
    that is not JSON, an unknown adapter type or field) and another ``LMCacheError`` when the
    adapter cannot be created (e.g. ``base_path`` not writable). A run whose operation timed out in
    every measured round, or whose verification failed, returns with ``ok`` False.
    """
    return _Bench(opts, log).run()


# ---------------------------------------------------------------------------------- report


def build_report(result: L2BenchResult) -> Report:
    """The summary, with 0.5.6's sections and JSON keys (``config``, ``op_0``, ``op_1``, ...)."""
    o = result.options
    cfg: list[Row] = [
        Row("L2 adapter JSON", o.spec_json, key="l2_adapter_json"),
        Row("Adapter type", result.adapter_type, key="adapter_type"),
        Row("Keys / submit", o.num_keys, key="num_keys"),
        Row("In-flight / round", o.in_flight, key="in_flight"),
        Row("Keys / round", o.keys_per_round, key="keys_per_round"),
        Row("Data size / key (KB)", o.data_size_kb, key="data_size_kb"),
        Row("Data / round (MB)", round(o.keys_per_round * o.data_size / _MB, 2), key="data_per_round_mb"),
        Row("L1 align (bytes)", o.l1_align_bytes, key="l1_align_bytes"),
        Row("Measurement rounds", o.rounds, key="measurement_rounds"),
        Row("Warmup rounds", o.warmup_rounds, key="warmup_rounds"),
    ]
    if o.runs("lookup"):
        cfg.append(Row("Lookup max hit rate", round(o.lookup_max_hit_rate, 4), key="lookup_max_hit_rate"))
    sections = [Section("Configuration", cfg, key="config")]
    for i, r in enumerate(result.ops):
        tp = r.throughputs_mbps
        rows = [
            Row("Operation", r.operation, key="operation"),
            Row("Rounds", r.attempted_rounds, key="rounds"),
            Row("Rounds timed out", r.timed_out_rounds, key="rounds_timed_out"),
            Row("Keys / round", r.keys_per_round, key="keys_per_round"),
            Row("Total keys", r.total_keys, key="total_keys"),
            Row("Total success", r.total_success, key="total_success"),
        ]
        for stat in ("avg", "min", "max", "p50", "p99", "std"):
            rows.append(
                Row(
                    f"Duration {stat} (ms)",
                    round(r.duration_ms(stat), 3),
                    key=f"duration_{stat}_ms",
                    fmt=".3f",
                )
            )
        rows += [
            Row(
                "Throughput avg (MB/s)",
                round(statistics.mean(tp), 2) if tp else 0.0,
                key="throughput_avg_mbps",
            ),
            Row("Throughput min (MB/s)", round(min(tp), 2) if tp else 0.0, key="throughput_min_mbps"),
            Row("Throughput max (MB/s)", round(max(tp), 2) if tp else 0.0, key="throughput_max_mbps"),
            Row(
                "Avg ops/s",
                round(statistics.mean(r.ops_per_sec), 2) if r.ops_per_sec else 0.0,
                key="ops_per_sec_avg",
            ),
            Row(
                "Avg latency / key (ms)",
                round(r.duration_ms("avg") / r.keys_per_round, 4) if r.keys_per_round else 0.0,
                key="latency_per_key_ms",
                fmt=".4f",
            ),
        ]
        if r.operation == "Lookup" and (r.expected_max_hit_rate > 0 or r.total_success > 0):
            rows += [
                Row("Expected max hit rate", round(r.expected_max_hit_rate, 4), key="expected_max_hit_rate"),
                Row("Expected hit keys", r.expected_hit_count, key="expected_hit_count"),
                Row("Actual hit rate", round(r.actual_hit_rate, 4), key="actual_hit_rate"),
            ]
        sections.append(Section(r.operation, rows, key=f"op_{i}"))
    if result.verified is not None:
        sections.append(
            Section(
                "Verify",
                [
                    Row("Round-trip verification", "OK" if result.verified else "FAILED", key="status"),
                    Row("Mismatching keys", result.verify_failures, key="mismatching_keys"),
                ],
                key="verify",
            )
        )
    return Report("L2 Adapter Benchmark Result", sections, width=64)
