"""Metrics: ``GET /metrics`` (Prometheus text exposition format 0.0.4) and
``POST /metrics/reset`` (plain-text ``ok``, as LMCache)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from lmcache.http.deps import Facade

__all__ = ["PROMETHEUS_CONTENT_TYPE", "build_router"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics(facade: Facade) -> PlainTextResponse:
    return PlainTextResponse(facade.metrics_text(), media_type=PROMETHEUS_CONTENT_TYPE)


def reset_metrics(facade: Facade) -> PlainTextResponse:
    facade.reset_metrics()
    return PlainTextResponse("ok")


def build_router() -> APIRouter:
    router = APIRouter(tags=["metrics"])
    router.add_api_route(
        "/metrics", metrics, methods=["GET"], response_class=PlainTextResponse, summary="Prometheus metrics"
    )
    router.add_api_route(
        "/metrics/reset",
        reset_metrics,
        methods=["POST"],
        response_class=PlainTextResponse,
        summary="Reset every metric to its initial value",
    )
    return router
