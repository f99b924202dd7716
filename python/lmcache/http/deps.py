"""What routes get from the application they run in: the server facade and version strings.

They live on ``app.state`` (set once by :func:`lmcache.http.app.create_app`), never in module
globals, so several apps (one per test, say) can exist side by side.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lmcache.server.facade import ServerFacade

__all__ = ["Facade", "get_facade", "get_version"]


def get_facade(request: Request) -> ServerFacade:
    facade: ServerFacade = request.app.state.facade
    return facade


def get_version(request: Request) -> str:
    """The package version the app was created with (``GET /lmc_version``)."""
    version: str = request.app.state.version
    return version


Facade = Annotated[ServerFacade, Depends(get_facade)]
"""A route parameter annotated with this receives the app's facade."""
