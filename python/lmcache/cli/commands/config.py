"""``lmcache config check``: validate server configuration flags and show the effective values.

Usage::

    lmcache config check --l1-size-gb 8 --eviction-policy LRU [any lmcache server flag ...]
        [--format json] [--output PATH] [-q]

It accepts every flag of ``lmcache server`` (:class:`lmcache.config.ServerConfig`). Exit status 0
when the configuration is valid, with one ``lmcache: warning: --flag: ...`` line on stderr per
option that is set but has no effect in this build (:func:`lmcache.config.inactive_features`);
2 with one ``lmcache: error: --flag: ...`` line per bad value otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmcache.cli.options import add_output_options, emit_report
from lmcache.cli.status import ExitStatus
from lmcache.config import ServerConfig, add_arguments, from_namespace, inactive_features
from lmcache.config.fields import options, sub_configs, title, to_dict
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
        "would, and print the effective configuration (defaults filled in). Options that are set "
        "but have no effect in this build are listed as warnings on stderr.",
    )
    add_arguments(check, ServerConfig)
    add_output_options(check)
    parser.set_defaults(func=run, config_parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.config_action == "check":
        return _check(args)
    args.config_parser.print_help(sys.stderr)
    return ExitStatus.USAGE


def _sections(inst: Any, key: str | None) -> list[Section]:
    """One section per configuration class: flags as labels, option names as JSON keys.

    Values are the effective ones: inherited options resolved, secrets hidden.
    """
    cls = type(inst)
    out: list[Section] = []
    own = options(cls)
    if own:
        values = to_dict(inst, effective=True)
        rows = [_row(o.flag, values[o.name], o.name) for o in own]
        out.append(Section(title(cls), rows, key=key))
    for name, _ in sub_configs(cls):
        out.extend(_sections(getattr(inst, name), name))
    return out


def _row(label: str, value: Any, key: str) -> Row:
    """Values as given (no float rounding); a sequence as a list (items joined in the table)."""
    if isinstance(value, tuple):
        return Row(label, list(value), key=key)
    return Row(label, value, key=key, fmt="")


def _check(args: argparse.Namespace) -> int:
    cfg = from_namespace(ServerConfig, args)
    for line in inactive_features(cfg):
        print(f"lmcache: warning: {line}", file=sys.stderr)
    report = Report(_CHECK_TITLE, [Section(None, [("Status", "OK")]), *_sections(cfg, None)])
    emit_report(args, report)
    return ExitStatus.SUCCESS
