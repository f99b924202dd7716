"""The GDS L1 tier of ``lmcache server``: L1 in an NVMe slab file read and written with GPUDirect
Storage instead of pinned DRAM.

Parsed and validated, not yet active in this build (see :mod:`lmcache.config.inactive`).
``--gds-l1-path`` must name an existing directory: the slab ``lmcache_gds_slab.bin`` is created
inside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from lmcache.config.fields import Requirement, option

__all__ = ["GDS_SLAB_NAME", "GdsConfig"]

GDS_SLAB_NAME = "lmcache_gds_slab.bin"

_EXISTING_DIR = Requirement("to an existing directory", os.path.isdir, noun="a path")


@dataclass(frozen=True, kw_only=True)
class GdsConfig:
    """The GDS L1 tier."""

    TITLE: ClassVar[str] = "GDS L1 Tier"

    gds_l1_path: str | None = option(
        "--gds-l1-path",
        "An NVMe directory for the GDS L1 slab (one per process, <path>/lmcache_gds_slab.bin). "
        "Setting it puts L1 in the slab, read and written with GPUDirect Storage, instead of pinned "
        "DRAM; --l1-size-gb then sizes the slab.",
        None,
        validate=_EXISTING_DIR,
        metavar="DIR",
    )
    gds_l1_use_direct_io: bool = option(
        "--gds-l1-use-direct-io",
        "Open the GDS slab with O_DIRECT (needed for the GDS DMA fast path on ext4).",
        True,
        negatable=True,
    )
