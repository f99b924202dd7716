"""``lmcache quota``: per-``cache_salt`` storage quotas of a running lmcache server.

Usage::

    lmcache quota list                      [--url URL] [--format json] ...
    lmcache quota get SALT                  [--url URL] ...
    lmcache quota set SALT --limit-gb GB    [--url URL] ...
    lmcache quota delete SALT               [--url URL] ...

Endpoints: ``GET /quota``, ``GET /quota/{salt}``, ``PUT /quota/{salt}`` and
``DELETE /quota/{salt}``. ``_default`` (or ``""``) names the empty salt, i.e. requests without
a salt. GB is GiB (2^30 bytes), as in LMCache. Quotas are an allow-list: under the IsolatedLRU
policy, data of a salt without a quota is evicted. When the server says quotas are not
enforced (no tier runs IsolatedLRU), a ``lmcache: warning:`` line on stderr says so. Titles and
rows are those of LMCache's ``lmcache quota`` (``Quota List``, ``Quota Info``, ``Quota Set``,
``Quota Delete``), plus ``Enforced``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from typing import Any

from lmcache.cli.options import add_output_options, emit_report
from lmcache.cli.status import ExitStatus
from lmcache.client.http import DEFAULT_URLS, add_server_arguments, client_from_args, escape_salt
from lmcache.report import Report, Row, Section

NAME = "quota"
HELP = "List, show, set or delete per-cache_salt storage quotas of a running lmcache server."

_NOT_ENFORCED = (
    "quotas are not enforced by this server: no tier uses the IsolatedLRU eviction policy "
    "(--eviction-policy IsolatedLRU)"
)
_SALT_HELP = "The cache_salt; '_default' (or '') is the empty salt, i.e. requests without one."


def _limit_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(NAME, help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="quota_action", metavar="ACTION", title="actions")
    specs = (
        ("list", "List every quota and the usage of each salt (GET /quota)."),
        ("get", "Show one salt's quota and usage (GET /quota/SALT)."),
        ("set", "Create or update one salt's quota (PUT /quota/SALT)."),
        ("delete", "Remove one salt's quota; its data is then evicted (DELETE /quota/SALT)."),
    )
    for action, text in specs:
        sub = actions.add_parser(action, help=text, description=text)
        if action != "list":
            sub.add_argument("salt", metavar="SALT", help=_SALT_HELP)
        if action == "set":
            sub.add_argument(
                "--limit-gb", type=_limit_gb, required=True, metavar="GB", help="The quota in GiB (>= 0)."
            )
        add_server_arguments(sub, default_url=DEFAULT_URLS["kvcache"])
        add_output_options(sub)
    parser.set_defaults(func=run, quota_parser=parser)


def _warn_if_not_enforced(answer: Mapping[str, Any]) -> None:
    if answer.get("enforced") is False:
        print(f"lmcache: warning: {_NOT_ENFORCED}", file=sys.stderr)


def _enforced_row(answer: Mapping[str, Any]) -> list[Row]:
    return [Row("Enforced", answer["enforced"])] if "enforced" in answer else []


def _as_mapping(answer: Any) -> Mapping[str, Any]:
    return answer if isinstance(answer, Mapping) else {}


def _list(args: argparse.Namespace) -> Report:
    answer = _as_mapping(client_from_args(args, DEFAULT_URLS["kvcache"]).request("GET", "/quota"))
    users = answer.get("users")
    users = users if isinstance(users, Mapping) else {}
    sections: list[Section] = []
    head = _enforced_row(answer)
    if not users:
        head.append(Row("Info", "No quotas configured"))
    if head:
        sections.append(Section(None, head))
    for salt, info in users.items():
        info = _as_mapping(info)
        rows = [
            Row("Cache salt", salt),
            Row("Limit (GB)", info.get("limit_gb")),
            Row("Current usage (GB)", info.get("current_usage_gb")),
        ]
        sections.append(Section(f"Salt: {salt}", rows, group="quotas"))
    _warn_if_not_enforced(answer)
    return Report("Quota List", sections, width=55)


def _one(args: argparse.Namespace) -> Report:
    client = client_from_args(args, DEFAULT_URLS["kvcache"])
    salt = args.salt
    path = f"/quota/{escape_salt(salt)}"
    shown = salt or "_default"
    if args.quota_action == "get":
        answer = _as_mapping(client.request("GET", path))
        rows = [
            Row("Cache salt", answer.get("cache_salt", shown)),
            Row("Limit (GB)", answer.get("limit_gb")),
            Row("Current usage (GB)", answer.get("current_usage_gb")),
            Row("Exists", answer.get("exists")),
            *_enforced_row(answer),
        ]
        title = "Quota Info"
    elif args.quota_action == "set":
        answer = _as_mapping(client.request("PUT", path, {"limit_gb": args.limit_gb}))
        rows = [
            Row("Cache salt", answer.get("cache_salt", shown)),
            Row("Limit (GB)", answer.get("limit_gb", args.limit_gb)),
            Row("Status", answer.get("status", "ok")),
            *_enforced_row(answer),
        ]
        title = "Quota Set"
    else:
        answer = _as_mapping(client.request("DELETE", path))
        rows = [Row("Cache salt", answer.get("cache_salt", shown)), Row("Status", answer.get("status"))]
        title = "Quota Delete"
    _warn_if_not_enforced(answer)
    return Report(title, [Section(None, rows)])


def run(args: argparse.Namespace) -> int:
    action = args.quota_action
    if action is None:
        args.quota_parser.print_help(sys.stderr)
        return ExitStatus.USAGE
    report = _list(args) if action == "list" else _one(args)
    emit_report(args, report)
    return ExitStatus.SUCCESS
