"""The engine_driven transfer path (PREPARE/COMMIT, compat reference §9.3), zero copy.

L1 itself lives in a POSIX shared-memory segment (the *pool*, ``lmcache_l1_pool_*``): every L1
object is a byte range of it. A worker maps the pool once (the name and size come back from
``register_kv_cache_engine_driven_context``) and then copies KV straight into and out of L1
objects; the server moves no KV bytes on this path.

* ``prepare_store(key, instance_id)`` reserves one L1 staging object per chunk of
  ``[start, end)`` that is not resident yet (writer tag unique to this prepare) and answers
  ``{context: {slots: [{offset, length, shape, dtype}], chunk_indices}}``: ``slots[i]`` is
  where the worker writes chunk ``chunk_indices[i]`` (counted from ``start``). Chunks already
  resident are left out, as 0.5.6 does; when nothing is left, both lists are empty and the
  client skips the store.
* ``commit_store(key, instance_id, b"")`` publishes the staged objects (FinishWrite) *before*
  its reply, so every later ``lookup`` sees them (compat §20 item 1). Non-empty ``data`` is
  LMCache's pickle path: it is refused and never unpickled (§20 item 10).
* ``prepare_retrieve`` read-locks (pins) every chunk of ``[start, end)``, consumes the locks the
  session's ``lookup`` took on them (the pin now protects the objects), and answers
  ``{success, context: {slots}}``; ``commit_retrieve`` releases the pins.

Object format: one object per chunk, ``shape = [2, num_layers, slots, hidden_dim]`` (or
``[num_layers, slots, hidden_dim]`` for single-plane/MLA layouts), C-contiguous, in the dtype
the worker registered, with ``slots = num_physical_slots`` (default: the chunk size). This is
0.5.6's ``MemoryLayoutDesc`` for these workers, and the same bytes the lmcache_driven path
stores for a one-group model, so the two paths share objects.

Staging and pins that a client never commits do not leak: they are released at
``unregister``, when the instance is reaped, at shutdown, when the same transfer is prepared
again, and (as a last resort) when the L1 write/read lock TTL expires.

Failure answers for 0.5.6 clients (peers without error frames): a full L1 or an unregistered
instance makes ``prepare_store`` answer an empty context, so the client falls back to its own
buffers and its ``commit_store`` gets ``false`` (a failed store, never a silent drop);
``prepare_retrieve`` answers ``{success: false}``. Peers that opted in get error frames.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmcache import errors
from lmcache._native import transfer
from lmcache.config.l1 import GIB
from lmcache.config.server import ServerConfig
from lmcache.protocol.types import (
    IPCCacheServerKey,
    PrepareRetrieveResponse,
    PrepareStoreResponse,
    RegisterEngineDrivenContextPayload,
    RegisterEngineDrivenContextResponse,
    ShmSlotDescriptor,
    SlotContext,
)
from lmcache.server.dispatcher import CallContext
from lmcache.server.sessions import Session

if TYPE_CHECKING:
    from lmcache.server.core import ServerCore

log = logging.getLogger("lmcache.server")

POOL_PREFIX = "lmcache_l1_pool_"
"""0.5.6's prefix of L1 pool names; automatic names are ``lmcache_l1_pool_<pid>_<random>``."""

# torch dtype names (what 0.5.6 workers send, ``str(dtype).split(".")[-1]``) -> (canonical, size)
_DTYPES: dict[str, tuple[str, int]] = {
    "float16": ("float16", 2),
    "half": ("float16", 2),
    "bfloat16": ("bfloat16", 2),
    "float32": ("float32", 4),
    "float": ("float32", 4),
    "float64": ("float64", 8),
    "double": ("float64", 8),
    "float8_e4m3fn": ("float8_e4m3fn", 1),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", 1),
    "float8_e5m2": ("float8_e5m2", 1),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", 1),
    "int8": ("int8", 1),
    "uint8": ("uint8", 1),
    "int16": ("int16", 2),
    "short": ("int16", 2),
    "int32": ("int32", 4),
    "int": ("int32", 4),
    "int64": ("int64", 8),
    "long": ("int64", 8),
}
_MAX_DIM = 1 << 24

