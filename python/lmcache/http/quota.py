"""Per-``cache_salt`` quotas: ``PUT``/``GET``/``DELETE /quota/{salt}`` and ``GET /quota``.

Shapes are LMCache 0.5.6's, plus ``enforced`` (compat §13, §20 item 13):

* ``PUT /quota/{salt}`` with ``{"limit_gb": <finite float >= 0>}`` -> ``{"cache_salt",
  "limit_gb", "status": "ok", "enforced"}``. Malformed JSON, a missing, non-numeric, NaN,
  infinite or negative ``limit_gb``, or an unknown field: 400 (as 0.5.6, not FastAPI's 422).
* ``GET /quota/{salt}`` -> ``{"cache_salt", "limit_gb", "current_usage_gb", "exists",
  "enforced"}``; a salt without a quota has ``exists: false`` and ``limit_gb: 0.0`` (quotas are
  an allow-list: no quota means a limit of 0). Never 404.
* ``DELETE /quota/{salt}`` -> ``{"cache_salt", "status": "removed" | "not_found"}``.
* ``GET /quota`` -> ``{"users": {salt: {"limit_gb", "current_usage_gb", "exists"}},
  "enforced"}``, every salt that has a quota or holds data.

Units: GB here is GiB, ``2**30`` bytes, as in LMCache (``quota_api.py``: ``n_bytes / (1024**3)``
out, ``int(limit_gb * (1024**3))`` in). ``enforced`` is false when no tier runs the IsolatedLRU
policy: the quota is stored but has no effect.

Salts: the empty salt (un-salted traffic) is written ``_default`` in paths and answers;
``_default`` is therefore reserved and cannot name a real salt (0.5.6 let the two collide). A
salt follows the ``cache_salt`` rules of the wire protocol: at most 128 characters, none of
``@``, ``/``, ``\\`` or NUL; anything else is 400 (0.5.6 accepted salts that can never occur).
The path parameter takes the rest of the path, so ``/quota/a/b`` is a 400 about the ``/``
rather than a 404.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from lmcache.errors import InvalidArgumentError
from lmcache.http.deps import Facade
from lmcache.http.errors import BadRequestOnInvalidRoute
from lmcache.protocol.types import CACHE_SALT_FORBIDDEN, CACHE_SALT_MAX_LEN

__all__ = ["DEFAULT_SALT", "GIB", "QuotaRequest", "build_router", "parse_salt"]

GIB = 1 << 30
"""Bytes per "GB" of the quota API (LMCache uses 1024**3)."""

DEFAULT_SALT = "_default"
"""How the empty ``cache_salt`` is written in the API."""

_MAX_LIMIT_GB = float((2**63 - 1) // GIB)


class QuotaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    limit_gb: float


def parse_salt(path_salt: str) -> str:
    """The real ``cache_salt`` a path names (``_default`` -> ``""``); InvalidArgumentError if none."""
    if path_salt == DEFAULT_SALT:
        return ""
    shown = repr(path_salt if len(path_salt) <= 40 else path_salt[:40] + "...")
    if path_salt == "":
        raise InvalidArgumentError(f"empty cache_salt: write the empty salt as {DEFAULT_SALT!r}")
    if len(path_salt) > CACHE_SALT_MAX_LEN:
        raise InvalidArgumentError(
            f"invalid cache_salt {shown}: {len(path_salt)} characters, at most {CACHE_SALT_MAX_LEN}"
        )
    bad = sorted(CACHE_SALT_FORBIDDEN.intersection(path_salt))
    if bad:
        names = ", ".join("NUL" if c == "\0" else repr(c) for c in bad)
        raise InvalidArgumentError(f"invalid cache_salt {shown}: must not contain {names}")
    return path_salt


def _shown(salt: str) -> str:
    return DEFAULT_SALT if salt == "" else salt


def _gb(n_bytes: Any) -> float:
    return int(n_bytes or 0) / GIB


def set_quota(cache_salt: str, body: QuotaRequest, facade: Facade) -> dict[str, Any]:
    salt = parse_salt(cache_salt)
    limit_gb = body.limit_gb
    if not math.isfinite(limit_gb):
        raise InvalidArgumentError(f"limit_gb must be finite, got {limit_gb}")
    if limit_gb < 0:
        raise InvalidArgumentError(f"limit_gb must be non-negative, got {limit_gb}")
    if limit_gb > _MAX_LIMIT_GB:
        raise InvalidArgumentError(f"limit_gb must be at most {_MAX_LIMIT_GB:.0f}, got {limit_gb}")
    facade.set_quota(salt, int(limit_gb * GIB))
    enforced = bool(facade.get_quota(salt).get("enforced", False))
    return {"cache_salt": _shown(salt), "limit_gb": limit_gb, "status": "ok", "enforced": enforced}


def get_quota(cache_salt: str, facade: Facade) -> dict[str, Any]:
    salt = parse_salt(cache_salt)
    info = facade.get_quota(salt)
    return {
        "cache_salt": _shown(salt),
        "limit_gb": _gb(info.get("limit_bytes")),
        "current_usage_gb": _gb(info.get("usage_bytes")),
        "exists": bool(info.get("exists", False)),
        "enforced": bool(info.get("enforced", False)),
    }


def delete_quota(cache_salt: str, facade: Facade) -> dict[str, Any]:
    salt = parse_salt(cache_salt)
    removed = facade.delete_quota(salt)
    return {"cache_salt": _shown(salt), "status": "removed" if removed else "not_found"}


def list_quotas(facade: Facade) -> dict[str, Any]:
    users: dict[str, dict[str, Any]] = {}
    for salt, info in sorted(facade.list_quotas().items()):
        limit = info.get("limit_bytes")
        users[_shown(salt)] = {
            "limit_gb": _gb(limit),
            "current_usage_gb": _gb(info.get("usage_bytes")),
            "exists": limit is not None,
        }
    enforced = bool(facade.get_quota("").get("enforced", False))
    return {"users": users, "enforced": enforced}


def build_router() -> APIRouter:
    router = APIRouter(tags=["quota"], route_class=BadRequestOnInvalidRoute)
    router.add_api_route("/quota", list_quotas, methods=["GET"], summary="Every quota and its usage")
    path = "/quota/{cache_salt:path}"
    router.add_api_route(path, set_quota, methods=["PUT"], summary="Set a salt's quota (GiB)")
    router.add_api_route(path, get_quota, methods=["GET"], summary="A salt's quota and usage")
    router.add_api_route(path, delete_quota, methods=["DELETE"], summary="Remove a salt's quota")
    return router
