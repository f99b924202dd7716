"""The server's request handlers and the state they share.

``ServerCore`` owns the storage engine, the sessions, the KV-cache registrations of the
workers and their liveness. :meth:`ServerCore.handlers` maps op names to callables for the
:class:`~lmcache.server.dispatcher.Dispatcher`. Data movement (gather/scatter between a
worker's paged KV and L1 objects, hashing) happens in C++ with the GIL released; the Python
here only decides *what* to move.

Visibility (compat reference §20 item 1): ``store`` publishes its objects (FinishWrite)
before its reply is sent, so a ``lookup`` that arrives after the reply always sees them.
A full L1 never turns into a silent drop: ``store`` answers ``[handle, False]`` (or an error
frame for peers that opted in) and the failure is counted.

L2 (``--l2-adapter``): stores reach L2 by write-behind (the native store controller listens to
L1). A ``lookup`` whose prefix L1 does not hold completely submits a prefetch to the native
prefetch controller and replies at once; ``query_prefetch_status`` / ``wait_prefetch_status``
collect the result (the native wait releases the GIL) and install the same per-(rank, group)
lock accounting as an L1-only lookup. A repeated lookup, ``end_session`` and session expiry
cancel a prefetch still pending (the controller releases what it locked).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmcache import errors
from lmcache._native import keys as nkeys
from lmcache._native import transfer
from lmcache.config.server import ServerConfig
from lmcache.protocol import framing
from lmcache.protocol.hashing import TokenHasher
from lmcache.protocol.types import CAPABILITY_KV_EVENT_STREAM, CpuShmIPCData, HelloRequest, IPCCacheServerKey
from lmcache.server import engine_driven
from lmcache.server.dispatcher import CallContext, WouldBlock
from lmcache.server.sessions import LookupLocks, Session, SessionTable
from lmcache.storage import StorageEngine

log = logging.getLogger("lmcache.server")

STUB_EVENT_HANDLE = b"stub_ipc_handle"
# KV event streams are not served yet: do not advertise them (vLLM would subscribe).
CAPABILITIES = tuple(c for c in framing.SERVER_CAPABILITIES if c != CAPABILITY_KV_EVENT_STREAM)
MAX_KV_READERS = 128
IMPLEMENTED_TRANSFER_MODES = ("lmcache_driven", "engine_driven")


def kv_rank(world_size: int, worker_id: int) -> int:
    """LMCache's packed rank (compat §7), single node: local world = world, local rank = rank."""
    return (world_size << 24) | (worker_id << 16) | (world_size << 8) | worker_id


@contextlib.contextmanager
def _locked(session: Session, ctx: CallContext) -> Any:
    """Hold ``session.lock``; on the socket thread (``ctx.inline``) only if it is free at once,
    else raise :class:`WouldBlock` (a data op holds it for a copy: the pool waits instead)."""
    if ctx.inline:
        if not session.lock.acquire(blocking=False):
            raise WouldBlock
    else:
        session.lock.acquire()
    try:
        yield
    finally:
        session.lock.release()


@dataclass
class Registration:
    """One worker's registered KV cache (lmcache_driven)."""

    instance_id: int
    model_name: str
    world_size: int
    kv: Any  # transfer.KvCacheRegistration
    registered_at: float = field(default_factory=time.monotonic)
    last_ping: float | None = None


@dataclass
class Counters:
    stores: int = 0
    store_chunks: int = 0
    store_failures: int = 0
    retrieves: int = 0
    retrieve_chunks: int = 0
    retrieve_failures: int = 0
    lookups: int = 0
    lookup_requested_tokens: int = 0
    lookup_hit_tokens: int = 0
    lookup_hit_l1_tokens: int = 0
    lookup_hit_l2_tokens: int = 0
    prefetches: int = 0
    allocation_failure_chunks: int = 0
    reaped: int = 0


@dataclass
class PendingPrefetch:
    """A lookup waiting for the prefetch controller (kept in ``Session.prefetch``)."""

    id: int
    hashes: list[bytes]  # the prefix's chunk hashes, [0, chunks)
    chunks: int
    readers: int
    groups: int
    world_size: int
    model_name: str
    cache_salt: str


