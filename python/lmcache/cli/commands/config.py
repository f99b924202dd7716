"""``lmcache config check``: validate server configuration flags and show the effective values.

Usage::

    lmcache config check --l1-size-gb 8 --eviction-policy LRU [--format json] [--output PATH] [-q]

Exit status 0 when the configuration is valid; 2 with one ``lmcache: error: --flag: ...`` line
per bad value otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmcache.cli.options import add_output_options, emit_report
from lmcache.cli.status import ExitStatus
from lmcache.config import StorageConfig, add_arguments, from_namespace
from lmcache.config.fields import options, sub_configs, title
from lmcache.report import Report, Row, Section

NAME = "config"
HELP = "Check server configuration flags and show the effective configuration."

_CHECK_TITLE = "LMCache Configuration"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(NAME, help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", title="actions")
    check = actions.add_parser(
        "check",
        help="Validate the flags given and print the resulting configuration.",
        description="Validate the server configuration flags given, exactly as `lmcache server` "
        "would, and print the effective configuration (defaults filled in).",
    )
    add_arguments(check, StorageConfig)
    add_output_options(check)
    parser.set_defaults(func=run, config_parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.config_action == "check":
        return _check(args)
    args.config_parser.print_help(sys.stderr)
    return ExitStatus.USAGE


def _sections(inst: Any, key: str | None) -> list[Section]:
    """One section per configuration class: flags as labels, option names as JSON keys."""
    cls = type(inst)
    out: list[Section] = []
    own = options(cls)
    if own:
        rows = [Row(o.flag, getattr(inst, o.name), key=o.name, fmt="") for o in own]
        out.append(Section(title(cls), rows, key=key))
    for name, _ in sub_configs(cls):
        out.extend(_sections(getattr(inst, name), name))
    return out


def _check(args: argparse.Namespace) -> int:
    cfg = from_namespace(StorageConfig, args)
    report = Report(_CHECK_TITLE, [Section(None, [("Status", "OK")]), *_sections(cfg, None)])
    emit_report(args, report)
    return ExitStatus.SUCCESS
