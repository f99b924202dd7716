"""``lmcache bench server``: an end-to-end sanity test and latency benchmark of a running
multiprocess KV-cache server (ours or LMCache 0.5.6), playing a CPU inference worker.

Flow (the RPC path of LMCache 0.5.6's ``bench server``)::

    get_chunk_size, hello (ours only; 0.5.6 does not answer it)
    register (lmcache_driven: register_kv_cache with cpu_shm handles;
              engine_driven: register_kv_cache_engine_driven_context -> the server's SHM pool)
    for seq in [start, end):
        cold: lookup + query_prefetch_status -> hits (expected 0; a hit is counted, not failed)
              free_lookup_locks on the hits, fill the source blocks with the sequence's data,
              store the missing chunks, end_session
        warm: lookup + query_prefetch_status -> hits (expected all), zero the destination blocks,
              retrieve into them (other blocks than the source), compare per-chunk MD5s:
              destination vs. what was generated (locally), and, lmcache_driven with --url,
              the server's view of source and destination (POST /cache/checksums), end_session
    unregister

Transfers: ``lmcache_driven`` sends ``store`` / ``retrieve`` and the server copies between the
worker's SHM-registered KV and L1; ``engine_driven`` asks ``prepare_store`` for slots in the
server's SHM pool, writes the chunk objects there itself, then ``commit_store(data=b"")``; and
``prepare_retrieve`` / read / ``commit_retrieve`` back. The pickle data path (a pool-less 0.5.6
server) is refused, never used. ``auto`` on CPU uses what the server says it serves in ``hello``
(engine_driven first, as 0.5.6's CPU default, when the spec has one group), and 0.5.6's CPU
default, engine_driven, against a server that does not answer ``hello``.

Outcome per sequence: pass = the warm lookup hit every chunk, the retrieve succeeded and every
checksum matched. Cold-lookup hits (data left by an earlier run of the same spec, or a warm L2)
are reported separately and are not failures: the data of a chunk depends only on the spec, the
sequence and the chunk index, so what an earlier run stored is still verified exactly.

Isolation: the model name carries a digest of the resolved KV spec, session ids and the instance
id carry the pid, so several benchmark clients can share one server. SHM segments of the KV
cache are unlinked as soon as the server has mapped them, and on every exit path.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import mmap
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType

import msgspec
import numpy as np

from lmcache import errors
from lmcache.bench.kv_cache import SHM_DIR, KVCache, Raw
from lmcache.bench.kv_shape import (
    DEFAULT_SHAPE_SPEC,
    DTYPES,
    KVGroup,
    ShapeSpecError,
    format_kvcache_shape_spec,
    parse_kvcache_shape_spec,
    resolve_geometry,
)
from lmcache.client.http import AUTH_TOKEN_ENV, AdminApiError, AdminClient
from lmcache.client.mp import MPClient
from lmcache.protocol.types import (
    EngineGroupInfo,
    EngineType,
    InstanceId,
    IPCCacheServerKey,
    LayoutHints,
    PrepareRetrieveResponse,
    PrepareStoreResponse,
    RegisterEngineDrivenContextPayload,
    RegisterEngineDrivenContextResponse,
    SessionId,
    ShmSlotDescriptor,
)
from lmcache.report import Report, Row, Section

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_NUM_BLOCKS",
    "DEFAULT_RPC_TIMEOUT_S",
    "HELLO_TIMEOUT_S",
    "MODES",
    "TRANSFER_MODES",
    "BenchOptions",
    "BenchResult",
    "BenchUsageError",
    "CudaUnavailableError",
    "LatencyStats",
    "build_report",
    "run_server_bench",
]

MODES = ("gpu", "cpu")
TRANSFER_MODES = ("auto", "engine_driven", "lmcache_driven")
DEFAULT_NUM_BLOCKS = 1024
DEFAULT_BLOCK_SIZE = 16
DEFAULT_RPC_TIMEOUT_S = 10.0
"""Per-RPC timeout, as 0.5.6's bench (10 s)."""
HELLO_TIMEOUT_S = 1.5
"""How long to wait for ``hello``; a 0.5.6 server never answers it."""
UNREGISTER_TIMEOUT_S = 3.0
HELLO_TOKEN_ID = 9906
"""0.5.6's request tokens: ``(seq, 9906, 9906, ...)``."""
DATA_VERSION = 1
"""Bumped when the generated data changes, so old cached objects stop matching the model name."""

_RUN_NUMBERS = itertools.count()


class BenchUsageError(errors.InvalidArgumentError):
    """The invocation cannot work (bad spec, geometry that does not fit): exit status 2."""


