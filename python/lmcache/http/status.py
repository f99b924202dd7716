"""Inspection: ``GET /status``, ``/config``, ``/config/adapters``, ``/version``,
``/lmc_version`` and ``/commit_id``.

* ``/status`` is the facade's document (compat §11 shape) with two guarantees added here:
  ``is_healthy`` comes from the same health check as ``/healthcheck`` (with ``failing`` when
  false), and the L1 eviction policy is also published under
  ``storage_manager.eviction_controller.eviction_policy``, where LMCache's own ``describe
  kvcache`` looks for it (0.5.6 showed ``null`` there; compat §20 item 12).
* ``/config/adapters`` lists the live L2 adapters of ``/status`` as LMCache does:
  ``{"adapters": [{"index", "type_name", "tier": "l2", "primary", "reconfigurable"}]}``.
* ``/version`` is the server's full version descriptor (:meth:`ServerFacade.version`, e.g.
  ``"0.1.0-g3e11e108"``), ``/lmc_version`` the package version the app was created with, and
  ``/commit_id`` what follows ``<package version>-`` in the descriptor (``""`` when it has no
  such suffix). Each is a bare JSON string, as in LMCache.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from lmcache.http.deps import Facade, get_version
from lmcache.http.health import unhealthy_reason

__all__ = ["build_router"]

Version = Annotated[str, Depends(get_version)]


def _with_compat_keys(doc: dict[str, Any]) -> dict[str, Any]:
    sm = doc.get("storage_manager")
    if not isinstance(sm, dict):
        return doc
    l1_evict = sm.get("l1_eviction_controller")
    legacy = sm.get("eviction_controller")
    if isinstance(l1_evict, dict) and "eviction_policy" in l1_evict:
        if legacy is None:
            legacy = {}
        if isinstance(legacy, dict) and legacy.get("eviction_policy") is None:
            sm = {**sm, "eviction_controller": {**legacy, "eviction_policy": l1_evict["eviction_policy"]}}
            doc = {**doc, "storage_manager": sm}
    return doc


def status(facade: Facade) -> dict[str, Any]:
    health = facade.health()
    doc = dict(facade.status())
    doc["is_healthy"] = health.healthy
    if not health.healthy:
        doc["failing"] = dict(health.failing)
        doc.setdefault("unhealthy_reason", unhealthy_reason(health))
    return _with_compat_keys(doc)


def config(facade: Facade) -> dict[str, Any]:
    return facade.config()


def _l2_adapters(facade: Facade) -> list[Any]:
    sm = facade.status().get("storage_manager")
    adapters = sm.get("l2_adapters") if isinstance(sm, dict) else None
    return adapters if isinstance(adapters, list) else []


def config_adapters(facade: Facade) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for index, adapter in enumerate(_l2_adapters(facade)):
        info = adapter if isinstance(adapter, dict) else {}
        out.append(
            {
                "index": index,
                "type_name": info.get("type_name", info.get("type", "unknown")),
                "tier": "l2",
                "primary": index == 0,
                "reconfigurable": bool(info.get("reconfigurable", False)),
            }
        )
    return {"adapters": out}


def full_version(facade: Facade) -> str:
    return facade.version()


def lmc_version(version: Version) -> str:
    return version


def commit_id(facade: Facade, version: Version) -> str:
    full = facade.version()
    prefix = f"{version}-"
    return full[len(prefix) :] if full.startswith(prefix) else ""


def build_router() -> APIRouter:
    router = APIRouter(tags=["status"])
    router.add_api_route("/status", status, methods=["GET"], summary="Detailed server status")
    router.add_api_route("/config", config, methods=["GET"], summary="Effective configuration")
    router.add_api_route("/config/adapters", config_adapters, methods=["GET"], summary="Live L2 adapters")
    router.add_api_route("/version", full_version, methods=["GET"], summary="Full version descriptor")
    router.add_api_route("/lmc_version", lmc_version, methods=["GET"], summary="Package version")
    router.add_api_route("/commit_id", commit_id, methods=["GET"], summary="Build commit id")
    return router
