"""How failures become HTTP answers: one map from ``lmcache.errors`` to status codes, and the
handlers that :func:`lmcache.http.app.create_app` installs.

Every error answer is a JSON object ``{"error": <one-line message>, "code": <stable name>}``
(LMCache's routes use ``error`` too, so its CLI shows our messages); request validation errors
add ``detail``, FastAPI's list of ``{"loc", "msg", "type"}`` (without the offending input, which
may not even be text).

=============================  ======  ============================================================
exception                      status  when
=============================  ======  ============================================================
InvalidArgumentError           400     a value the route understood but cannot accept
NotFoundError                  404     e.g. an unknown ``instance_id``
AlreadyExistsError, BusyError  409     conflicts with the current state
NoSpaceError                   507     the storage cannot hold it
UnsupportedError               501     the server cannot do this at all (e.g. clear an L2 adapter
                                       that cannot list or delete)
UnavailableError               503     not possible right now (component down, not started)
LMCacheTimeoutError            504     a component did not answer in time
other LMCacheError             500     StorageIOError, CorruptionError, ...; logged
request validation             422     FastAPI's default (wrong types, unknown fields, bad enum
                                       value), or 400 on routes whose 0.5.6 counterpart answered
                                       400 (see :class:`BadRequestOnInvalidRoute`)
Starlette's HTTP errors        as is   unknown path (404), wrong method (405), unparsable body
                                       (400): same JSON shape
=============================  ======  ============================================================

Anything else raised by a route is a bug: Starlette answers 500 and logs the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from lmcache.errors import (
    AlreadyExistsError,
    BusyError,
    InvalidArgumentError,
    LMCacheError,
    LMCacheTimeoutError,
    NoSpaceError,
    NotFoundError,
    UnavailableError,
)

__all__ = [
    "BadRequestOnInvalidRoute",
    "UnsupportedError",
    "error_response",
    "install_error_handlers",
    "status_for",
]

_log = logging.getLogger(__name__)


class UnsupportedError(UnavailableError):
    """The server cannot do what was asked, in this configuration (HTTP 501)."""

    code = "unsupported"


# Most specific first: the first class an exception is an instance of decides.
_STATUS: tuple[tuple[type[LMCacheError], int], ...] = (
    (UnsupportedError, 501),
    (InvalidArgumentError, 400),
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    (BusyError, 409),
    (NoSpaceError, 507),
    (UnavailableError, 503),
    (LMCacheTimeoutError, 504),
)


def status_for(exc: LMCacheError) -> int:
    """The HTTP status of an lmcache error (500 for any class not in the table)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_response(status: int, message: str, code: str, **extra: Any) -> JSONResponse:
    """The JSON error answer every route and handler uses."""
    return JSONResponse({"error": _one_line(message), "code": code, **extra}, status_code=status)


class BadRequestOnInvalidRoute(APIRoute):
    """A route whose malformed requests get 400 instead of FastAPI's 422.

    LMCache 0.5.6 answers 400 for every malformed ``PUT /quota/{salt}`` body (bad JSON, missing
    or non-numeric ``limit_gb``); routers built with this route class keep that. (FastAPI's
    documented custom-route-class pattern: the handler is wrapped, nothing else changes.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation_response(400, exc)

        return handle


def _describe(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    detail: list[dict[str, Any]] = []
    parts: list[str] = []
    for err in errors:
        if not isinstance(err, dict):
            continue
        loc = [str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value"))
        kind = str(err.get("type", "value_error"))
        detail.append({"loc": loc, "msg": msg, "type": kind})
        where = ".".join(p for p in loc if p != "body") or "body"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request", detail


async def _on_lmcache_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LMCacheError)
    status = status_for(exc)
    if status >= 500 and status not in (501, 503, 504):
        _log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    message = str(exc) or type(exc).__name__
    return error_response(status, message, exc.code)


def _validation_response(status: int, exc: RequestValidationError) -> JSONResponse:
    message, detail = _describe(exc.errors())
    return error_response(status, f"invalid request: {message}", "invalid_argument", detail=detail)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _validation_response(422, exc)


_HTTP_CODES = {400: "invalid_argument", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (unknown path, wrong method, unparsable body) in the same shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    response = error_response(exc.status_code, str(exc.detail), code)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Install the single lmcache-error handler, and the handlers that give validation errors
    and Starlette's own HTTP errors the same JSON shape, on ``app``."""
    app.add_exception_handler(LMCacheError, _on_lmcache_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