class CudaUnavailableError(errors.UnavailableError):
    """``--mode gpu`` on a build/machine without CUDA."""


class _SequenceError(Exception):
    """A failure of one sequence (the run goes on)."""


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BenchOptions:
    rpc_url: str = "tcp://localhost:5555"
    url: str | None = "http://localhost:8080"
    mode: str = "gpu"
    transfer_mode: str = "auto"
    num_tokens: int = 512
    num_blocks: int | None = None  # None: not given (DEFAULT_NUM_BLOCKS)
    block_size: int | None = None  # None: not given (DEFAULT_BLOCK_SIZE)
    start: int = 0
    end: int | None = None  # None: forever
    interval: float = 0.5
    kvcache_shape_spec: str = DEFAULT_SHAPE_SPEC
    rpc_timeout: float = DEFAULT_RPC_TIMEOUT_S
    hello_timeout: float = HELLO_TIMEOUT_S

    def validate(self) -> None:
        if self.mode not in MODES:
            raise BenchUsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.transfer_mode not in TRANSFER_MODES:
            raise BenchUsageError(
                f"--transfer-mode must be one of {', '.join(TRANSFER_MODES)}, got {self.transfer_mode!r}"
            )
        for flag, value, low in (
            ("--num-tokens", self.num_tokens, 1),
            ("--num-blocks", self.num_blocks, 1),
            ("--block-size", self.block_size, 1),
            ("--start", self.start, 0),
        ):
            if value is not None and value < low:
                raise BenchUsageError(f"{flag} must be at least {low}, got {value}")
        if self.end is not None and self.end < self.start:
            raise BenchUsageError(f"--end ({self.end}) must not be below --start ({self.start})")
        if max(self.start, self.end or 0) > 2**32:
            raise BenchUsageError("--start/--end: sequence numbers are token ids and must stay below 2^32")
        if not (math.isfinite(self.interval) and self.interval >= 0):
            raise BenchUsageError(f"--interval must be a non-negative number of seconds, got {self.interval}")


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LatencyStats:
    count: int
    mean: float
    min: float
    max: float
    p50: float
    p99: float

    @staticmethod
    def of(samples: list[float]) -> LatencyStats | None:
        """Nearest-rank percentiles, as 0.5.6 (``sorted[ceil(n*q) - 1]``)."""
        if not samples:
            return None
        s = sorted(samples)
        n = len(s)

        def rank(q: float) -> float:
            return s[max(0, math.ceil(n * q) - 1)]

        return LatencyStats(n, sum(s) / n, s[0], s[-1], rank(0.50), rank(0.99))


@dataclass
class BenchResult:
    """What a run measured. ``fatal`` is set when the run stopped on an error."""

    options: BenchOptions
    transfer_mode: str = ""  # resolved
    chunk_size: int = 0
    shape_spec: str = ""
    total: int = 0
    passed: int = 0
    cold_hits: int = 0  # sequences whose cold lookup hit at least one chunk
    warm_misses: int = 0  # sequences whose warm lookup missed at least one chunk
    errored: int = 0  # sequences that ended on an RPC or transfer error
    server_checksums: str = "off"
    interrupted: bool = False
    fatal: errors.LMCacheError | None = None
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.total - self.passed

    @property
    def pass_rate(self) -> float | None:
        return 100.0 * self.passed / self.total if self.total else None

    @property
    def ok(self) -> bool:
        return self.fatal is None and self.failed == 0

    def record(self, name: str, ms: float) -> None:
        self.latencies_ms.setdefault(name, []).append(ms)


_LATENCY_SECTIONS = (
    ("cold_lookup", "Cold Lookup (ms)", "cold.lookup"),
    ("cold_store", "Cold Store (ms)", "cold.store"),
    ("warm_lookup", "Warm Lookup (ms)", "warm.lookup"),
    ("warm_retrieve", "Warm Retrieve (ms)", "warm.retrieve"),
)


