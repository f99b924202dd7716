"""The HTTP admin API of the lmcache server (FastAPI): :func:`create_app` builds the app around
a :class:`~lmcache.server.facade.ServerFacade`, :func:`serve_http` runs it with uvicorn in a
background thread. Routes and shapes follow LMCache 0.5.6 (see :mod:`lmcache.http.app`)."""

from __future__ import annotations

from lmcache.http.app import ROUTERS, create_app
from lmcache.http.server import HttpServerHandle, serve_http

__all__ = ["ROUTERS", "HttpServerHandle", "create_app", "serve_http"]
