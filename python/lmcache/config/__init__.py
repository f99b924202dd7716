"""Configuration: frozen dataclasses that are the one source of every flag, default and range.

See :mod:`lmcache.config.fields` for the mechanism; :class:`ServerConfig` (in
:mod:`lmcache.config.server`) is the whole configuration of ``lmcache server``, and
:func:`inactive_features` lists the options that are set but have no effect in this build.
"""

from __future__ import annotations

from lmcache.config.fields import (
    OptionInfo,
    add_arguments,
    all_options,
    effective_value,
    from_dict,
    from_namespace,
    option,
    title,
    to_dict,
    validate,
)
from lmcache.config.gds import GdsConfig
from lmcache.config.inactive import PENDING_FEATURES, inactive_features
from lmcache.config.l1 import EVICTION_POLICIES, EvictionConfig, L1Config, NotifierConfig
from lmcache.config.l2 import L2_ADAPTER_TYPES, L2Config
from lmcache.config.observability import LookupHashLogConfig, ObservabilityConfig
from lmcache.config.server import HttpConfig, MPServerConfig, ServerConfig
from lmcache.config.storage import StorageConfig

__all__ = [
    "EVICTION_POLICIES",
    "L2_ADAPTER_TYPES",
    "PENDING_FEATURES",
    "EvictionConfig",
    "GdsConfig",
    "HttpConfig",
    "L1Config",
    "L2Config",
    "LookupHashLogConfig",
    "MPServerConfig",
    "NotifierConfig",
    "ObservabilityConfig",
    "OptionInfo",
    "ServerConfig",
    "StorageConfig",
    "add_arguments",
    "all_options",
    "effective_value",
    "from_dict",
    "from_namespace",
    "inactive_features",
    "option",
    "title",
    "to_dict",
    "validate",
]