def build_report(result: BenchResult, title: str = "Server Bench Result") -> Report:
    """The summary: 0.5.6's sections and JSON keys (``config``, ``results``, ``cold_lookup`` with
    ``cold_lookup_count``, ...), plus a few rows of our own (resolved transfer mode, cold hits,
    warm misses, errors, server checksums)."""
    o = result.options
    config = Section(
        "Configuration",
        [
            Row("RPC URL", o.rpc_url, key="rpc_url"),
            Row("Mode", o.mode, key="mode"),
            Row("Transfer mode", o.transfer_mode, key="transfer_mode"),
            Row("Resolved transfer mode", result.transfer_mode or None, key="resolved_transfer_mode"),
            Row("Tokens / request", o.num_tokens, key="num_tokens"),
            Row("Interval (s)", o.interval, key="interval", fmt="g"),
            Row("KV shape spec", result.shape_spec or o.kvcache_shape_spec, key="kvcache_shape_spec"),
        ],
        key="config",
    )
    rate = result.pass_rate
    results = Section(
        "Results",
        [
            Row("Total requests", result.total, key="total_requests"),
            Row("Checksum OK", result.passed, key="checksum_ok"),
            Row("Checksum FAIL", result.failed, key="checksum_fail"),
            Row("Pass rate (%)", None if rate is None else round(rate, 2), key="pass_rate", fmt=".1f"),
            Row("Cold hits", result.cold_hits, key="cold_hits"),
            Row("Warm misses", result.warm_misses, key="warm_misses"),
            Row("Errors", result.errored, key="errors"),
            Row("Server checksums", result.server_checksums, key="server_checksums"),
            Row("Interrupted", result.interrupted, key="interrupted"),
        ],
        key="results",
    )
    sections = [config, results]
    for key, title_, name in _LATENCY_SECTIONS:
        stats = LatencyStats.of(result.latencies_ms.get(name, []))
        if stats is None:
            continue
        rows = [Row("count", stats.count, key=f"{key}_count")]
        for stat in ("mean", "min", "max", "p50", "p99"):
            rows.append(Row(stat, round(getattr(stats, stat), 3), key=f"{key}_{stat}", fmt=".3f"))
        sections.append(Section(title_, rows, key=key))
    return Report(title, sections, width=64)


# ---------------------------------------------------------------------------------- helpers


