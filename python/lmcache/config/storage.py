"""The storage engine's configuration: L1 memory (DRAM, DAX or GDS), eviction, L2 and the notifier.

Each nested class brings its own argument group and its own key in
:func:`lmcache.config.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmcache.config.fields import flag
from lmcache.config.gds import GdsConfig
from lmcache.config.l1 import EvictionConfig, L1Config, NotifierConfig
from lmcache.config.l2 import L2Config

__all__ = ["StorageConfig"]


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """Storage engine."""

    l1: L1Config
    gds: GdsConfig = field(default_factory=GdsConfig)
    eviction: EvictionConfig
    l2: L2Config = field(default_factory=L2Config)
    notifier: NotifierConfig = field(default_factory=NotifierConfig)

    def cross_check(self) -> list[str]:
        """L1 lives in one medium: DRAM, a DAX device or file, or a GDS slab."""
        if self.l1.l1_devdax_path is not None and self.gds.gds_l1_path is not None:
            return [
                f"{flag(GdsConfig, 'gds_l1_path')}: cannot be combined with "
                f"{flag(L1Config, 'l1_devdax_path')}; L1 lives in one medium, give one of them"
            ]
        return []
