"""The storage engine's configuration: L1 memory, eviction and the periodic notifier.

Later slices (L2 adapters, policies) add their classes here as further fields; each nested class
brings its own argument group and its own key in :func:`lmcache.config.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmcache.config.l1 import EvictionConfig, L1Config, NotifierConfig

__all__ = ["StorageConfig"]


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """Storage engine."""

    l1: L1Config
    eviction: EvictionConfig
    notifier: NotifierConfig = field(default_factory=NotifierConfig)
