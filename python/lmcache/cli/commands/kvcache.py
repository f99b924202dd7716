"""``lmcache kvcache clear``: clear the KV cache of a running lmcache server.

Usage::

    lmcache kvcache clear [--url http://localhost:8080] [--tier l1|l2|all] [--force]
        [--timeout 5] [--format json] [--output PATH] [-q]

Sends ``POST /cache/clear {"tier": "l1"}`` (the tier given; ``"force": true`` with
``--force``, which also drops objects that in-flight requests hold locked) and prints::

    ================ KV Cache Clear ================
    Status:                                      OK
    Tier:                                        l1
    ...what the server reports it cleared...
    ================================================

Exit status 1 (one line on stderr) when the server cannot be reached or refuses, e.g. 501 when
the tier is ``l2`` and no configured L2 adapter can delete.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from lmcache.cli.options import add_output_options, emit_report
from lmcache.cli.status import ExitStatus
from lmcache.client.http import DEFAULT_URLS, add_server_arguments, client_from_args
from lmcache.report import Report, Row, Section

NAME = "kvcache"
HELP = "Manage the KV cache of a running lmcache server (e.g. clear L1)."

_TIERS = ("l1", "l2", "all")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(NAME, help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="kvcache_action", metavar="ACTION", title="actions")
    clear = actions.add_parser(
        "clear",
        help="Clear cached KV data (L1 by default).",
        description="Clear the KV data a tier holds: l1 (memory, the default), l2 (every L2 "
        "adapter) or all (POST /cache/clear).",
    )
    clear.add_argument("--tier", choices=_TIERS, default="l1", help="Tier to clear. Default: %(default)s.")
    clear.add_argument(
        "--force",
        action="store_true",
        help="Also clear objects that in-flight requests hold locked (their transfers may fail).",
    )
    add_server_arguments(clear, default_url=DEFAULT_URLS["kvcache"])
    add_output_options(clear)
    parser.set_defaults(func=run, kvcache_parser=parser)


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _clear(args: argparse.Namespace) -> int:
    client = client_from_args(args, DEFAULT_URLS["kvcache"])
    body: dict[str, Any] = {"tier": args.tier}
    if args.force:
        body["force"] = True
    answer = client.request("POST", "/cache/clear", body)
    cleared = answer.get("cleared") if isinstance(answer, Mapping) else None
    cleared = cleared if isinstance(cleared, Mapping) else {}
    status = answer.get("status", "ok") if isinstance(answer, Mapping) else "ok"
    top = [Row("Status", str(status).upper()), Row("Tier", cleared.get("tier", args.tier))]
    sections = [Section(None, top)]
    for key, value in cleared.items():
        if key == "tier":
            continue
        if isinstance(value, Mapping):
            rows = [Row(_label(str(k)), v, key=str(k)) for k, v in value.items()]
            sections.append(Section(str(key).upper(), rows, key=str(key)))
        else:
            top.append(Row(_label(str(key)), value, key=str(key)))
    emit_report(args, Report("KV Cache Clear", sections))
    return ExitStatus.SUCCESS


def run(args: argparse.Namespace) -> int:
    if args.kvcache_action == "clear":
        return _clear(args)
    args.kvcache_parser.print_help(sys.stderr)
    return ExitStatus.USAGE
