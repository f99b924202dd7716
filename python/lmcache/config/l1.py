"""L1 memory, eviction and periodic-notifier options of ``lmcache server``.

Sizes in GB are binary: 1 GB = 2**30 bytes (as LMCache computes them).

Accepted ranges, and why:

* ``--l1-size-gb``: > 0 and <= 65536 (64 TiB, far above any single machine today), and no more
  than the machine's physical memory unless ``--l1-devdax-path`` puts L1 on a DAX device or file.
* ``--l1-init-size-gb``: > 0 and <= 65536; the engine clamps it to ``--l1-size-gb``, so the
  default of 20 also works with a smaller L1.
* ``--l1-align-bytes``: a power of two from 64 (one cache line; below that objects could share a
  line between writers) to 1 GiB (the largest huge page).
* TTLs: > 0 and <= one year (the engine keeps them as 64-bit nanosecond durations).
* ``--eviction-trigger-watermark`` and ``--eviction-ratio``: in (0, 1].
* ``--periodic-notifier-interval-ms``: 1 ms to 60000 ms (one minute).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import ClassVar

from lmcache.config.fields import Requirement, flag, number_range, option, power_of_two, show_value

__all__ = [
    "EVICTION_POLICIES",
    "GIB",
    "MAX_L1_SIZE_GB",
    "EvictionConfig",
    "L1Config",
    "NotifierConfig",
    "physical_memory_bytes",
]

GIB = 1 << 30
MAX_L1_SIZE_GB = 65536.0
_MAX_TTL_SECONDS = 365 * 24 * 3600.0

EVICTION_POLICIES = ("LRU", "IsolatedLRU", "noop")


def physical_memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return int(pages) * int(page_size)


def _is_file_or_char_device(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(mode) or stat.S_ISCHR(mode)


_EXISTING_DAX = Requirement(
    "to an existing regular file or character device", _is_file_or_char_device, noun="a path"
)
_TTL = number_range(gt=0, le=_MAX_TTL_SECONDS)
_GB = number_range(gt=0, le=MAX_L1_SIZE_GB)


@dataclass(frozen=True, kw_only=True)
class L1Config:
    """The L1 tier: its memory and the TTLs of its object locks."""

    TITLE: ClassVar[str] = "L1 Memory Manager"

    l1_size_gb: float = option(
        "--l1-size-gb",
        "Size of the L1 (in-memory) tier in GB (1 GB = 2^30 bytes). Without --l1-devdax-path, L1 is "
        "DRAM and must fit in this machine's physical memory.",
        required=True,
        validate=_GB,
        metavar="GB",
    )
    l1_use_lazy: bool = option(
        "--l1-use-lazy",
        "Allocate L1 lazily. On CPU the full size is only reserved as address space at start, and a "
        "background thread faults pages in ahead of use, so an idle server stays small. With "
        "--no-l1-use-lazy all of L1 is committed and touched before the server starts serving.",
        True,
        negatable=True,
    )
    l1_init_size_gb: float = option(
        "--l1-init-size-gb",
        "With lazy allocation, the part of L1 (in GB) made ready at start; clamped to --l1-size-gb.",
        20.0,
        validate=_GB,
        metavar="GB",
    )
    l1_align_bytes: int = option(
        "--l1-align-bytes",
        "Alignment of every L1 object, in bytes. The default matches the page size and O_DIRECT I/O.",
        4096,
        validate=power_of_two(64, GIB),
        metavar="BYTES",
    )
    l1_devdax_path: str | None = option(
        "--l1-devdax-path",
        "A /dev/dax* device or an mmap-able file to hold L1 instead of DRAM; its size may exceed "
        "physical memory.",
        None,
        validate=_EXISTING_DAX,
        metavar="PATH",
    )
    l1_write_ttl_seconds: float = option(
        "--l1-write-ttl-seconds",
        "Lifetime of an object's write lock (held while the object is being stored), in seconds. A "
        "lock older than this no longer protects the object.",
        600.0,
        validate=_TTL,
        metavar="SECONDS",
    )
    l1_read_ttl_seconds: float = option(
        "--l1-read-ttl-seconds",
        "Lifetime of an object's read lock (held from lookup until retrieve), in seconds. A lock "
        "older than this no longer keeps the object from eviction.",
        300.0,
        validate=_TTL,
        metavar="SECONDS",
    )

    def cross_check(self) -> list[str]:
        """L1 in DRAM must fit in physical memory."""
        if self.l1_devdax_path is not None:
            return []
        ram = physical_memory_bytes()
        if ram is None or self.l1_size_gb * GIB <= ram:
            return []
        return [
            f"{flag(L1Config, 'l1_size_gb')}: got {show_value(self.l1_size_gb)}; must be <= this machine's "
            f"physical memory ({ram / GIB:.1f} GB) unless {flag(L1Config, 'l1_devdax_path')} is given"
        ]

    @property
    def l1_size_bytes(self) -> int:
        return int(self.l1_size_gb * GIB)


@dataclass(frozen=True, kw_only=True)
class EvictionConfig:
    """How L1 makes room."""

    TITLE: ClassVar[str] = "Eviction Policy"

    eviction_policy: str = option(
        "--eviction-policy",
        "Which L1 objects are evicted. LRU: least recently used first, over all objects. IsolatedLRU: "
        "one LRU list per cache_salt, each held to the quota set through the /quota HTTP endpoints; a "
        "cache_salt without a quota may keep 0 bytes. noop: no policy eviction; L1 is a write buffer "
        "whose objects are dropped once stored to L2.",
        required=True,
        choices=EVICTION_POLICIES,
    )
    eviction_trigger_watermark: float = option(
        "--eviction-trigger-watermark",
        "Share of L1 bytes in use at which eviction starts.",
        0.8,
        validate=number_range(gt=0, le=1),
        metavar="RATIO",
    )
    eviction_ratio: float = option(
        "--eviction-ratio",
        "Share of the used L1 bytes to free each time eviction runs (counted in bytes, not keys).",
        0.2,
        validate=number_range(gt=0, le=1),
        metavar="RATIO",
    )


@dataclass(frozen=True, kw_only=True)
class NotifierConfig:
    """The native periodic notifier."""

    TITLE: ClassVar[str] = "Periodic Notifier"

    periodic_notifier_interval_ms: int = option(
        "--periodic-notifier-interval-ms",
        "Period, in milliseconds, of the native thread that signals the eventfds of registered L2 "
        "adapters, waking the poll loops of adapters that have no completion callback of their own.",
        5,
        validate=number_range(ge=1, le=60000),
        metavar="MS",
    )
