"""Diagnostics: ``GET /threads``, ``GET /loglevel`` and ``GET /periodic-threads-health``.

* ``/threads?name=&thread_id=``: the live Python threads of the server, as a JSON list of
  ``{"thread_id", "native_id", "name", "state", "daemon"}`` (``name`` filters by a
  case-insensitive substring, ``thread_id`` by ident).
* ``/loglevel``: plain text, as LMCache. Without parameters, one ``<logger>: <LEVEL>`` line per
  registered logger; with ``logger_name``, that logger's effective level; with ``logger_name``
  and ``level`` (DEBUG, INFO, WARNING, ERROR or CRITICAL, any case), sets it. ``root`` names
  the root logger. An unknown level, or ``level`` without ``logger_name``, is 400; a logger
  that does not exist is 404 (so requests cannot create loggers).
* ``/periodic-threads-health``: ``{"healthy", "unhealthy_count", "unhealthy_threads": [{"name",
  "reason"}]}``, always 200 (as LMCache), from the same health check as ``/healthcheck``: the
  two always agree (compat §20 item 7).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from lmcache.errors import InvalidArgumentError, NotFoundError
from lmcache.http.deps import Facade

__all__ = ["build_router"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def threads(name: str | None = None, thread_id: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    needle = name.lower() if name else None
    for t in threading.enumerate():
        if needle is not None and needle not in t.name.lower():
            continue
        if thread_id is not None and t.ident != thread_id:
            continue
        out.append(
            {
                "thread_id": t.ident,
                "native_id": t.native_id,
                "name": t.name,
                "state": "running" if t.is_alive() else "terminated",
                "daemon": t.daemon,
            }
        )
    return out


def _logger(name: str) -> logging.Logger:
    if name in ("root", ""):
        return logging.getLogger()
    known = logging.Logger.manager.loggerDict.get(name)
    if not isinstance(known, logging.Logger):
        raise NotFoundError(f"no logger named {name[:200]!r}")
    return known


def _line(logger: logging.Logger) -> str:
    return f"{logger.name}: {logging.getLevelName(logger.getEffectiveLevel())}"


def loglevel(logger_name: str | None = None, level: str | None = None) -> PlainTextResponse:
    if logger_name is None:
        if level is not None:
            raise InvalidArgumentError("level needs logger_name (the logger to set)")
        loggers = logging.Logger.manager.loggerDict.items()
        names = sorted(n for n, lg in loggers if isinstance(lg, logging.Logger))
        lines = [_line(logging.getLogger())] + [_line(logging.getLogger(n)) for n in names]
        return PlainTextResponse("\n".join(lines) + "\n")
    logger = _logger(logger_name)
    if level is None:
        return PlainTextResponse(_line(logger) + "\n")
    wanted = level.strip().upper()
    if wanted not in _LEVELS:
        raise InvalidArgumentError(f"unknown level {level[:40]!r}; must be one of {', '.join(_LEVELS)}")
    before = logging.getLevelName(logger.getEffectiveLevel())
    logger.setLevel(wanted)
    return PlainTextResponse(f"{logger.name}: {wanted} (was {before})\n")


def periodic_threads_health(facade: Facade) -> dict[str, Any]:
    health = facade.health()
    failing = [{"name": n, "reason": why} for n, why in sorted(health.failing.items())]
    if not health.healthy and not failing:
        failing = [{"name": "server", "reason": "unhealthy"}]
    return {
        "healthy": health.healthy,
        "unhealthy_count": 0 if health.healthy else len(failing),
        "unhealthy_threads": [] if health.healthy else failing,
    }


def build_router() -> APIRouter:
    router = APIRouter(tags=["debug"])
    router.add_api_route("/threads", threads, methods=["GET"], summary="Live threads of the server")
    router.add_api_route(
        "/loglevel",
        loglevel,
        methods=["GET"],
        response_class=PlainTextResponse,
        summary="Read or set logger levels",
    )
    router.add_api_route(
        "/periodic-threads-health",
        periodic_threads_health,
        methods=["GET"],
        summary="Background components' health (agrees with /healthcheck)",
    )
    return router
