"""The storage engine: the native L1 store, its eviction controller, the periodic notifier and,
with ``--l2-adapter``, the L2 tier (adapters plus store and prefetch controllers), built from one
:class:`~lmcache.config.StorageConfig` and owned together.

The L2 adapters are created in C++ from their JSON specs when the engine is built; a bad spec
raises :class:`~lmcache.errors.ConfigError` naming ``--l2-adapter`` (a backend that cannot be
opened raises :class:`~lmcache.errors.StorageIOError`). :meth:`StorageEngine.close` flushes the
write-behind queue (bounded by :data:`L2_FLUSH_ON_CLOSE_SECONDS`) and closes the L2 tier before
anything else stops.

The server (and anything else that embeds the core from Python) creates one ``StorageEngine``,
calls :meth:`StorageEngine.start`, and :meth:`StorageEngine.close` at shutdown (or uses it as a
context manager). Everything here is glue: the work happens in C++ with the GIL released.

With ``shm_name`` the L1 arena is a new POSIX shared-memory segment of that name (the
engine_driven pool: workers map it and copy KV straight into L1 objects). :meth:`close` removes
the name at once (so a shutdown leaves nothing in ``/dev/shm`` even while buffers are still
referenced); a finalizer does the same if ``close`` is never called.
"""

from __future__ import annotations

import logging
import weakref
from types import TracebackType
from typing import Any

from lmcache import errors
from lmcache.config import StorageConfig
from lmcache.config.l1 import GIB

__all__ = ["L2_FLUSH_ON_CLOSE_SECONDS", "L2_TASK_TIMEOUT_SECONDS", "StorageEngine"]

log = logging.getLogger("lmcache.storage")

# Each L2 lookup/load task a prefetch waits for may take this long before its keys count as
# misses (a slow adapter degrades lookups, it never hangs them).
L2_TASK_TIMEOUT_SECONDS = 10.0
# At shutdown, how long the write-behind queue may take to drain before it is dropped.
L2_FLUSH_ON_CLOSE_SECONDS = 5.0


class StorageEngine:
    """Owns the L1 store, the eviction controller and the notifier of one process."""

    def __init__(self, config: StorageConfig, *, shm_name: str | None = None) -> None:
        """``shm_name``: put L1 in a new POSIX SHM segment of that name (AlreadyExistsError if
        one exists); None keeps L1 in private memory (or the DAX device)."""
        from lmcache._native import eviction, l1, l2ctl, notify  # deferred: the CLI stays light

        self.config = config
        c = config.l1
        capacity = int(c.l1_size_gb * GIB)
        align = c.l1_align_bytes
        capacity = (capacity + align - 1) // align * align
        lazy = c.l1_use_lazy and c.l1_devdax_path is None
        self.l1 = l1.L1Store(
            capacity,
            align_bytes=align,
            lazy=lazy,
            initial_bytes=min(capacity, int(c.l1_init_size_gb * GIB)) if lazy else 0,
            devdax_path=c.l1_devdax_path or "",
            write_ttl_seconds=c.l1_write_ttl_seconds,
            read_ttl_seconds=c.l1_read_ttl_seconds,
            eviction_policy=config.eviction.eviction_policy,
            shm_name=shm_name or "",
        )
        # Unlink the SHM name when the engine is collected or at exit, if close() never ran.
        self._unlink_shm = weakref.finalize(self, self.l1.unlink_shm) if shm_name else None
        self.eviction = eviction.EvictionController(
            self.l1,
            trigger_watermark=config.eviction.eviction_trigger_watermark,
            eviction_ratio=config.eviction.eviction_ratio,
        )
        self.notifier = notify.PeriodicNotifier(config.notifier.periodic_notifier_interval_ms)
        self.l2: Any = None  # l2ctl.L2Tier with --l2-adapter, else None
        l2 = config.l2
        if l2.l2_adapter:
            try:
                self.l2 = l2ctl.L2Tier(
                    self.l1,
                    list(l2.l2_adapter),
                    store_policy=l2.l2_store_policy,
                    prefetch_policy=l2.l2_prefetch_policy,
                    max_in_flight=l2.l2_prefetch_max_in_flight,
                    task_timeout_seconds=L2_TASK_TIMEOUT_SECONDS,
                    notifier=self.notifier,
                )
            except errors.InvalidArgumentError as exc:
                raise errors.ConfigError(f"--l2-adapter: {exc}") from None
            except errors.LMCacheError as exc:
                raise type(exc)(f"--l2-adapter: {exc}") from None
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self.eviction.start()
        self.notifier.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self.notifier.stop()
        self.eviction.stop()
        self._started = False

    def close(self) -> None:
        """Flush and close the L2 tier, stop, and remove the L1 SHM segment's name (mappings stay
        valid until the store goes)."""
        self.close_l2()
        self.stop()
        if self._unlink_shm is not None:
            self._unlink_shm()

    def close_l2(self, flush_seconds: float = L2_FLUSH_ON_CLOSE_SECONDS) -> None:
        """Let the write-behind queue drain (up to ``flush_seconds``), then stop both L2
        controllers and close the adapters. Idempotent; L1 stays usable."""
        if self.l2 is None or self.l2.closed:
            return
        if flush_seconds > 0 and not self.l2.flush(flush_seconds):
            stats = self.l2.store_stats()
            log.warning(
                "L2 write-behind not drained within %.1f s: %d keys queued, %d batches in flight dropped",
                flush_seconds,
                stats["queue_depth"],
                stats["in_flight_batches"],
            )
        self.l2.close()

    @property
    def shm_pool(self) -> tuple[str, int] | None:
        """``(segment name, size in bytes)`` of an L1 that lives in shared memory, else None."""
        name = self.l1.shm_name
        return (name, int(self.l1.stats()["capacity_bytes"])) if name else None

    @property
    def healthy(self) -> bool:
        """True while every background thread runs and ticks on time."""
        return (
            self._started
            and self.eviction.healthy
            and bool(self.notifier.stats()["running"])
            and self.l2_healthy
        )

    @property
    def l2_healthy(self) -> bool:
        """True without L2, or while both L2 controllers run."""
        if self.l2 is None:
            return True
        if self.l2.closed:
            return False
        return bool(self.l2.store_stats()["running"]) and bool(self.l2.prefetch_stats()["running"])

    def status(self) -> dict[str, Any]:
        """A snapshot of the engine for health checks, ``/status`` and ``describe``."""
        return {
            "healthy": self.healthy,
            "l1": self.l1.stats(),
            "eviction": self.eviction.stats(),
            "notifier": self.notifier.stats(),
            "l2": self.l2_status(),
        }

    def l2_status(self) -> dict[str, Any] | None:
        """Adapters (status, counters, usage) and both controllers' stats; None without L2."""
        if self.l2 is None or self.l2.closed:
            return None
        return {
            "adapters": self.l2.adapters_status(),
            "store_controller": self.l2.store_stats(),
            "prefetch_controller": self.l2.prefetch_stats(),
        }

    def __enter__(self) -> StorageEngine:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
