"""What the HTTP frontend (and anything else outside the request path) may ask of a running
server. ``http/`` depends on this protocol only, never on server internals, so the admin API
can be tested against a fake and the server can change underneath it.

Every method is thread-safe and returns plain JSON-able data. Errors are raised as
``lmcache.errors`` exceptions: ``InvalidArgumentError`` (-> 400), ``NotFoundError`` (-> 404),
``UnavailableError`` (-> 503); anything else is a bug (-> 500, logged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Health:
    """``healthy`` only if every component reported healthy within its deadline."""

    healthy: bool
    failing: dict[str, str] = field(default_factory=dict)  # component -> reason


class ServerFacade(Protocol):
    def health(self) -> Health: ...

    def status(self) -> dict[str, Any]:
        """The ``GET /status`` document (compat reference §11 shape, plus our fields)."""
        ...

    def config(self) -> dict[str, Any]:
        """The effective configuration (``GET /config``), grouped as ``to_dict`` groups it."""
        ...

    def version(self) -> str: ...

    def clear(self, tier: str, force: bool) -> dict[str, Any]:
        """Clear ``tier`` ("l1", "l2" or "all"). Returns what was cleared per tier."""
        ...

    def checksums(
        self, instance_id: int, block_ids: list[int], chunk_size: int, layerwise: bool
    ) -> dict[str, Any]:
        """MD5 per chunk of the registered KV rows (``POST /cache/checksums``)."""
        ...

    def list_objects(
        self, tier: str, adapter: str | None, model_name: str | None, page_size: int, page_token: str
    ) -> dict[str, Any]:
        """One page of stored objects of one tier (``GET /cache/objects``, ``tier`` "l1" or "l2"):
        ``{"tier", "adapter", "type", "shared", "entries", "next_page_token"}`` (``adapter`` None
        for L1)."""
        ...

    def delete_objects(
        self, keys: list[dict[str, Any]], tier: str, force: bool, adapter: str | None
    ) -> dict[str, Any]:
        """Delete objects by key (``DELETE /cache/objects``): ``{"deleted", "skipped", "ok"}``."""
        ...

    def prefetch(
        self, model_name: str, world_size: int, token_ids: list[int], cache_salt: str
    ) -> dict[str, Any]:
        """Warm L1 from L2 (``POST /cache/prefetches``): ``{"request_id", "chunks", "status"}``."""
        ...

    def prefetch_status(self, request_id: str) -> dict[str, Any]:
        """``GET /cache/prefetches/{id}``; NotFoundError for an unknown id."""
        ...

    def set_quota(self, cache_salt: str, limit_bytes: int) -> None: ...

    def get_quota(self, cache_salt: str) -> dict[str, Any]:
        """``{"limit_bytes": int | None, "usage_bytes": int, "exists": bool, "enforced": bool}``."""
        ...

    def delete_quota(self, cache_salt: str) -> bool:
        """True when a quota existed."""
        ...

    def list_quotas(self) -> dict[str, dict[str, Any]]:
        """salt -> ``{"limit_bytes", "usage_bytes"}`` for every salt with a quota or usage."""
        ...

    def metrics_text(self) -> str:
        """Prometheus text exposition (``GET /metrics``)."""
        ...

    def reset_metrics(self) -> None: ...
