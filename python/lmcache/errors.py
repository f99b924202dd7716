"""Exceptions raised by lmcache.

Every failure the native core reports crosses into Python exactly once, in
``cpp/bindings/errors.cc``, which maps each C++ ``StatusCode`` to the class of
the same name below (``CODE_TO_ERROR``). Python code raises these classes too,
so callers catch one hierarchy whatever layer failed.
"""

from __future__ import annotations


class LMCacheError(Exception):
    """Base class of every lmcache error. ``code`` is the stable status name."""

    code = "unknown"


class NotFoundError(LMCacheError, KeyError):
    code = "not_found"

    def __str__(self) -> str:  # KeyError quotes its message; keep it plain
        return str(self.args[0]) if self.args else self.code


class NoSpaceError(LMCacheError, MemoryError):
    code = "no_space"


class StorageIOError(LMCacheError, OSError):
    code = "io_error"


class InvalidArgumentError(LMCacheError, ValueError):
    code = "invalid_argument"


class UnavailableError(LMCacheError):
    code = "unavailable"


class CorruptionError(LMCacheError):
    code = "corruption"


class LMCacheTimeoutError(LMCacheError, TimeoutError):
    code = "timeout"


class AlreadyExistsError(LMCacheError):
    code = "already_exists"


class BusyError(LMCacheError):
    code = "busy"


class ConfigError(InvalidArgumentError):
    """An invalid configuration value. The message names the flag and the accepted range."""


CODE_TO_ERROR: dict[str, type[LMCacheError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        NoSpaceError,
        StorageIOError,
        InvalidArgumentError,
        UnavailableError,
        CorruptionError,
        LMCacheTimeoutError,
        AlreadyExistsError,
        BusyError,
    )
}

__all__ = [
    "CODE_TO_ERROR",
    "AlreadyExistsError",
    "BusyError",
    "ConfigError",
    "CorruptionError",
    "InvalidArgumentError",
    "LMCacheError",
    "LMCacheTimeoutError",
    "NoSpaceError",
    "NotFoundError",
    "StorageIOError",
    "UnavailableError",
]