def _model_name(spec: str) -> str:
    digest = hashlib.sha256(f"v{DATA_VERSION}|{spec}".encode()).hexdigest()[:12]
    return f"lmcache-bench-{digest}"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt, so a killed run still cleans up (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------- transports


class _Transport:
    """How chunks move between the fake worker and the server."""

    name = ""

    def __init__(self, bench: _Bench) -> None:
        self.b = bench
        self.registered = False

    def register(self) -> None:
        raise NotImplementedError

    def store(self, key: IPCCacheServerKey, first_block: int, num_chunks: int) -> int:
        """Store ``num_chunks`` chunks from ``first_block``; returns the chunks written."""
        raise NotImplementedError

    def retrieve(self, key: IPCCacheServerKey, first_block: int, num_chunks: int) -> None:
        raise NotImplementedError

    def unregister(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LMCacheDriven(_Transport):
    """register_kv_cache (cpu_shm) + store/retrieve: the server copies."""

    name = "lmcache_driven"

    def _block_ids(self, first_block: int, num_chunks: int) -> list[list[int]]:
        ids = list(range(first_block, first_block + num_chunks * self.b.blocks_per_chunk))
        return [list(ids) for _ in self.b.groups]

    def register(self) -> None:
        b = self.b
        infos = [
            EngineGroupInfo(engine_group_id=i, layer_indices=g.layer_indices, tokens_per_block=g.block_size)
            for i, g in enumerate(b.groups)
        ]
        b.client.call(
            "register_kv_cache",
            b.instance_id,
            b.kv.handles(),
            b.model_name,
            1,
            EngineType.VLLM,
            LayoutHints(kv_layout="NHD"),
            infos,
        )
        self.registered = True
        # The server has mapped every segment: drop the names, so nothing is left behind in
        # /dev/shm even if this process is killed.
        b.kv.unlink()

    def store(self, key: IPCCacheServerKey, first_block: int, num_chunks: int) -> int:
        b = self.b
        _, ok = b.client.call("store", key, b.instance_id, self._block_ids(first_block, num_chunks), b"")
        if not ok:
            raise _SequenceError("STORE failed: the server answered ok=false")
        return num_chunks

    def retrieve(self, key: IPCCacheServerKey, first_block: int, num_chunks: int) -> None:
        b = self.b
        _, ok = b.client.call(
            "retrieve", key, b.instance_id, self._block_ids(first_block, num_chunks), b"", 0
        )
        if not ok:
            raise _SequenceError("RETRIEVE failed: the server answered ok=false")

    def unregister(self) -> None:
        if self.registered:
            self.registered = False
            self.b.client.call("unregister_kv_cache", self.b.instance_id, timeout=UNREGISTER_TIMEOUT_S)


class _EngineDriven(_Transport):
    """register_kv_cache_engine_driven_context + prepare/commit: the worker copies through the
    server's SHM pool."""

    name = "engine_driven"

    def __init__(self, bench: _Bench) -> None:
        super().__init__(bench)
        self.pool: mmap.mmap | None = None
        self.pool_name = ""

    def register(self) -> None:
        b = self.b
        g = b.groups[0]
        payload = RegisterEngineDrivenContextPayload(
            instance_id=InstanceId(b.instance_id),
            model_name=b.model_name,
            world_size=1,
            block_size=g.block_size,
            num_layers=g.num_layers,
            hidden_dim_size=g.hidden,
            dtype_str=g.dtype,
            use_mla=g.is_mla,
            num_physical_slots=b.chunk_size,
        )
        try:
            resp = b.client.call("register_kv_cache_engine_driven_context", payload)
        except errors.LMCacheTimeoutError:
            raise errors.UnavailableError(
                f"register_kv_cache_engine_driven_context: no reply from {b.client.url} within "
                f"{b.client.timeout:g} s: the server does not serve engine_driven (LMCache 0.5.6: start "
                "it with --supported-transfer-mode auto), or pass --transfer-mode lmcache_driven"
            ) from None
        self.registered = True
        if (
            not isinstance(resp, RegisterEngineDrivenContextResponse)
            or not resp.shm_name
            or resp.pool_size <= 0
        ):
            raise errors.UnavailableError(
                "the server has no SHM pool for engine_driven transfers and offers the pickle data "
                "path, which this client never uses (LMCache 0.5.6: start the server with --shm-name "
                "NAME), or pass --transfer-mode lmcache_driven"
            )
        self.pool_name = resp.shm_name.lstrip("/")
        path = os.path.join(SHM_DIR, self.pool_name)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise errors.UnavailableError(
                f"cannot open the server's SHM pool {path}: {exc.strerror} (the server must run on "
                "this machine, with a shared /dev/shm)"
            ) from None
        try:
            self.pool = mmap.mmap(fd, resp.pool_size, mmap.MAP_SHARED)
        except (OSError, ValueError) as exc:
            raise errors.UnavailableError(f"cannot map the server's SHM pool {path}: {exc}") from None
        finally:
            os.close(fd)

    def _slot_array(self, slot: ShmSlotDescriptor) -> Raw:
        assert self.pool is not None
        g = self.b.groups[0]
        expected = self.b.kv.object_shape(self.b.chunk_size)
        if tuple(slot.shape) != expected:
            raise _SequenceError(f"server slot shape {list(slot.shape)} is not the expected {list(expected)}")
        raw = DTYPES[g.dtype].storage
        same_width = slot.dtype in DTYPES and DTYPES[slot.dtype].itemsize == raw.itemsize
        if slot.dtype != g.dtype and not same_width:
            raise _SequenceError(f"server slot dtype {slot.dtype!r} does not match {g.dtype!r}")
        count = int(np.prod(expected))
        end = slot.offset + slot.length
        if slot.length < count * raw.itemsize or slot.offset < 0 or end > len(self.pool):
            raise _SequenceError(
                f"server slot [{slot.offset}, +{slot.length}) does not fit the pool or the object"
            )
        arr: Raw = np.frombuffer(self.pool, dtype=raw, count=count, offset=slot.offset).reshape(expected)
        return arr

    def store(self, key: IPCCacheServerKey, first_block: int, num_chunks: int) -> int:
        b = self.b
        resp = b.client.call("prepare_store", key, b.instance_id)
        if not isinstance(resp, PrepareStoreResponse) or isinstance(resp.context.slots, msgspec.UnsetType):
            raise _SequenceError("PREPARE_STORE offered no SHM slots (the pickle path is not supported)")
        slots = resp.context.slots
        indices = resp.context.chunk_indices
        if not slots:
            return 0  # every chunk is already cached: nothing to write or commit (as 0.5.6)
        if isinstance(indices, msgspec.UnsetType):
            indices = list(range(len(slots)))
        if len(indices) != len(slots) or any(not 0 <= i < num_chunks for i in indices):
            raise _SequenceError(f"PREPARE_STORE chunk_indices {indices} do not match {len(slots)} slots")
        for slot, index in zip(slots, indices, strict=True):
            b.kv.gather(first_block + index * b.blocks_per_chunk, b.blocks_per_chunk, self._slot_array(slot))
        if not b.client.call("commit_store", key, b.instance_id, b""):
            raise _SequenceError("COMMIT_STORE failed: the server answered false")
        return len(slots)

    def retrieve(self, key: IPCCacheServerKey, first_block: int, num_chunks: int) -> None:
        b = self.b
        resp = b.client.call("prepare_retrieve", key, b.instance_id)
        try:
            if not isinstance(resp, PrepareRetrieveResponse) or not resp.success:
                raise _SequenceError("PREPARE_RETRIEVE failed: the server answered success=false")
            slots = resp.context.slots
            if isinstance(slots, msgspec.UnsetType) or len(slots) != num_chunks:
                got = "no" if isinstance(slots, msgspec.UnsetType) else len(slots)
                raise _SequenceError(f"PREPARE_RETRIEVE offered {got} SHM slots for {num_chunks} chunks")
            for i, slot in enumerate(slots):
                b.kv.scatter(first_block + i * b.blocks_per_chunk, b.blocks_per_chunk, self._slot_array(slot))
        finally:
            ok = b.client.call("commit_retrieve", key, b.instance_id)
        if not ok:
            raise _SequenceError("COMMIT_RETRIEVE failed: the server answered false")

    def unregister(self) -> None:
        if self.registered:
            self.registered = False
            self.b.client.call(
                "unregister_kv_cache_engine_driven_context", self.b.instance_id, timeout=UNREGISTER_TIMEOUT_S
            )

    def close(self) -> None:
        if self.pool is not None:
            with suppress(BufferError):
                self.pool.close()
            self.pool = None


# ---------------------------------------------------------------------------------- the run


class _Bench:
    def __init__(self, opts: BenchOptions, log: Callable[[str], None]) -> None:
        self.o = opts
        self.log = log
        self.result = BenchResult(opts)
        run = next(_RUN_NUMBERS)
        self.instance_id = os.getpid() * 1000 + run % 1000
        self.session_prefix = f"bench-{os.getpid()}-{run}"
        self.client: MPClient
        self.kv: KVCache
        self.transport: _Transport | None = None
        self.http: AdminClient | None = None
        self.groups: list[KVGroup] = []
        self.chunk_size = 0
        self.blocks_per_chunk = 0
        self.full_tokens = 0
        self.total_chunks = 0
        self.blocks_per_request = 0
        self.model_name = ""
        self.server_checks = 0
        self.server_check_reason = ""

    # -------------------------------------------------------------- setup

    def parse_spec(self) -> list[KVGroup]:
        try:
            groups = parse_kvcache_shape_spec(self.o.kvcache_shape_spec)
        except ShapeSpecError as exc:
            raise BenchUsageError(f"--kvcache-shape-spec: {exc}") from None
        nb = self.o.num_blocks or DEFAULT_NUM_BLOCKS
        bs = self.o.block_size or DEFAULT_BLOCK_SIZE
        first = groups[0]
        if first.num_blocks and self.o.num_blocks is not None and first.num_blocks != self.o.num_blocks:
            self.log(f"  [info] spec nb={first.num_blocks} overrides --num-blocks={self.o.num_blocks}")
        if first.block_size and self.o.block_size is not None and first.block_size != self.o.block_size:
            self.log(f"  [info] spec bs={first.block_size} overrides --block-size={self.o.block_size}")
        return resolve_geometry(groups, nb, bs)

    def connect(self) -> list[str] | None:
        """get_chunk_size (reachability), then hello; returns the server's transfer modes, or
        None for a server that does not answer hello (LMCache 0.5.6)."""
        o = self.o
        self.log(f"Connecting to LMCache MP Server at {o.rpc_url} (mode={o.mode}) ...")
        self.client = MPClient(o.rpc_url, timeout=o.rpc_timeout)
        try:
            chunk = self.client.call("get_chunk_size")
        except errors.LMCacheTimeoutError:
            raise errors.UnavailableError(
                f"cannot reach the LMCache MP server at {self.client.url}: no reply to get_chunk_size "
                f"within {o.rpc_timeout:g} s (is the server running, and is this its ZMQ port?)"
            ) from None
        if not isinstance(chunk, int) or chunk <= 0:
            raise errors.UnavailableError(f"the server answered get_chunk_size with {chunk!r}")
        self.chunk_size = chunk
        self.log(f"Server chunk_size = {chunk}")
        try:
            hello = self.client.hello(timeout=o.hello_timeout)
        except errors.LMCacheTimeoutError:
            return None
        return list(hello.transfer_modes)

    def resolve_transfer_mode(self, served: list[str] | None) -> str:
        wanted = self.o.transfer_mode
        multi = len(self.groups) > 1
        if wanted == "auto":
            if served is None:  # 0.5.6: its own CPU default, unless the spec needs lmcache_driven
                mode = "lmcache_driven" if multi else "engine_driven"
                why = "server did not answer hello: LMCache 0.5.6 CPU default"
            elif "engine_driven" in served and not multi:
                mode, why = "engine_driven", f"server serves {', '.join(served)}"
            elif "lmcache_driven" in served:
                mode, why = "lmcache_driven", f"server serves {', '.join(served)}"
            else:
                raise errors.UnavailableError(
                    f"the server serves {', '.join(served) or 'no transfer mode'}; "
                    + (
                        "engine_driven handles one KV group only, and this spec has several"
                        if multi
                        else "this client speaks lmcache_driven and engine_driven"
                    )
                )
            if multi:
                why += "; several KV groups"
            self.log(f"Transfer mode = {mode} (auto: {why})")
            return mode
        if multi and wanted == "engine_driven":
            raise BenchUsageError(
                "--transfer-mode engine_driven supports only one KV group; use --transfer-mode "
                "lmcache_driven for a multi-group --kvcache-shape-spec"
            )
        if served is not None and wanted not in served:
            alternative = served[0] if served else "auto"
            raise errors.UnavailableError(
                f"the server does not serve {wanted} (it serves {', '.join(served) or 'none'}); start it "
                f"with --supported-transfer-mode auto, or pass --transfer-mode {alternative}"
            )
        self.log(f"Transfer mode = {wanted}")
        return wanted

    def _kv_bytes(self) -> int:
        return sum(g.num_layers * math.prod(g.layer_shape) * g.itemsize for g in self.groups)

    def check_geometry(self) -> None:
        bs = self.groups[0].block_size
        nb = self.groups[0].num_blocks
        if self.chunk_size % bs:
            raise BenchUsageError(
                f"the server's chunk_size {self.chunk_size} is not a multiple of the block size {bs}"
            )
        self.blocks_per_chunk = self.chunk_size // bs
        tokens = self.o.num_tokens + 1  # the sequence number is the first token
        self.total_chunks = tokens // self.chunk_size
        if self.total_chunks == 0:
            raise BenchUsageError(
                f"--num-tokens {self.o.num_tokens}: a request of {tokens} tokens has no full chunk of "
                f"{self.chunk_size} tokens (the server's chunk_size), so nothing would be stored"
            )
        self.full_tokens = self.total_chunks * self.chunk_size
        self.blocks_per_request = self.total_chunks * self.blocks_per_chunk
        if 2 * self.blocks_per_request > nb:
            raise BenchUsageError(
                f"a request of {self.full_tokens} tokens uses {self.blocks_per_request} blocks of {bs} "
                f"tokens, and retrieving into other blocks needs twice that, but the KV cache has {nb} "
                "blocks: raise NB in --kvcache-shape-spec (or --num-blocks) or lower --num-tokens"
            )

    def setup_http(self) -> None:
        o = self.o
        if self.result.transfer_mode != "lmcache_driven":
            self.result.server_checksums = "n/a (engine_driven)"
            return
        if not o.url:
            self.result.server_checksums = "off (no --url)"
            return
        self.http = AdminClient(o.url, timeout=max(5.0, o.rpc_timeout), token=os.environ.get(AUTH_TOKEN_ENV))
        self.result.server_checksums = "pending"

    # -------------------------------------------------------------- per sequence

    def _key(
        self, tokens: tuple[int, ...], session: str, start: int, end: int, worker: int | None
    ) -> IPCCacheServerKey:
        return IPCCacheServerKey(
            model_name=self.model_name,
            world_size=1,
            worker_id=worker,
            token_ids=tokens,
            start=start,
            end=end,
            request_id=SessionId(session),
            num_kv_readers=1,
        )

    def _lookup(self, tokens: tuple[int, ...], session: str) -> tuple[int, float]:
        """lookup + query_prefetch_status until the result is ready; (hit chunks, ms)."""
        c = self.client
        t0 = time.perf_counter()
        c.call("lookup", self._key(tokens, session, 0, self.full_tokens, None), 1)
        deadline = t0 + self.o.rpc_timeout
        delay = 0.0002
        while True:
            hits = c.call("query_prefetch_status", session)
            if hits is not None:
                break
            if time.perf_counter() > deadline:
                raise errors.LMCacheTimeoutError(
                    f"query_prefetch_status: the lookup of {session} did not finish "
                    f"within {self.o.rpc_timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
        ms = (time.perf_counter() - t0) * 1000
        return max(0, min(int(hits), self.total_chunks)), ms

    def _server_checksums(self, first_block: int, num_chunks: int) -> list[str] | None:
        """POST /cache/checksums for the blocks; None when the API is not usable (then disabled)."""
        if self.http is None:
            return None
        body = {
            "block_ids": list(range(first_block, first_block + num_chunks * self.blocks_per_chunk)),
            "chunk_size": self.blocks_per_chunk,
            "instance_id": self.instance_id,
            "layerwise": False,
        }
        try:
            answer = self.http.request("POST", "/cache/checksums", body)
        except AdminApiError as exc:
            if exc.status in (404,):
                raise _SequenceError(f"checksum API: {exc}") from None
            return self._disable_server_checksums(str(exc))
        except errors.LMCacheError as exc:  # unreachable, timeout
            return self._disable_server_checksums(str(exc))
        sums = answer.get("chunk_checksums") if isinstance(answer, dict) else None
        if not isinstance(sums, list) or not all(isinstance(s, str) for s in sums):
            where = f"{self.http.base_url}/cache/checksums"
            return self._disable_server_checksums(f"unexpected answer from {where}")
        self.server_checks += 1
        return [str(s) for s in sums]

    def _disable_server_checksums(self, reason: str) -> list[str] | None:
        self.log(f"WARNING: server checksums disabled, verifying local checksums only: {reason}")
        self.http = None
        self.server_check_reason = reason
        return None

    def run_sequence(self, seq: int) -> None:
        r = self.result
        tag = f"[seq={seq}]"
        tokens = (seq,) + (HELLO_TOKEN_ID,) * self.o.num_tokens
        n = self.total_chunks
        bpc = self.blocks_per_chunk
        half = self.groups[0].num_blocks // 2
        positions = max(1, (half - self.blocks_per_request) // self.blocks_per_request + 1)
        src = (seq % positions) * self.blocks_per_request
        dst = half + src
        cold, warm = f"{self.session_prefix}-{seq}-cold", f"{self.session_prefix}-{seq}-warm"
        problems: list[str] = []
        sessions: list[str] = []
        error = False
        try:
            # ---------------- cold pass
            sessions.append(cold)
            hits, ms = self._lookup(tokens, cold)
            r.record("cold.lookup", ms)
            self.log(f"{tag} {'LOOKUP cold:':<14}{hits}/{n} chunks hit ({ms:.2f} ms)")
            if hits:
                r.cold_hits += 1
                locked = self._key(tokens, cold, 0, hits * self.chunk_size, None)
                self.client.call("free_lookup_locks", locked, 1)
            for c in range(n):
                self.kv.fill(seq, c, src + c * bpc, bpc)
            expected = self.kv.checksums(src, n, bpc)
            if hits < n:
                assert self.transport is not None
                t0 = time.perf_counter()
                key = self._key(tokens, cold, hits * self.chunk_size, self.full_tokens, 0)
                stored = self.transport.store(key, src + hits * bpc, n - hits)
                ms = (time.perf_counter() - t0) * 1000
                r.record("cold.store", ms)
                self.log(f"{tag} {'STORE:':<14}{stored} chunks stored ({ms:.2f} ms)")
                if stored < n - hits:
                    self.log(
                        f"{tag} WARNING: the server took {stored} of the {n - hits} missing chunks "
                        "(L1 full, or another client stored them meanwhile)"
                    )
            else:
                self.log(f"{tag} {'STORE:':<14}skipped: all {n} chunks already cached (cold hit)")
            server_src = self._server_checksums(src, n)
            if server_src is not None and server_src != expected:
                problems += self._diff("server view of the stored blocks", expected, server_src)
            self.client.call("end_session", cold)
            sessions.remove(cold)
            if self.o.interval:
                time.sleep(self.o.interval)

            # ---------------- warm pass
            sessions.append(warm)
            hits, ms = self._lookup(tokens, warm)
            r.record("warm.lookup", ms)
            self.log(f"{tag} {'LOOKUP warm:':<14}{hits}/{n} chunks hit ({ms:.2f} ms)")
            self.kv.zero(dst, self.blocks_per_request)
            if hits:
                assert self.transport is not None
                t0 = time.perf_counter()
                self.transport.retrieve(self._key(tokens, warm, 0, hits * self.chunk_size, 0), dst, hits)
                ms = (time.perf_counter() - t0) * 1000
                r.record("warm.retrieve", ms)
                self.log(f"{tag} {'RETRIEVE:':<14}{hits} chunks retrieved ({ms:.2f} ms)")
            if hits < n:
                r.warm_misses += 1
                problems.append(f"only {hits}/{n} chunks retrieved: the warm lookup missed {n - hits}")
            if hits:
                got = self.kv.checksums(dst, hits, bpc)
                problems += self._diff("retrieved blocks", expected[:hits], got)
                server_dst = self._server_checksums(dst, hits)
                if server_dst is not None and server_dst != expected[:hits]:
                    problems += self._diff("server view of the retrieved blocks", expected[:hits], server_dst)
            self.client.call("end_session", warm)
            sessions.remove(warm)
        except _SequenceError as exc:
            error = True
            self.log(f"{tag} ERROR: {exc}")
        except errors.LMCacheTimeoutError:
            raise  # the server stopped answering: fatal
        except errors.LMCacheError as exc:
            error = True
            self.log(f"{tag} ERROR: {exc}")
        finally:
            for s in sessions:  # release what a failed pass left behind (best effort)
                with suppress(errors.LMCacheError):
                    self.client.call("end_session", s, timeout=UNREGISTER_TIMEOUT_S)
        r.total += 1
        if error:
            r.errored += 1
        elif problems:
            self.log(f"{tag} CHECKSUM MISMATCH")
            for p in problems:
                self.log(f"{tag}   {p}")
        else:
            r.passed += 1
            self.log(f"{tag} CHECKSUM MATCH OK")

    @staticmethod
    def _diff(what: str, expected: list[str], got: list[str]) -> list[str]:
        if len(expected) != len(got):
            return [f"{what}: {len(got)} checksums for {len(expected)} chunks"]
        return [
            f"{what}: chunk {i} expected={e[:12]} got={g[:12]} FAIL"
            for i, (e, g) in enumerate(zip(expected, got, strict=True))
            if e != g
        ]

    # -------------------------------------------------------------- main

    def run(self) -> BenchResult:
        o = self.o
        r = self.result
        o.validate()
        if o.mode == "gpu":
            raise CudaUnavailableError(
                "--mode gpu: CUDA is not available in this build/machine; use --mode cpu"
            )
        self.groups = self.parse_spec()
        r.shape_spec = format_kvcache_shape_spec(self.groups)
        self.model_name = _model_name(r.shape_spec)
        try:
            served = self.connect()
            self.log(f"Resolved KV shape spec: {r.shape_spec}")
            r.chunk_size = self.chunk_size
            r.transfer_mode = self.resolve_transfer_mode(served)
            self.check_geometry()
            shared = r.transfer_mode == "lmcache_driven"
            try:
                self.kv = KVCache(self.groups, shared=shared)
            except OSError as exc:
                where = f" in {SHM_DIR}" if shared else ""
                raise errors.StorageIOError(
                    f"cannot allocate the KV cache ({self._kv_bytes() / 2**20:.1f} MiB){where}: "
                    f"{exc.strerror or exc}"
                ) from None
            self.transport = _LMCacheDriven(self) if shared else _EngineDriven(self)
            self.transport.register()
            layers = sum(g.num_layers for g in self.groups)
            self.log(
                f"Registered {layers} KV layers ({self.kv.nbytes / 2**20:.1f} MiB"
                f"{' in POSIX SHM' if shared else ''}) as instance {self.instance_id}; "
                f"each request: {self.o.num_tokens + 1} tokens = {self.total_chunks} chunks"
            )
            self.setup_http()
            seqs = itertools.count(o.start) if o.end is None else iter(range(o.start, o.end))
            try:
                for i, seq in enumerate(seqs):
                    if i and o.interval:
                        time.sleep(o.interval)
                    self.run_sequence(seq)
            except KeyboardInterrupt:
                r.interrupted = True
                self.log("\nStopping...")
            except errors.LMCacheError as exc:
                r.fatal = exc
        finally:
            self.teardown()
        if r.server_checksums == "pending":
            if self.server_check_reason:
                r.server_checksums = f"unavailable: {self.server_check_reason}"
            else:
                r.server_checksums = "verified" if self.server_checks else "not checked"
        return r

    def teardown(self) -> None:
        try:
            if self.transport is not None:
                try:
                    self.transport.unregister()
                except errors.LMCacheError as exc:
                    self.log(f"WARNING: unregister failed: {exc}")
                self.transport.close()
        finally:
            kv: KVCache | None = getattr(self, "kv", None)
            if kv is not None:
                kv.close()
            client: MPClient | None = getattr(self, "client", None)
            if client is not None:
                client.close()


def run_server_bench(opts: BenchOptions, log: Callable[[str], None]) -> BenchResult:
    """Run the benchmark; progress lines go to ``log``.

    Raises :class:`BenchUsageError` for an invocation that cannot work, and other
    ``LMCacheError`` s (CUDA unavailable, server unreachable, registration refused) when nothing
    could be measured. Errors after the loop started end the run with ``result.fatal`` set.
    Ctrl-C (or SIGTERM) ends the loop cleanly (``result.interrupted``).
    """
    with _sigterm_as_interrupt():
        return _Bench(opts, log).run()
