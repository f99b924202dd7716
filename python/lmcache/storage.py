"""The storage engine: the native L1 store, its eviction controller and the periodic notifier,
built from one :class:`~lmcache.config.StorageConfig` and owned together.

The server (and anything else that embeds the core from Python) creates one ``StorageEngine``,
calls :meth:`StorageEngine.start`, and :meth:`StorageEngine.close` at shutdown (or uses it as a
context manager). Everything here is glue: the work happens in C++ with the GIL released.

With ``shm_name`` the L1 arena is a new POSIX shared-memory segment of that name (the
engine_driven pool: workers map it and copy KV straight into L1 objects). :meth:`close` removes
the name at once (so a shutdown leaves nothing in ``/dev/shm`` even while buffers are still
referenced); a finalizer does the same if ``close`` is never called.
"""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Any

from lmcache.config import StorageConfig
from lmcache.config.l1 import GIB

__all__ = ["StorageEngine"]


class StorageEngine:
    """Owns the L1 store, the eviction controller and the notifier of one process."""

    def __init__(self, config: StorageConfig, *, shm_name: str | None = None) -> None:
        """``shm_name``: put L1 in a new POSIX SHM segment of that name (AlreadyExistsError if
        one exists); None keeps L1 in private memory (or the DAX device)."""
        from lmcache._native import eviction, l1, notify  # native import deferred: CLI stays light

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
        """Stop, and remove the L1 SHM segment's name (mappings stay valid until the store goes)."""
        self.stop()
        if self._unlink_shm is not None:
            self._unlink_shm()

    @property
    def shm_pool(self) -> tuple[str, int] | None:
        """``(segment name, size in bytes)`` of an L1 that lives in shared memory, else None."""
        name = self.l1.shm_name
        return (name, int(self.l1.stats()["capacity_bytes"])) if name else None

    @property
    def healthy(self) -> bool:
        """True while every background thread runs and ticks on time."""
        return self._started and self.eviction.healthy and bool(self.notifier.stats()["running"])

    def status(self) -> dict[str, Any]:
        """A snapshot of the engine for health checks, ``/status`` and ``describe``."""
        return {
            "healthy": self.healthy,
            "l1": self.l1.stats(),
            "eviction": self.eviction.stats(),
            "notifier": self.notifier.stats(),
        }

    def __enter__(self) -> StorageEngine:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