TransferKey = tuple[int, str, str, str, int, int, int, int]
"""(instance_id, request_id, model_name, cache_salt, world_size, worker_id, start, end)."""


def l1_pool_name(config: ServerConfig) -> str | None:
    """The SHM segment name L1 gets when this server serves engine_driven, else None.

    ``--shm-name`` unset: ``lmcache_l1_pool_<pid>_<random>``; given: that name (without a leading
    ``/``). Removes the pools of dead servers first (``lmcache_l1_pool_<pid>_*`` whose pid is
    gone; never a live process's). None when the mode is ``lmcache_driven``, when L1 is on a DAX
    device (``auto``; a ConfigError with ``engine_driven``), or when an automatic pool would not
    fit in ``/dev/shm`` (logged: engine_driven is then not served). An explicit pool (or
    ``--supported-transfer-mode engine_driven``) that does not fit is a NoSpaceError.
    """
    mp = config.mp
    if mp.supported_transfer_mode == "lmcache_driven":
        return None
    if config.storage_manager.l1.l1_devdax_path is not None:
        if mp.supported_transfer_mode == "engine_driven":
            raise errors.ConfigError(
                "--supported-transfer-mode engine_driven needs L1 in shared memory; it cannot be "
                "combined with --l1-devdax-path (use lmcache_driven or auto)"
            )
        log.warning(
            "engine_driven is not served: L1 is on --l1-devdax-path, and the engine_driven path "
            "needs L1 in shared memory"
        )
        return None
    try:
        removed = transfer.unlink_stale_segments(POOL_PREFIX)
    except errors.LMCacheError as e:
        log.warning("could not sweep stale L1 pools: %s", e)
        removed = []
    if removed:
        log.info("removed %d stale L1 pool segments of dead servers: %s", len(removed), ", ".join(removed))
    explicit = mp.shm_name is not None
    name = (
        mp.shm_name.lstrip("/")
        if mp.shm_name is not None
        else f"{POOL_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    )
    need = int(config.storage_manager.l1.l1_size_gb * GIB)
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = need  # cannot tell; shm_open will have the last word
    if free < need:
        msg = (
            f"/dev/shm has {free / GIB:.2f} GiB free but the L1 pool needs {need / GIB:.2f} GiB "
            "(--l1-size-gb); enlarge /dev/shm (e.g. docker --shm-size) or lower --l1-size-gb"
        )
        if explicit or mp.supported_transfer_mode == "engine_driven":
            raise errors.NoSpaceError(msg)
        log.warning("engine_driven is not served: %s", msg)
        return None
    return name


@dataclass
class EngineDrivenContext:
    """One registered engine-driven worker and the object layout it reads and writes."""

    instance_id: int
    model_name: str
    world_size: int
    block_size: int
    use_mla: bool
    dtype: str
    shape: tuple[int, ...]
    object_bytes: int
    registered_at: float
    last_seen: float
    last_ping: float | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "world_size": self.world_size,
            "block_size": self.block_size,
            "use_mla": self.use_mla,
            "dtype": self.dtype,
            "object_shape": list(self.shape),
            "object_bytes": self.object_bytes,
        }


@dataclass
class _PendingWrite:
    keys: Any  # KeyList of the staged keys
    tag: int
    chunks: int
    created: float


@dataclass
class _PendingRead:
    keys: Any  # KeyList of the pinned keys
    chunks: int
    created: float


