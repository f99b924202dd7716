"""``lmcache ping kvcache|engine``: is the lmcache server (or the inference engine) alive?

Usage::

    lmcache ping kvcache [--url http://localhost:8080] [--timeout 5] [--format json] [-q]
    lmcache ping engine  [--url http://localhost:8000]

``kvcache`` asks ``GET /healthcheck`` of the lmcache server, ``engine`` ``GET /health`` of the
inference engine (vLLM). The result is LMCache's table::

    ======= Ping KV Cache ========
    Status:                     OK
    Round trip time (ms):     3.42
    ==============================

Exit status 0 when the answer is HTTP 200. Otherwise the table says ``FAIL`` and one
``lmcache: error: ...`` line on stderr says why (unreachable, timeout, or the status and the
server's reason, e.g. the failing components of an unhealthy server); exit status 1.
"""

from __future__ import annotations

import argparse

from lmcache.cli.options import add_output_options, emit_report
from lmcache.cli.status import ExitStatus
from lmcache.client.http import DEFAULT_URLS, add_server_arguments, client_from_args
from lmcache.errors import UnavailableError
from lmcache.report import Report, Row, Section

NAME = "ping"
HELP = "Check that the lmcache server (or the inference engine) is alive."

_ENDPOINTS = {"kvcache": "/healthcheck", "engine": "/health"}
_TITLES = {"kvcache": "Ping KV Cache", "engine": "Ping Engine"}
_WIDTH = 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        description=f"{HELP} kvcache: GET /healthcheck of the lmcache server; engine: GET /health "
        "of the inference engine. Exit status 0 on HTTP 200, 1 otherwise.",
    )
    parser.add_argument("target", choices=tuple(_ENDPOINTS), help="What to ping.")
    add_server_arguments(
        parser,
        default_url=None,
        url_help=f"Server URL (default: {DEFAULT_URLS['kvcache']} for kvcache, "
        f"{DEFAULT_URLS['engine']} for engine).",
    )
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args, DEFAULT_URLS[args.target])
    probe = client.probe(_ENDPOINTS[args.target])
    rows = [Row("Status", "OK" if probe.ok else "FAIL"), Row("Round trip time (ms)", round(probe.rtt_ms, 2))]
    emit_report(args, Report(_TITLES[args.target], [Section(None, rows)], width=_WIDTH))
    if not probe.ok:
        raise UnavailableError(probe.error or f"{probe.url}: not OK")
    return ExitStatus.SUCCESS
