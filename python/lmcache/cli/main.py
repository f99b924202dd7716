# PYTHON_ARGCOMPLETE_OK
"""The ``lmcache`` entry point.

``main(argv)`` parses the command line, runs the chosen command's ``run(args)`` and returns its
exit status. Exceptions become exit statuses and messages in exactly one place,
:func:`_exit_status_for` (statuses in :mod:`lmcache.cli.status`):

* ``UsageError`` (argparse's complaints included) and ``ConfigError``: 2, one
  ``lmcache: error: ...`` line per problem on stderr;
* any other ``LMCacheError``: 1, its message;
* ``KeyboardInterrupt``: 130, silently;
* ``BrokenPipeError`` (stdout closed by the reader): 141, silently;
* any other exception: 1, one line with its type and message. Set ``LMCACHE_DEBUG=1`` to get the
  traceback as well (for every error above except the silent ones).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, NoReturn, cast

from lmcache import __version__
from lmcache.cli.commands import COMMANDS
from lmcache.cli.status import ExitStatus, UsageError
from lmcache.errors import ConfigError, LMCacheError

__all__ = ["build_parser", "entry_point", "main"]

_PROG = "lmcache"
_PROG_ATTR = "_lmcache_prog"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting.

    Subparsers are created with the parent's class, so this holds for every command. Abbreviated
    long options are refused: ``--l1-size`` must not silently mean ``--l1-size-gb``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # The deepest (sub)parser's default wins, so after parsing this names the command used.
        self.set_defaults(**{_PROG_ATTR: self.prog})

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        raise UsageError(" ".join(message.split()) + hint)


def build_parser() -> argparse.ArgumentParser:
    """The root parser with every registered command."""
    parser = _Parser(
        prog=_PROG,
        description="lmcache: a KV-cache server for LLM inference engines, and tools to inspect it.",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    # Commands see plain ArgumentParsers; they are _Parser instances all the same.
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", title="commands"),
    )
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete when it is installed (a no-op outside completion)."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def _debug() -> bool:
    return os.environ.get("LMCACHE_DEBUG", "") not in ("", "0")


def _error_lines(lines: list[str]) -> None:
    for line in lines or [""]:
        print(f"{_PROG}: error: {line}", file=sys.stderr)


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (e.g. captured in tests)


def _exit_status_for(exc: BaseException) -> int:
    """The single map from an exception to an exit status; prints the message (one line each)."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return ExitStatus.BROKEN_PIPE
    if _debug():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, (UsageError, ConfigError)):
        _error_lines(str(exc).splitlines())
        return ExitStatus.USAGE
    if isinstance(exc, LMCacheError):
        _error_lines(str(exc).splitlines() or [type(exc).__name__])
        return ExitStatus.ERROR
    message = " ".join(str(exc).split())
    suffix = "" if _debug() else " (set LMCACHE_DEBUG=1 for a traceback)"
    _error_lines([f"{type(exc).__name__}: {message}{suffix}" if message else f"{type(exc).__name__}{suffix}"])
    return ExitStatus.ERROR


def _system_exit_status(exc: SystemExit) -> int:
    """argparse exits for --help and --version; a string code is a message."""
    if exc.code is None:
        return ExitStatus.SUCCESS
    if isinstance(exc.code, int):
        return exc.code
    _error_lines([str(exc.code)])
    return ExitStatus.ERROR


def main(argv: list[str] | None = None) -> int:
    """Run ``lmcache`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        parser = build_parser()
        _enable_completion(parser)
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as exc:
            return _system_exit_status(exc)
        if extra:
            prog = getattr(args, _PROG_ATTR, _PROG)
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return ExitStatus.USAGE
        return int(func(args))
    except (Exception, KeyboardInterrupt) as exc:
        return _exit_status_for(exc)


def entry_point() -> None:
    """The ``lmcache`` console script."""
    sys.exit(main())
