"""Exit statuses of the ``lmcache`` command, and the usage error commands may raise.

=====  ==============================================================================
code   meaning
=====  ==============================================================================
0      success
1      the command ran and failed (an LMCacheError, or an unexpected exception)
2      the invocation was wrong: unknown or missing arguments, or an invalid
       configuration value (ConfigError); nothing was started
130    interrupted (Ctrl-C)
141    stdout was closed early (a broken pipe, e.g. ``lmcache ... | head``); 128 + SIGPIPE,
       the status a shell reports for tools killed by SIGPIPE
=====  ==============================================================================
"""

from __future__ import annotations

import enum

from lmcache.errors import LMCacheError

__all__ = ["ExitStatus", "UsageError"]


class ExitStatus(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130
    BROKEN_PIPE = 141


class UsageError(LMCacheError):
    """The command line is wrong (exit status 2). The message is one line."""

    code = "usage"