MAX_WARM_REQUESTS = 1024


@dataclass
class _Warm:
    """A ``POST /cache/prefetches`` request: its prefetch id, its rows' keys, its result."""

    pid: int
    rows: list[Any]  # KeyList per (rank, group)
    chunks: int
    result: dict[str, int] | None = None


class ServerCore:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        mp = config.mp
        self.chunk_size = mp.chunk_size
        # L1 lives in the engine_driven SHM pool when that path is served (workers copy into it).
        self.engine = StorageEngine(config.storage_manager, shm_name=engine_driven.l1_pool_name(config))
        self.hasher = TokenHasher(mp.hash_algorithm, mp.chunk_size)
        self.sessions = SessionTable(self.hasher, mp.session_ttl_seconds, on_expire=self._release_session)
        self.copy_pool = transfer.CopyPool(1)
        self.transfer_modes = self._transfer_modes()
        self._regs: dict[int, Registration] = {}
        self._regs_lock = threading.Lock()
        self._model_groups: dict[str, int] = {}  # model -> number of object groups
        self._tags = itertools.count(1)
        self._warm: dict[str, _Warm] = {}
        self._warm_lock = threading.Lock()
        self.counters = Counters()
        self._counters_lock = threading.Lock()
        self.started_at = time.time()
        self.engine_driven = engine_driven.EngineDrivenTransfer(self)

    def _transfer_modes(self) -> list[str]:
        """The transfer modes this server serves: those configured that this build implements."""
        mode = self.config.mp.supported_transfer_mode
        wanted = ["lmcache_driven", "engine_driven"] if mode == "auto" else [mode]
        served = [
            m
            for m in wanted
            if m in IMPLEMENTED_TRANSFER_MODES and (m != "engine_driven" or self.engine.shm_pool is not None)
        ]
        for m in wanted:
            if m not in served:
                log.warning(
                    "transfer mode %s is not available in this build yet; its ops answer as unsupported",
                    m,
                )
        return served

    # ------------------------------------------------------------------ table

    #: Normal-pool ops the socket thread answers itself when they need no wait (see
    #: lmcache.server.dispatcher): the lookup round trips of every request.
    INLINE_OPS = frozenset({"lookup", "query_prefetch_status", "free_lookup_locks"})

    def handlers(self) -> dict[str, Callable[..., Any]]:
        h: dict[str, Callable[..., Any]] = {
            "noop": lambda ctx: "OK",
            "get_chunk_size": lambda ctx: self.chunk_size,
            "get_experimental": lambda ctx: list(CAPABILITIES),
            "hello": self.hello,
            "ping": self.ping,
            "lookup": self.lookup,
            "query_prefetch_status": self.query_prefetch_status,
            "wait_prefetch_status": self.wait_prefetch_status,
            "free_lookup_locks": self.free_lookup_locks,
            "end_session": self.end_session,
            "clear": self.clear,
            "report_block_allocation": lambda ctx, *args: None,
        }
        if "lmcache_driven" in self.transfer_modes:
            h.update(
                {
                    "register_kv_cache": self.register_kv_cache,
                    "unregister_kv_cache": self.unregister_kv_cache,
                    "store": self.store,
                    "retrieve": self.retrieve,
                }
            )
        if "engine_driven" in self.transfer_modes:
            h.update(self.engine_driven.handlers())
        return h

    # ------------------------------------------------------------------ control ops

    def hello(self, ctx: CallContext, request: HelloRequest) -> Any:
        resp = framing.hello_response(
            request,
            chunk_size=self.chunk_size,
            hash_algorithm=self.hasher.algorithm,
            transfer_modes=self.transfer_modes,
            capabilities=CAPABILITIES,
            server="lmcache",
        )
        ctx.dispatcher.set_capabilities(ctx.identity, resp.enabled)
        return resp

    def ping(self, ctx: CallContext, instance_id: int | None) -> bool:
        if instance_id is not None:
            with self._regs_lock:
                reg = self._regs.get(instance_id)
                if reg is not None:
                    reg.last_ping = time.monotonic()
            self.engine_driven.touch(instance_id)
        return True

    def clear(self, ctx: CallContext, force: bool) -> None:
        self.engine.l1.clear(bool(force))

    # ------------------------------------------------------------------ registration

    def register_kv_cache(
        self,
        ctx: CallContext,
        instance_id: int,
        kv_cache: list[Any],
        model_name: str,
        world_size: int,
        engine_type: Any,
        layout_hints: Any,
        engine_group_infos: list[Any],
    ) -> None:
        with self._regs_lock:
            if instance_id in self._regs:  # re-registration refreshes liveness only
                self._regs[instance_id].last_ping = time.monotonic()
                return
        tensors = []
        for h in kv_cache:
            if not isinstance(h, CpuShmIPCData):
                raise errors.InvalidArgumentError(
                    f"KV handle type {type(h).__name__} needs the CUDA build; this server maps cpu_shm"
                )
            m = h.metadata
            tensors.append(
                {
                    "shm_name": h.shm_name,
                    "nbytes": h.nbytes,
                    "dtype": m.dtype,
                    "shape": list(m.shape),
                    "stride": list(m.stride),
                    "storage_offset": m.storage_offset,
                }
            )
        # Without a hint 0.5.6 assumes HND on a CPU host (vLLM's CPU attention layout).
        kv_layout = getattr(layout_hints, "kv_layout", "HND")
        if not isinstance(kv_layout, str):
            kv_layout = "HND"
        kernel_groups = [list(g.layer_indices) for g in engine_group_infos] or None
        reg = transfer.KvCacheRegistration.open(
            tensors, self.chunk_size, kv_layout=kv_layout, kernel_groups=kernel_groups
        )
        with self._regs_lock:
            self._regs[instance_id] = Registration(instance_id, model_name, world_size, reg)
            self._model_groups[model_name] = max(self._model_groups.get(model_name, 1), reg.num_object_groups)
        log.info(
            "registered KV cache of instance %d (%s, world %d): %d layers, %.1f MiB mapped",
            instance_id,
            model_name,
            world_size,
            reg.num_layers,
            reg.mapped_bytes / 2**20,
        )

    def unregister_kv_cache(self, ctx: CallContext, instance_id: int) -> None:
        with self._regs_lock:
            reg = self._regs.pop(instance_id, None)
        if reg is not None:
            self._close_registration(reg)

    def _close_registration(self, reg: Registration) -> None:
        names = list(reg.kv.shm_names)
        reg.kv.close()  # waits for copies in flight, then unmaps synchronously
        for name in names:  # a dead 0.5.6 client never unlinks its segments
            if name.lstrip("/").startswith("lmcache_kv_"):
                transfer.unlink_if_owner_dead(name)

    def reap(self, instance_id: int) -> None:
        """Unregister a silent worker: unmap its memory (and unlink segments of dead pids)."""
        with self._regs_lock:
            reg = self._regs.pop(instance_id, None)
        if reg is not None:
            self._close_registration(reg)
            with self._counters_lock:
                self.counters.reaped += 1

    def registrations(self) -> list[Registration]:
        with self._regs_lock:
            return list(self._regs.values())

    def _registration(self, instance_id: int) -> Registration:
        with self._regs_lock:
            reg = self._regs.get(instance_id)
        if reg is None:
            raise errors.NotFoundError(f"instance {instance_id} has no registered KV cache")
        return reg

    # ------------------------------------------------------------------ keys

    def _chunk_range(self, key: IPCCacheServerKey) -> tuple[int, int]:
        c = self.chunk_size
        n_tokens = min(key.end, len(key.token_ids))
        first = key.start // c
        last = n_tokens // c  # only full chunks
        return first, max(first, last)

    def _keys(self, hashes: list[bytes], key: IPCCacheServerKey, rank: int, group: int) -> Any:
        return nkeys.make_keys(hashes, key.model_name, kv_rank(key.world_size, rank), group, key.cache_salt)

    # ------------------------------------------------------------------ lookup

    def _object_sizes(self, model_name: str, groups: int) -> list[int] | None:
        """Bytes of one object per object group of ``model_name``, from a registered worker of
        that model (None if none is registered: the prefetch controller needs the sizes)."""
        for reg in self.registrations():
            if reg.model_name == model_name and reg.kv.num_object_groups >= groups:
                return [int(reg.kv.object_bytes(g)) for g in range(groups)]
        if groups == 1:
            for c in self.engine_driven.contexts():
                if c.model_name == model_name:
                    return [int(c.object_bytes)]
        return None

    def lookup(self, ctx: CallContext, key: IPCCacheServerKey, tp_size: int) -> None:
        """Lock the longest prefix held by every rank and object group; the result is read
        with query/wait_prefetch_status. When L1 holds it all (or there is no L2) the result is
        ready before the reply; otherwise an L2 prefetch is submitted and the reply goes at once."""
        readers = key.num_kv_readers
        if readers < 1:
            raise errors.InvalidArgumentError(
                "num_kv_readers is 0: this LMCache client is too old; upgrade it (0.5.6 or newer)"
            )
        readers = min(readers, MAX_KV_READERS)
        session = self.sessions.get(key.request_id)
        first, last = 0, self._chunk_range(key)[1]
        with _locked(session, ctx):
            self._release_locks(session)  # a repeated lookup replaces the previous one
            hashes = session.hashes(key.token_ids, last)
            session.model_name, session.cache_salt, session.world_size = (
                key.model_name,
                key.cache_salt,
                key.world_size,
            )
            groups = self._model_groups.get(key.model_name, 1)
            # One pass over L1 locks what it holds; only when some row falls short (and an L2
            # can fill it) are those locks given back and an L2 prefetch, which locks L1 hits
            # itself, takes over.
            prefix = last - first
            locked: dict[tuple[int, int], int] = {}
            rows: dict[tuple[int, int], Any] = {}  # row -> its KeyList
            for rank in range(key.world_size):
                for g in range(groups):
                    keys = self._keys(hashes, key, rank, g)
                    views = self.engine.l1.reserve_read_prefix(keys, readers)
                    locked[(rank, g)], rows[(rank, g)] = len(views), keys
                    prefix = min(prefix, len(views))
            if prefix < last and self.engine.l2 is not None:
                sizes = self._object_sizes(key.model_name, groups)
                if sizes is not None:
                    for row, n in locked.items():
                        if n:
                            held = rows[row].slice(0, n)
                            for _ in range(readers):
                                self.engine.l1.finish_read(held)
                    self._submit_prefetch(session, key, hashes, last, readers, sizes)
                    return
            # Keep locks on the common prefix only; release the over-hit tail at once.
            for (rank, g), n in locked.items():
                if n > prefix:
                    tail = rows[(rank, g)].slice(prefix, n)
                    for _ in range(readers):
                        self.engine.l1.finish_read(tail)
                session.lookup_locks[(rank, g)] = LookupLocks(prefix, readers)
            session.lookup_result = prefix
            session.lookup_hashes = hashes[:prefix]
            session.lookup_done.set()
        self._count_lookup(last, prefix, prefix, 0)

    def _count_lookup(self, requested: int, hit: int, l1_hit: int, l2_hit: int) -> None:
        c = self.chunk_size
        with self._counters_lock:
            self.counters.lookups += 1
            self.counters.lookup_requested_tokens += requested * c
            self.counters.lookup_hit_tokens += hit * c
            self.counters.lookup_hit_l1_tokens += l1_hit * c
            self.counters.lookup_hit_l2_tokens += l2_hit * c

    def _submit_prefetch(
        self,
        session: Session,
        key: IPCCacheServerKey,
        hashes: list[bytes],
        last: int,
        readers: int,
        sizes: list[int],
    ) -> None:
        """Submit an L2 prefetch of the first ``last`` chunks in every (rank, group) row
        (``sizes``: object bytes per group). REQUIRES: session.lock."""
        rows = [
            (self._keys(hashes, key, rank, g), sizes[g])
            for rank in range(key.world_size)
            for g in range(len(sizes))
        ]
        pid = self.engine.l2.prefetch(rows, readers)
        session.prefetch = PendingPrefetch(
            pid, hashes[:last], last, readers, len(sizes), key.world_size, key.model_name, key.cache_salt
        )
        session.lookup_result = None
        session.lookup_done.clear()
        with self._counters_lock:
            self.counters.prefetches += 1

    def _collect_prefetch(self, session: Session, timeout: float) -> None:
        """Take the result of the session's pending prefetch, if finished (waiting up to
        ``timeout`` seconds, GIL released), and install its locks as a lookup's."""
        with session.lock:
            pending = session.prefetch
        if pending is None or self.engine.l2 is None:
            return
        try:
            if timeout > 0:
                result = self.engine.l2.wait(pending.id, timeout)
            else:
                result = self.engine.l2.query(pending.id)
        except (errors.NotFoundError, errors.UnavailableError):
            return  # collected by a concurrent caller, or cancelled
        if result is None:
            return
        prefix = int(result["prefix_chunks"])
        with session.lock:
            if session.prefetch is not pending:  # replaced or ended meanwhile: give the locks back
                self._release_prefetch_locks(pending, prefix)
                return
            session.prefetch = None
            session.model_name, session.cache_salt, session.world_size = (
                pending.model_name,
                pending.cache_salt,
                pending.world_size,
            )
            for rank in range(pending.world_size):
                for g in range(pending.groups):
                    session.lookup_locks[(rank, g)] = LookupLocks(prefix, pending.readers)
            session.lookup_result = prefix
            session.lookup_hashes = pending.hashes[:prefix]
            session.lookup_done.set()
        self._count_lookup(pending.chunks, prefix, int(result["l1_hit_chunks"]), int(result["l2_hit_chunks"]))

    def _release_prefetch_locks(self, pending: PendingPrefetch, prefix: int) -> None:
        if prefix <= 0:
            return
        for rank in range(pending.world_size):
            k_rank = kv_rank(pending.world_size, rank)
            for g in range(pending.groups):
                keys = nkeys.make_keys(
                    pending.hashes[:prefix], pending.model_name, k_rank, g, pending.cache_salt
                )
                for _ in range(pending.readers):
                    self.engine.l1.finish_read(keys)

    def _cancel_prefetch(self, session: Session) -> None:
        """Drop the session's pending prefetch; the controller releases what it holds.
        REQUIRES: session.lock."""
        pending = session.prefetch
        if pending is None:
            return
        session.prefetch = None
        if self.engine.l2 is None:
            return
        # NotFound: a concurrent collector took the result; it sees the session moved on and
        # releases the locks itself.
        with contextlib.suppress(errors.NotFoundError, errors.UnavailableError):
            self.engine.l2.cancel(pending.id)

    # ------------------------------------------------------------------ warming (HTTP)

    def warm(self, model_name: str, world_size: int, token_ids: list[int], cache_salt: str) -> dict[str, Any]:
        """``POST /cache/prefetches``: load the full chunks of ``token_ids`` from L2 into L1 as
        resident objects (every rank and object group of the model), in the background."""
        if self.engine.l2 is None:
            raise errors.UnavailableError("no L2 adapter is configured (--l2-adapter)")
        if not 1 <= world_size <= 256:
            raise errors.InvalidArgumentError(f"world_size must be in [1, 256], got {world_size}")
        chunks = len(token_ids) // self.chunk_size
        if chunks == 0:
            return {"chunks": 0, "status": "noop"}
        groups = self._model_groups.get(model_name, 1)
        sizes = self._object_sizes(model_name, groups)
        if sizes is None:
            raise errors.UnavailableError(
                f"no engine has registered a KV layout for model {model_name!r} (object sizes unknown)"
            )
        hashes = self.hasher.hashes(token_ids[: chunks * self.chunk_size])
        rows = [
            (nkeys.make_keys(hashes, model_name, kv_rank(world_size, rank), g, cache_salt), sizes[g])
            for rank in range(world_size)
            for g in range(groups)
        ]
        pid = self.engine.l2.prefetch(rows, 1, retain=True)
        request_id = f"warm-{pid}"
        with self._warm_lock:
            self._warm[request_id] = _Warm(pid, [k for k, _ in rows], chunks)
            while len(self._warm) > MAX_WARM_REQUESTS:  # forget the oldest
                old_id, old = next(iter(self._warm.items()))
                del self._warm[old_id]
                if old.result is None:
                    with contextlib.suppress(errors.NotFoundError, errors.UnavailableError):
                        self.engine.l2.cancel(old.pid)
        return {"request_id": request_id, "chunks": chunks, "status": "submitted"}

    def warm_status(self, request_id: str) -> dict[str, Any]:
        """``GET /cache/prefetches/{id}``: pending, or completed with what was found."""
        with self._warm_lock:
            w = self._warm.get(request_id)
            if w is None:
                raise errors.NotFoundError(f"no prefetch request {request_id!r}")
            if w.result is None and self.engine.l2 is not None:
                try:
                    r = self.engine.l2.query(w.pid)
                except (errors.NotFoundError, errors.UnavailableError):
                    r = {"prefix_chunks": 0}
                if r is not None:
                    prefix = int(r["prefix_chunks"])
                    for keys in w.rows:  # nobody retrieves for a warm-up: drop its read lock
                        if prefix > 0:
                            self.engine.l1.finish_read(keys.slice(0, prefix))
                    w.result = {"found_keys": prefix * len(w.rows), "total_keys": w.chunks * len(w.rows)}
            if w.result is None:
                return {"request_id": request_id, "status": "pending"}
            return {"request_id": request_id, "status": "completed", **w.result}

    def query_prefetch_status(self, ctx: CallContext, request_id: str) -> int | None:
        session = self.sessions.find(request_id)
        if session is None:
            return 0
        if ctx.inline and session.prefetch is not None:
            raise WouldBlock  # collecting an L2 prefetch takes the session lock twice: use the pool
        self._collect_prefetch(session, 0.0)
        with _locked(session, ctx):
            if not session.lookup_done.is_set():
                return None
            result = session.lookup_result
            session.lookup_result = None  # the final value is returned exactly once
            return 0 if result is None else result

    def wait_prefetch_status(self, ctx: CallContext, request_id: str, timeout: float) -> int | None:
        session = self.sessions.find(request_id)
        if session is None:
            return 0
        budget = max(0.0, min(float(timeout), 300.0))
        deadline = time.monotonic() + budget
        self._collect_prefetch(session, budget)  # blocks in C++ with the GIL released
        if not session.lookup_done.wait(max(0.0, deadline - time.monotonic())):
            return None
        return self.query_prefetch_status(ctx, request_id)

    def free_lookup_locks(self, ctx: CallContext, key: IPCCacheServerKey, tp_size: int) -> None:
        """Release the locks of chunks [start, end) that no retrieve will consume."""
        session = self.sessions.find(key.request_id)
        if session is None:
            return
        first, last = self._chunk_range(key)
        with _locked(session, ctx):
            self._release_locks(session, first, last)

    def end_session(self, ctx: CallContext, request_id: str) -> None:
        session = self.sessions.pop(request_id)
        if session is not None:
            self._release_session(session)

    def _release_session(self, session: Session) -> None:
        with session.lock:
            self._release_locks(session)

    def _release_locks(self, session: Session, first: int = 0, last: int | None = None) -> None:
        """Release the unconsumed lookup locks of chunks [first, last); a full release (``last``
        None) also cancels a pending L2 prefetch. REQUIRES: session.lock."""
        if last is None:
            self._cancel_prefetch(session)
        hashes = session.lookup_hashes
        if not session.lookup_locks or not hashes:
            session.lookup_locks.clear()
            return
        for (rank, g), locks in list(session.lookup_locks.items()):
            stop = locks.chunks if last is None else min(last, locks.chunks)
            # Group the chunks by how many locks they still hold (almost always one group), so
            # each group is released with one native call per lock instead of one per chunk.
            by_remaining: dict[int, list[bytes]] = {}
            for i in range(first, stop):
                remaining = locks.readers - locks.consumed.get(i, 0)
                if remaining > 0:
                    by_remaining.setdefault(remaining, []).append(hashes[i])
                    locks.consumed[i] = locks.readers
            rank_id = kv_rank(session.world_size, rank)
            for remaining, group in by_remaining.items():
                k = nkeys.make_keys(group, session.model_name, rank_id, g, session.cache_salt)
                for _ in range(remaining):
                    self.engine.l1.finish_read(k)
            if last is None:
                del session.lookup_locks[(rank, g)]

    # ------------------------------------------------------------------ data ops

    def store(
        self,
        ctx: CallContext,
        key: IPCCacheServerKey,
        instance_id: int,
        block_ids: list[list[int]],
        event: bytes,
    ) -> tuple[bytes, bool]:
        reg = self._registration(instance_id)
        if key.worker_id is None:
            raise errors.InvalidArgumentError("store needs worker_id")
        first, last = self._chunk_range(key)
        if last <= first:
            return (event or STUB_EVENT_HANDLE, True)
        session = self.sessions.get(key.request_id)
        with session.lock:
            hashes = session.hashes(key.token_ids, last)[first:last]
        tag = next(self._tags)
        try:
            for g in range(reg.kv.num_object_groups):
                keys = self._keys(hashes, key, key.worker_id, g)
                transfer.store_chunks(
                    self.engine.l1, reg.kv, keys, block_ids, object_group=g, tag=tag, pool=self.copy_pool
                )
        except errors.NoSpaceError:
            with self._counters_lock:
                self.counters.store_failures += 1
                self.counters.allocation_failure_chunks += last - first
            raise
        with self._counters_lock:
            self.counters.stores += 1
            self.counters.store_chunks += last - first
        return (event or STUB_EVENT_HANDLE, True)

    def retrieve(
        self,
        ctx: CallContext,
        key: IPCCacheServerKey,
        instance_id: int,
        block_ids: list[list[int]],
        event: bytes,
        skip_first_n_tokens: int,
    ) -> tuple[bytes, bool]:
        reg = self._registration(instance_id)
        if key.worker_id is None:
            raise errors.InvalidArgumentError("retrieve needs worker_id")
        first, last = self._chunk_range(key)
        if last <= first:
            return (event or STUB_EVENT_HANDLE, True)
        session = self.sessions.get(key.request_id)
        ok = True
        with session.lock:
            hashes = session.hashes(key.token_ids, last)[first:last]
            for g in range(reg.kv.num_object_groups):
                locks = session.lookup_locks.get((key.worker_id, g))
                consume = locks is not None and last <= locks.chunks
                keys = self._keys(hashes, key, key.worker_id, g)
                n = transfer.retrieve_chunks(
                    self.engine.l1,
                    reg.kv,
                    keys,
                    block_ids,
                    object_group=g,
                    skip_first_n_tokens=skip_first_n_tokens,
                    consume_lookup_locks=consume,
                    pool=self.copy_pool,
                )
                if consume and locks is not None:
                    for i in range(first, first + n):
                        locks.consumed[i] = locks.consumed.get(i, 0) + 1
                if n < last - first:
                    ok = False
        with self._counters_lock:
            self.counters.retrieves += 1
            self.counters.retrieve_chunks += last - first
            if not ok:
                self.counters.retrieve_failures += 1
        return (event or STUB_EVENT_HANDLE, ok)

    def reset_counters(self) -> None:
        with self._counters_lock:
            self.counters = Counters()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.engine_driven.close()
        with self._regs_lock:
            regs = list(self._regs.values())
            self._regs.clear()
        for reg in regs:
            self._close_registration(reg)