class EngineDrivenTransfer:
    """Registrations, staging and pins of the engine_driven path; handlers for the dispatcher.

    Thread safety: registrations come from the socket thread, transfers from the affinity pool,
    reaping from the reaper; ``_lock`` guards the maps (never held while calling into L1 except
    for the non-blocking abort/release of a replaced entry).
    """

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._contexts: dict[int, EngineDrivenContext] = {}
        self._writes: OrderedDict[TransferKey, _PendingWrite] = OrderedDict()
        self._reads: OrderedDict[TransferKey, _PendingRead] = OrderedDict()
        l1 = core.config.storage_manager.l1
        self._write_ttl = l1.l1_write_ttl_seconds
        self._read_ttl = l1.l1_read_ttl_seconds
        pool = self.pool
        if pool is not None:
            log.info("L1 lives in the engine_driven SHM pool /dev/shm/%s (%d bytes)", pool[0], pool[1])

    @property
    def pool(self) -> tuple[str, int] | None:
        """(segment name, size) of the L1 pool, or None when L1 is not in shared memory."""
        return self._core.engine.shm_pool

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "register_kv_cache_engine_driven_context": self.register,
            "unregister_kv_cache_engine_driven_context": self.unregister,
            "prepare_store": self.prepare_store,
            "commit_store": self.commit_store,
            "prepare_retrieve": self.prepare_retrieve,
            "commit_retrieve": self.commit_retrieve,
        }

    # ------------------------------------------------------------------ registration

    def register(
        self, ctx: CallContext, payload: RegisterEngineDrivenContextPayload
    ) -> RegisterEngineDrivenContextResponse:
        pool = self.pool
        if pool is None:
            raise errors.UnavailableError("engine_driven needs L1 in shared memory; this server has no pool")
        name, size = pool
        now = time.monotonic()
        with self._lock:
            existing = self._contexts.get(payload.instance_id)
            if existing is not None:  # re-registration refreshes liveness only (as 0.5.6)
                existing.last_seen = now
                return RegisterEngineDrivenContextResponse(shm_name=name, pool_size=size)
        c = self._new_context(payload, now, size)
        with self._lock:
            self._contexts.setdefault(payload.instance_id, c)
        log.info(
            "registered engine-driven instance %d (%s, world %d): objects %s %s, %d bytes; pool %s",
            c.instance_id,
            c.model_name,
            c.world_size,
            list(c.shape),
            c.dtype,
            c.object_bytes,
            name,
        )
        return RegisterEngineDrivenContextResponse(shm_name=name, pool_size=size)

    def _new_context(
        self, p: RegisterEngineDrivenContextPayload, now: float, pool_size: int
    ) -> EngineDrivenContext:
        dtype = _DTYPES.get(p.dtype_str)
        if dtype is None:
            raise errors.InvalidArgumentError(
                f"dtype_str {p.dtype_str!r} is not a supported torch dtype name "
                f"(one of {', '.join(sorted(_DTYPES))})"
            )
        slots = self._core.chunk_size if p.num_physical_slots is None else p.num_physical_slots
        for field_name, value in (
            ("num_layers", p.num_layers),
            ("hidden_dim_size", p.hidden_dim_size),
            ("block_size", p.block_size),
            ("num_physical_slots", slots),
            ("world_size", p.world_size),
        ):
            if not 1 <= value <= _MAX_DIM:
                raise errors.InvalidArgumentError(f"{field_name} must be in 1..{_MAX_DIM}, got {value}")
        shape = (
            (p.num_layers, slots, p.hidden_dim_size)
            if p.use_mla
            else (2, p.num_layers, slots, p.hidden_dim_size)
        )
        nbytes = math.prod(shape) * dtype[1]
        if nbytes > pool_size:
            raise errors.InvalidArgumentError(
                f"one chunk object ({list(shape)} {dtype[0]}, {nbytes} bytes) exceeds the L1 pool "
                f"({pool_size} bytes)"
            )
        return EngineDrivenContext(
            instance_id=p.instance_id,
            model_name=p.model_name,
            world_size=p.world_size,
            block_size=p.block_size,
            use_mla=p.use_mla,
            dtype=dtype[0],
            shape=shape,
            object_bytes=nbytes,
            registered_at=now,
            last_seen=now,
        )

    def unregister(self, ctx: CallContext, instance_id: int) -> None:
        if not self._drop(instance_id):
            log.info("unregister_kv_cache_engine_driven_context: instance %d is not registered", instance_id)

    def _drop(self, instance_id: int) -> bool:
        """Forget an instance and release everything it staged or pinned."""
        with self._lock:
            c = self._contexts.pop(instance_id, None)
            writes = [self._writes.pop(k) for k in [k for k in self._writes if k[0] == instance_id]]
            reads = [self._reads.pop(k) for k in [k for k in self._reads if k[0] == instance_id]]
        self._release(writes, reads)
        if writes or reads:
            log.info(
                "instance %d: aborted %d staged stores, released %d pinned retrieves",
                instance_id,
                len(writes),
                len(reads),
            )
        return c is not None

    def _release(self, writes: list[_PendingWrite], reads: list[_PendingRead]) -> None:
        l1 = self._core.engine.l1
        now = time.monotonic()
        for w in writes:
            l1.abort_write(w.keys, w.tag)
        for r in reads:
            # A pin past its TTL is gone already; releasing it could drop someone else's lock.
            if now - r.created < self._read_ttl:
                l1.finish_read(r.keys)

    # ------------------------------------------------------------------ liveness

    def touch(self, instance_id: int) -> None:
        """A heartbeat ``ping`` from this instance."""
        now = time.monotonic()
        with self._lock:
            c = self._contexts.get(instance_id)
            if c is not None:
                c.last_ping = c.last_seen = now

    def reap_stale(self, now: float, reap_timeout: float, registration_grace: float) -> list[int]:
        """Unregister instances silent for longer than their budget (``reap_timeout`` once they
        pinged, ``registration_grace`` before); returns their ids."""
        with self._lock:
            stale = [
                c
                for c in self._contexts.values()
                if now - c.last_seen > (reap_timeout if c.last_ping is not None else registration_grace)
            ]
        reaped = []
        for c in stale:
            if self._drop(c.instance_id):
                log.warning(
                    "reaped engine-driven instance %d: silent for %.0f s", c.instance_id, now - c.last_seen
                )
                reaped.append(c.instance_id)
        if reaped:
            core = self._core
            with core._counters_lock:
                core.counters.reaped += len(reaped)
        return reaped

    def contexts(self) -> list[EngineDrivenContext]:
        with self._lock:
            return list(self._contexts.values())

    def _context(self, instance_id: int) -> EngineDrivenContext:
        with self._lock:
            c = self._contexts.get(instance_id)
            if c is None:
                raise errors.NotFoundError(f"instance {instance_id} has no engine-driven registration")
            c.last_seen = time.monotonic()
            return c

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _transfer_key(key: IPCCacheServerKey, instance_id: int) -> TransferKey:
        return (
            instance_id,
            key.request_id,
            key.model_name,
            key.cache_salt,
            key.world_size,
            -1 if key.worker_id is None else key.worker_id,
            key.start,
            key.end,
        )

    def _chunk_keys(self, key: IPCCacheServerKey) -> tuple[int, list[bytes]]:
        """(first chunk index, hashes of the full chunks of [start, end))."""
        core = self._core
        if key.worker_id is None:
            raise errors.InvalidArgumentError("engine-driven transfers need worker_id")
        first, last = core._chunk_range(key)
        if last <= first:
            return first, []
        session = core.sessions.get(key.request_id)
        with session.lock:
            return first, session.hashes(key.token_ids, last)[first:last]

    def _keys(self, hashes: list[bytes], key: IPCCacheServerKey) -> Any:
        assert key.worker_id is not None
        return self._core._keys(hashes, key, key.worker_id, 0)

    def _prune(self, now: float) -> None:
        """Forget entries older than their lock TTL (their staging/pins are gone in L1 by then).
        Oldest first: insertion order is creation order. REQUIRES: self._lock."""
        expired_writes = []
        while self._writes:
            k, w = next(iter(self._writes.items()))
            if now - w.created <= self._write_ttl:
                break
            expired_writes.append(self._writes.pop(k))
        while self._reads:
            k, r = next(iter(self._reads.items()))
            if now - r.created <= self._read_ttl:
                break
            del self._reads[k]
        l1 = self._core.engine.l1
        for w in expired_writes:
            l1.abort_write(w.keys, w.tag)  # a no-op if the sweeper reclaimed them already

    def _count(self, **deltas: int) -> None:
        core = self._core
        with core._counters_lock:
            for name, d in deltas.items():
                setattr(core.counters, name, getattr(core.counters, name) + d)

    # ------------------------------------------------------------------ store

    def prepare_store(
        self, ctx: CallContext, key: IPCCacheServerKey, instance_id: int
    ) -> PrepareStoreResponse:
        try:
            c = self._context(instance_id)
        except errors.NotFoundError:
            if ctx.error_frames:
                raise
            log.warning("prepare_store: instance %d is not registered; the store will fail", instance_id)
            return PrepareStoreResponse()  # {}: the client's commit_store then gets false
        tkey = self._transfer_key(key, instance_id)
        self._abort_pending_write(tkey)  # a repeated prepare replaces the earlier one
        _, hashes = self._chunk_keys(key)
        if not hashes:
            return PrepareStoreResponse(context=SlotContext(slots=[], chunk_indices=[]))
        keys = self._keys(hashes, key)
        l1 = self._core.engine.l1
        tag = next(self._core._tags)
        try:
            bufs = l1.reserve_write(keys, c.object_bytes, tag)
        except errors.NoSpaceError:
            self._count(store_failures=1, allocation_failure_chunks=len(hashes))
            if ctx.error_frames:
                raise
            log.warning("prepare_store: L1 is full (%d chunks); the store will fail", len(hashes))
            return PrepareStoreResponse()
        indices = [i for i, b in enumerate(bufs) if b is not None]
        if not indices:  # everything resident: the client skips the store
            return PrepareStoreResponse(context=SlotContext(slots=[], chunk_indices=[]))
        offsets = l1.offsets(bufs)
        staged = keys if len(indices) == len(bufs) else self._keys([hashes[i] for i in indices], key)
        shape = list(c.shape)
        slots = []
        for i in indices:
            off = offsets[i]
            assert off is not None
            slots.append(ShmSlotDescriptor(offset=off, length=c.object_bytes, shape=shape, dtype=c.dtype))
        now = time.monotonic()
        with self._lock:
            live = self._contexts.get(instance_id) is c
            if live:
                self._prune(now)
                self._writes[tkey] = _PendingWrite(staged, tag, len(indices), now)
        if not live:  # unregistered meanwhile
            l1.abort_write(staged, tag)
            raise errors.NotFoundError(f"instance {instance_id} was unregistered during prepare_store")
        return PrepareStoreResponse(context=SlotContext(slots=slots, chunk_indices=indices))

    def _abort_pending_write(self, tkey: TransferKey) -> _PendingWrite | None:
        with self._lock:
            w = self._writes.pop(tkey, None)
        if w is not None:
            self._core.engine.l1.abort_write(w.keys, w.tag)
        return w

    def commit_store(self, ctx: CallContext, key: IPCCacheServerKey, instance_id: int, data: bytes) -> bool:
        tkey = self._transfer_key(key, instance_id)
        if data:
            self._abort_pending_write(tkey)
            self._count(store_failures=1)
            raise errors.InvalidArgumentError(
                f"commit_store with {len(data)} bytes of data: that is LMCache's pickle transfer path, "
                "which this server never unpickles; workers write into the SHM pool (data must be empty)"
            )
        with self._lock:
            w = self._writes.pop(tkey, None)
            c = self._contexts.get(instance_id)
            if c is not None:
                c.last_seen = time.monotonic()
        if w is None:
            # Nothing staged: prepare_store failed (full L1, unknown instance), was replaced, or
            # the instance was unregistered. A 0.5.6 client then reports a failed store.
            self._count(store_failures=1)
            return False
        l1 = self._core.engine.l1
        if time.monotonic() - w.created > self._write_ttl:
            l1.abort_write(w.keys, w.tag)
            self._count(store_failures=1)
            log.warning("commit_store after the write TTL: the staged objects were reclaimed")
            return False
        try:
            l1.finish_write(w.keys, w.tag)  # visible before the reply (compat §20 item 1)
        except errors.NotFoundError as e:  # some staging was cancelled (clear --force) or reclaimed
            self._count(store_failures=1)
            log.warning("commit_store: %s", e)
            return False
        self._count(stores=1, store_chunks=w.chunks)
        return True

    # ------------------------------------------------------------------ retrieve

    def prepare_retrieve(
        self, ctx: CallContext, key: IPCCacheServerKey, instance_id: int
    ) -> PrepareRetrieveResponse:
        c = self._context(instance_id)
        tkey = self._transfer_key(key, instance_id)
        with self._lock:
            old = self._reads.pop(tkey, None)
        if old is not None:  # a repeated prepare replaces the earlier pin
            self._release([], [old])
        first, hashes = self._chunk_keys(key)
        if not hashes:
            return PrepareRetrieveResponse(success=False)
        assert key.worker_id is not None
        core = self._core
        l1 = core.engine.l1
        keys = self._keys(hashes, key)
        n = len(hashes)
        session = core.sessions.get(key.request_id)
        with session.lock:
            views = l1.reserve_read_prefix(keys, 1)
            bad = next((i for i, v in enumerate(views) if len(v) != c.object_bytes), None)
            if len(views) < n or bad is not None:
                if views:
                    l1.finish_read(keys.slice(0, len(views)))
                self._count(retrieves=1, retrieve_chunks=n, retrieve_failures=1)
                if bad is not None:
                    log.warning(
                        "prepare_retrieve: chunk %d holds %d bytes, instance %d expects %d (%s %s)",
                        first + bad,
                        len(views[bad]),
                        instance_id,
                        c.object_bytes,
                        list(c.shape),
                        c.dtype,
                    )
                return PrepareRetrieveResponse(success=False)
            offsets = l1.offsets(views)
            self._consume_lookup_locks(session, key, key.worker_id, first, hashes)
        del views
        shape = list(c.shape)
        slots = []
        for off in offsets:
            assert off is not None
            slots.append(ShmSlotDescriptor(offset=off, length=c.object_bytes, shape=shape, dtype=c.dtype))
        now = time.monotonic()
        with self._lock:
            live = self._contexts.get(instance_id) is c
            if live:
                self._prune(now)
                self._reads[tkey] = _PendingRead(keys, n, now)
        if not live:
            l1.finish_read(keys)
            raise errors.NotFoundError(f"instance {instance_id} was unregistered during prepare_retrieve")
        self._count(retrieves=1, retrieve_chunks=n)
        return PrepareRetrieveResponse(success=True, data=b"", context=SlotContext(slots=slots))

    def _consume_lookup_locks(
        self, session: Session, key: IPCCacheServerKey, rank: int, first: int, hashes: list[bytes]
    ) -> None:
        """Release one of the lookup's locks on each chunk of [first, first + len(hashes)) that
        still has one: our pin protects the objects now. REQUIRES: session.lock."""
        locks = session.lookup_locks.get((rank, 0))
        if locks is None:
            return
        take = [
            i
            for i in range(first, min(first + len(hashes), locks.chunks))
            if locks.consumed.get(i, 0) < locks.readers
        ]
        if not take:
            return
        self._core.engine.l1.finish_read(self._keys([hashes[i - first] for i in take], key))
        for i in take:
            locks.consumed[i] = locks.consumed.get(i, 0) + 1

    def commit_retrieve(self, ctx: CallContext, key: IPCCacheServerKey, instance_id: int) -> bool:
        tkey = self._transfer_key(key, instance_id)
        with self._lock:
            r = self._reads.pop(tkey, None)
            c = self._contexts.get(instance_id)
            if c is not None:
                c.last_seen = time.monotonic()
        if r is not None:
            self._release([], [r])
        return True  # as 0.5.6, also when nothing was pinned

    # ------------------------------------------------------------------ status / lifecycle

    def status(self) -> dict[str, Any]:
        pool = self.pool
        with self._lock:
            contexts = list(self._contexts.values())
            pending_stores = len(self._writes)
            pending_retrieves = len(self._reads)
        return {
            "registered_non_cuda_instance_ids": sorted(c.instance_id for c in contexts),
            "non_cuda_context_meta": {str(c.instance_id): c.describe() for c in contexts},
            "engine_driven": {
                "shm_name": pool[0] if pool else "",
                "pool_size": pool[1] if pool else 0,
                "pending_stores": pending_stores,
                "pending_retrieves": pending_retrieves,
            },
        }

    def close(self) -> None:
        """Release every instance's staging and pins (server shutdown)."""
        for c in self.contexts():
            self._drop(c.instance_id)
        with self._lock:
            writes, reads = list(self._writes.values()), list(self._reads.values())
            self._writes.clear()
            self._reads.clear()
        self._release(writes, reads)
