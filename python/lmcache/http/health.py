"""Liveness and health: ``GET /`` and ``GET /healthcheck`` (both open without a token).

``/healthcheck`` is 200 ``{"status": "healthy"}`` only when every component of the server
reported healthy within its deadline (:meth:`ServerFacade.health`); otherwise 503
``{"status": "unhealthy", "reason": "...", "failing": {component: reason}}``. LMCache 0.5.6
only checked that its engine object existed (compat §20 item 7). ``/status``'s ``is_healthy``
and ``/periodic-threads-health`` are derived from the same call, so the three always agree.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lmcache.errors import LMCacheError
from lmcache.http.deps import Facade
from lmcache.server.facade import Health

__all__ = ["OPEN_PATHS", "build_router", "unhealthy_reason"]

OPEN_PATHS = frozenset({"/", "/healthcheck"})
"""Paths served without the bearer token when the app has one."""


def unhealthy_reason(health: Health) -> str:
    """One line naming the failing components, e.g. ``"eviction: thread died; l2.fs: timeout"``."""
    if not health.failing:
        return "unhealthy"
    return "; ".join(f"{name}: {why}" for name, why in sorted(health.failing.items()))


def root() -> dict[str, str]:
    return {"status": "ok", "service": "LMCache HTTP API"}


def healthcheck(facade: Facade) -> Any:
    try:
        health = facade.health()
    except LMCacheError as exc:
        health = Health(False, {"server": str(exc) or type(exc).__name__})
    if health.healthy:
        return {"status": "healthy"}
    body = {"status": "unhealthy", "reason": unhealthy_reason(health), "failing": dict(health.failing)}
    return JSONResponse(body, status_code=503)


def build_router() -> APIRouter:
    router = APIRouter(tags=["health"])
    router.add_api_route("/", root, methods=["GET"], summary="Static liveness answer")
    router.add_api_route(
        "/healthcheck",
        healthcheck,
        methods=["GET"],
        summary="200 when every component is healthy, else 503 naming the failing ones",
    )
    return router
