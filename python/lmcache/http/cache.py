"""Cache control: ``POST /cache/clear``, ``POST /cache/checksums``, ``GET/DELETE /cache/objects``.

``POST /cache/clear`` takes an optional body ``{"tier": "l1" | "l2" | "all", "force": false}``
(an empty body clears L1) and answers ``{"status": "ok", "cleared": {"tier": ..., ...}}`` with
what the server reports per tier. A tier outside the enum, a wrong type or an unknown field is
422, as in 0.5.6. Unlike 0.5.6 (which answered 400 to ``l2`` and ``all``), all three tiers are
implemented; when the configured L2 adapters cannot delete, the answer is 501 saying so.
``force`` asks to clear objects that are locked by in-flight requests too.

``POST /cache/checksums`` takes ``{"block_ids": [int, ...], "chunk_size": <blocks per chunk>,
"instance_id": int, "layerwise": false}`` and answers ``{"status": "success", "chunk_size",
"num_chunks", "chunk_checksums", "layerwise", "block_id_ranges"}``. Empty or missing
``block_ids``, a ``chunk_size`` that is missing or not positive, and block ids outside
``[0, 2^31)`` are 400; an unknown ``instance_id`` is 404 (the facade raises NotFoundError).
``block_id_ranges`` is LMCache's compressed form of the block ids: runs of three or more
consecutive ids become ``[first, last]``, anything else stays a plain id.

``GET /cache/objects?tier=l2&adapter=&model_name=&page_size=500&page_token=`` pages through the
objects of one L2 adapter (``adapter``: its index in cascade order or its type; the first by
default): ``{"tier": "l2", "adapter", "type", "shared", "entries": [{"chunk_hash_hex", "model_name",
"kv_rank", "object_group_id", "cache_salt", "size"}], "next_page_token"}`` (``null`` on the last page).
Unlike 0.5.6, every adapter of this build can list (fs included); no L2 configured is 503.
``tier=l1`` (400 in 0.5.6) pages through the objects L1 holds (resident and temporary, not the
ones being written): the same shape with ``"tier": "l1"``, ``"adapter": null``, ``"type": "l1"``,
and per entry also ``allocated_bytes``, ``state`` (``resident`` | ``temporary``) and
``read_locks``. An L1 listing pass covers the objects held when its first page was served: each
one still held when its turn comes is listed exactly once, later admissions are left out. An L1
page may be short, even empty, before the last one (each request does bounded work); only
``next_page_token: null`` ends the pass. ``tier=all`` is 400 (list ``l1``, then ``l2``), as is
``adapter`` with ``tier=l1``. A ``page_token`` that is malformed or from before a restart is 400.

``DELETE /cache/objects`` takes ``{"keys": [{"chunk_hash_hex", "model_name", "kv_rank",
"object_group_id": 0, "cache_salt": ""}], "tier": "l2" | "l1" | "all", "force": false,
"adapter": null}`` and answers ``{"deleted", "skipped", "ok"}``; ``force`` also deletes L1
objects that in-flight requests hold (they are freed when the readers finish).

``POST /cache/prefetches`` ``{"model_name", "world_size": 1, "token_ids": [...], "cache_salt": "",
"source_tier": "l2", "target_tier": "l1"}`` loads the full chunks of ``token_ids`` (every rank and
object group of the model) from L2 into L1 as resident objects, in the background: 202
``{"request_id", "chunks", "status": "submitted"}``, or 200 ``{"chunks": 0, "status": "noop"}``
for fewer tokens than a chunk; 503 without L2 or when no engine registered the model's layout
(0.5.6 behaves the same). ``GET /cache/prefetches/{request_id}``: ``{"request_id", "status":
"pending"}`` or ``{..., "status": "completed", "found_keys", "total_keys"}`` (keys = chunks x
ranks x object groups, the found ones being the longest prefix every rank and group has); 404
for an unknown id. The last 1024 requests are remembered.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from lmcache.errors import InvalidArgumentError, UnavailableError
from lmcache.http.deps import Facade
from lmcache.http.errors import UnsupportedError

__all__ = [
    "ChecksumRequest",
    "ClearRequest",
    "DeleteObjectsRequest",
    "PrefetchRequest",
    "build_router",
    "compress_ids",
]

_MAX_BLOCK_ID = 2**31 - 1
_INT64 = 2**63


class ClearRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tier: Literal["l1", "l2", "all"] = "l1"
    force: bool = False


class ObjectKeyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    chunk_hash_hex: str
    model_name: str
    kv_rank: int
    object_group_id: int = 0
    cache_salt: str = ""


class DeleteObjectsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    keys: list[ObjectKeyModel]
    tier: Literal["l1", "l2", "all"] = "l2"
    force: bool = False
    adapter: str | int | None = None


class PrefetchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model_name: str
    world_size: int = 1
    token_ids: list[int]
    cache_salt: str = ""
    source_tier: Literal["l2"] = "l2"
    target_tier: Literal["l1"] = "l1"


class ChecksumRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    block_ids: list[int] = []
    chunk_size: int = 0
    instance_id: int = 0
    layerwise: bool = False


def compress_ids(ids: list[int]) -> list[int | list[int]]:
    """``[0, 2, 3, 4, 5, 8]`` -> ``[0, [2, 5], 8]`` (order kept; runs of 3 or more collapse)."""
    out: list[int | list[int]] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        if j - i >= 2:
            out.append([ids[i], ids[j]])
        else:
            out.extend(ids[i : j + 1])
        i = j + 1
    return out


def clear(facade: Facade, body: Annotated[ClearRequest | None, Body()] = None) -> dict[str, Any]:
    request = body or ClearRequest()
    try:
        result = facade.clear(request.tier, request.force)
    except UnavailableError as exc:
        if request.tier == "l1":
            raise
        raise UnsupportedError(f"cannot clear tier {request.tier!r}: {exc}") from exc
    cleared: dict[str, Any] = {"tier": request.tier}
    cleared.update({k: v for k, v in result.items() if k != "tier"})
    return {"status": "ok", "cleared": cleared}


def checksums(facade: Facade, body: ChecksumRequest) -> dict[str, Any]:
    if not body.block_ids:
        raise InvalidArgumentError("block_ids is required and must not be empty")
    if body.chunk_size <= 0:
        raise InvalidArgumentError(f"chunk_size must be positive, got {body.chunk_size}")
    if body.chunk_size > _MAX_BLOCK_ID:
        raise InvalidArgumentError(f"chunk_size must be at most {_MAX_BLOCK_ID}, got {body.chunk_size}")
    bad = next((b for b in body.block_ids if not 0 <= b <= _MAX_BLOCK_ID), None)
    if bad is not None:
        raise InvalidArgumentError(f"block_ids must be in [0, {_MAX_BLOCK_ID}], got {bad}")
    if not -_INT64 <= body.instance_id < _INT64:
        raise InvalidArgumentError(f"instance_id must fit in 64 bits, got {body.instance_id}")
    result = facade.checksums(body.instance_id, body.block_ids, body.chunk_size, body.layerwise)
    return {
        "status": "success",
        "chunk_size": body.chunk_size,
        "num_chunks": -(-len(body.block_ids) // body.chunk_size),
        "layerwise": body.layerwise,
        "block_id_ranges": compress_ids(body.block_ids),
        **result,
    }


def list_objects(
    facade: Facade,
    tier: str = "l2",
    adapter: str | None = None,
    model_name: str | None = None,
    page_size: int = 500,
    page_token: str = "",
) -> dict[str, Any]:
    return facade.list_objects(tier, adapter, model_name, page_size, page_token)


def delete_objects(facade: Facade, body: DeleteObjectsRequest) -> dict[str, Any]:
    if len(body.keys) > 100_000:
        raise InvalidArgumentError(f"at most 100000 keys per request, got {len(body.keys)}")
    adapter = None if body.adapter is None else str(body.adapter)
    keys = [k.model_dump() for k in body.keys]
    return facade.delete_objects(keys, body.tier, body.force, adapter)


def prefetch(facade: Facade, body: PrefetchRequest) -> JSONResponse:
    if not body.model_name:
        raise InvalidArgumentError("model_name must not be empty")
    if len(body.token_ids) > 10_000_000:
        raise InvalidArgumentError(f"at most 10000000 token_ids, got {len(body.token_ids)}")
    if any(not 0 <= t < 2**32 for t in body.token_ids):
        raise InvalidArgumentError("token_ids must be in [0, 2^32)")
    result = facade.prefetch(body.model_name, body.world_size, body.token_ids, body.cache_salt)
    return JSONResponse(result, status_code=202 if result.get("status") == "submitted" else 200)


def prefetch_status(facade: Facade, request_id: str) -> dict[str, Any]:
    return facade.prefetch_status(request_id)


def build_router() -> APIRouter:
    router = APIRouter(tags=["cache"])
    router.add_api_route(
        "/cache/clear", clear, methods=["POST"], summary="Clear a tier (l1 by default, l2 or all)"
    )
    router.add_api_route(
        "/cache/checksums", checksums, methods=["POST"], summary="MD5 per chunk of registered KV blocks"
    )
    router.add_api_route(
        "/cache/objects", list_objects, methods=["GET"], summary="List L1's or one L2 adapter's objects"
    )
    router.add_api_route(
        "/cache/objects", delete_objects, methods=["DELETE"], summary="Delete objects by key"
    )
    router.add_api_route("/cache/prefetches", prefetch, methods=["POST"], summary="Warm L1 from L2 by tokens")
    router.add_api_route(
        "/cache/prefetches/{request_id}", prefetch_status, methods=["GET"], summary="A warm-up's progress"
    )
    return router
