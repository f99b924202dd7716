"""Configuration: frozen dataclasses that are the one source of every flag, default and range.

See :mod:`lmcache.config.fields` for the mechanism and :mod:`lmcache.config.l1` for the options.
"""

from __future__ import annotations

from lmcache.config.fields import (
    OptionInfo,
    add_arguments,
    all_options,
    from_dict,
    from_namespace,
    option,
    title,
    to_dict,
    validate,
)
from lmcache.config.l1 import EVICTION_POLICIES, EvictionConfig, L1Config, NotifierConfig
from lmcache.config.storage import StorageConfig

__all__ = [
    "EVICTION_POLICIES",
    "EvictionConfig",
    "L1Config",
    "NotifierConfig",
    "OptionInfo",
    "StorageConfig",
    "add_arguments",
    "all_options",
    "from_dict",
    "from_namespace",
    "option",
    "title",
    "to_dict",
    "validate",
]
