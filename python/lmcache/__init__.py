"""lmcache: a KV-cache server for LLM inference engines (C++ core, Python shell)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

# Development hook: look for the native module (_native*.so) in this directory first, so
# several builds of one source tree can be tested side by side. Unset in production.
_native_dir = os.environ.get("LMCACHE_NATIVE_DIR")
if _native_dir:
    __path__.insert(0, _native_dir)

try:
    __version__ = version("lmcache")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
