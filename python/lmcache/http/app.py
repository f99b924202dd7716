"""The HTTP admin API: :func:`create_app` builds one FastAPI application around a
:class:`~lmcache.server.facade.ServerFacade`.

Routes (LMCache 0.5.6 paths and shapes, compat reference §11), one router module per area, in
:data:`ROUTERS`:

============  ===========================================================================
module        routes
============  ===========================================================================
health        ``GET /``, ``GET /healthcheck``
status        ``GET /status``, ``/config``, ``/config/adapters``, ``/version``,
              ``/lmc_version``, ``/commit_id``
cache         ``POST /cache/clear``, ``POST /cache/checksums``
quota         ``GET /quota``, ``PUT``/``GET``/``DELETE /quota/{salt}``
metrics       ``GET /metrics``, ``POST /metrics/reset``
debug         ``GET /threads``, ``GET /loglevel``, ``GET /periodic-threads-health``
============  ===========================================================================

Everything the routes need is on ``app.state`` (``facade``, ``version``); nothing lives in
module globals, so apps are independent. Errors become answers in :mod:`lmcache.http.errors`.

Authentication: with ``auth_token`` set, every request except ``GET /`` and ``GET
/healthcheck`` (liveness probes) must carry ``Authorization: Bearer <token>``; anything else
gets 401 before routing or body parsing, so unauthenticated clients learn nothing about the
routes (the OpenAPI pages are covered too). LMCache 0.5.6 had no authentication (compat §20
item 10).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import APIRouter, FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from lmcache.http import cache, debug, health, metrics, quota, status
from lmcache.http.errors import error_response, install_error_handlers
from lmcache.server.facade import ServerFacade

__all__ = ["ROUTERS", "BearerAuth", "create_app"]

ROUTERS: tuple[Callable[[], APIRouter], ...] = (
    health.build_router,
    status.build_router,
    cache.build_router,
    quota.build_router,
    metrics.build_router,
    debug.build_router,
)
"""The explicit router list, in the order the routes are matched."""


class BearerAuth:
    """ASGI middleware: 401 for any HTTP request without ``Authorization: Bearer <token>``,
    except on ``open_paths``. The comparison takes constant time."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self._token = token.encode("utf-8")
        self._open_paths = open_paths

    def _authorized(self, scope: Scope) -> bool:
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "missing or wrong bearer token", "unauthorized")
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


def create_app(facade: ServerFacade, *, auth_token: str | None = None, version: str) -> FastAPI:
    """The admin API of one server.

    ``version`` is the package version (``GET /lmc_version``, and the OpenAPI document's);
    ``auth_token`` (None: no authentication) protects every route but ``/`` and
    ``/healthcheck``.
    """
    if auth_token is not None and not auth_token:
        raise ValueError("auth_token must be None (no authentication) or a non-empty token")
    app = FastAPI(
        title="LMCache HTTP API",
        version=version,
        description="Health, status, configuration, cache and quota administration, metrics.",
    )
    app.state.facade = facade
    app.state.version = version
    install_error_handlers(app)
    for build in ROUTERS:
        app.include_router(build())
    if auth_token is not None:
        app.add_middleware(BearerAuth, token=auth_token, open_paths=health.OPEN_PATHS)
    return app
