"""A ServerFacade for HTTP and CLI tests: in-memory state, failures on demand, calls recorded."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from lmcache.errors import InvalidArgumentError, LMCacheError, NotFoundError, UnavailableError
from lmcache.server.facade import Health, ServerFacade

GIB = 1 << 30
VERSION = "0.1.0"
FULL_VERSION = "0.1.0-g3e11e108"


def status_document() -> dict[str, Any]:
    """A /status document in the 0.5.6 shape, with one model and one L2 adapter."""
    return {
        "is_healthy": True,
        "engine_type": "MPCacheServer",
        "chunk_size": 256,
        "hash_algorithm": "blake3",
        "active_sessions": 3,
        "active_prefetch_jobs": 0,
        "registered_gpu_ids": [0, 1],
        "worker_liveness": {
            "enabled": True,
            "reap_timeout_seconds": 120.0,
            "registration_grace_seconds": 3600.0,
            "tracked_instances": 2,
        },
        "cache_context_meta": {
            "0": {
                "model_name": "meta-llama/Llama-3.1-70B-Instruct",
                "world_size": 2,
                "kv_cache_layout": {
                    "num_layers": 80,
                    "block_size": 128,
                    "hidden_dim_size": 1024,
                    "dtype": "torch.float16",
                    "is_mla": False,
                    "num_blocks": 2048,
                    "gpu_kv_format": "NL_X_TWO_NB_BS_NH_HS",
                    "gpu_kv_shape": "NL x [2, NB, BS, NH, HS]",
                    "gpu_kv_concrete_shape": "80 x [2, 2048, 128, 8, 128]",
                    "attention_backend": "vLLM non-MLA flash attention",
                },
            },
            "1": {"model_name": "meta-llama/Llama-3.1-70B-Instruct", "world_size": 2},
        },
        "storage_manager": {
            "is_healthy": True,
            "l1_manager": {
                "total_object_count": 1024,
                "write_locked_count": 0,
                "read_locked_count": 0,
                "temporary_count": 0,
                "memory_used_bytes": int(0.72 * GIB),
                "memory_total_bytes": 1 * GIB,
                "memory_usage_ratio": 0.719,
            },
            "l1_eviction_controller": {
                "eviction_policy": "LRU",
                "trigger_watermark": 0.8,
                "eviction_ratio": 0.2,
                "thread_alive": True,
                "is_healthy": True,
            },
            "l2_adapters": [
                {
                    "type": "NixlStoreL2Adapter",
                    "is_healthy": True,
                    "backend": "nixl_rdma",
                    "stored_object_count": 512,
                    "pool_size": 512,
                    "pool_free_slots": 32,
                }
            ],
        },
    }


class FakeFacade:
    """In-memory server state. ``fail[method] = exc`` makes that method raise ``exc``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.healthy = True
        self.failing: dict[str, str] = {}
        self.status_doc = status_document()
        self.policy = "LRU"
        self.quotas: dict[str, int] = {}
        self.usage: dict[str, int] = {"": 3 * GIB // 4, "alice": GIB // 2}
        self.instances = {7: 4}  # instance id -> layers
        self.unclearable: set[str] = set()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.hits = 42
        self.fail: dict[str, LMCacheError] = {}

    def _call(self, name: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    def health(self) -> Health:
        self._call("health")
        return Health(self.healthy, dict(self.failing))

    def status(self) -> dict[str, Any]:
        self._call("status")
        return self.status_doc

    def config(self) -> dict[str, Any]:
        self._call("config")
        return {"mp": {"chunk_size": 256, "port": 5555}, "http": {"http_port": 8080}}

    def version(self) -> str:
        self._call("version")
        return FULL_VERSION

    def clear(self, tier: str, force: bool) -> dict[str, Any]:
        self._call("clear", tier, force)
        if tier not in ("l1", "l2", "all"):
            raise InvalidArgumentError(f"bad tier {tier}")
        if tier in self.unclearable:
            raise UnavailableError("L2 adapter 'fs' cannot delete objects")
        out: dict[str, Any] = {}
        if tier in ("l1", "all"):
            out["l1"] = {"objects": 1024, "bytes": int(0.72 * GIB)}
        if tier in ("l2", "all"):
            out["l2"] = {"objects": 512}
        return out

    def checksums(
        self, instance_id: int, block_ids: list[int], chunk_size: int, layerwise: bool
    ) -> dict[str, Any]:
        self._call("checksums", instance_id, block_ids, chunk_size, layerwise)
        if instance_id not in self.instances:
            raise NotFoundError(f"instance_id {instance_id} not registered")
        chunks = [block_ids[i : i + chunk_size] for i in range(0, len(block_ids), chunk_size)]

        def md5(layer: int, chunk: list[int]) -> str:
            return hashlib.md5(repr((layer, chunk)).encode()).hexdigest()

        if layerwise:
            return {"chunk_checksums": {f"layer_{n}": [md5(n, c) for c in chunks] for n in range(4)}}
        return {"chunk_checksums": [md5(-1, c) for c in chunks]}

    def set_quota(self, cache_salt: str, limit_bytes: int) -> None:
        self._call("set_quota", cache_salt, limit_bytes)
        self.quotas[cache_salt] = limit_bytes

    def get_quota(self, cache_salt: str) -> dict[str, Any]:
        self._call("get_quota", cache_salt)
        return {
            "limit_bytes": self.quotas.get(cache_salt),
            "usage_bytes": self.usage.get(cache_salt, 0),
            "exists": cache_salt in self.quotas,
            "enforced": self.policy == "IsolatedLRU",
        }

    def delete_quota(self, cache_salt: str) -> bool:
        self._call("delete_quota", cache_salt)
        return self.quotas.pop(cache_salt, None) is not None

    def list_objects(
        self, tier: str, adapter: str | None, model_name: str | None, page_size: int, page_token: str
    ) -> dict[str, Any]:
        self._call("list_objects", tier, adapter, model_name, page_size, page_token)
        if tier == "l1":
            return {
                "tier": "l1",
                "adapter": None,
                "type": "l1",
                "shared": False,
                "entries": [],
                "next_page_token": None,
            }
        if tier != "l2":
            raise InvalidArgumentError(f"listing tier {tier!r} is not supported (list l1, then l2)")
        return {
            "tier": "l2",
            "adapter": 0,
            "type": "mock",
            "shared": False,
            "entries": [],
            "next_page_token": None,
        }

    def delete_objects(
        self, keys: list[dict[str, Any]], tier: str, force: bool, adapter: str | None
    ) -> dict[str, Any]:
        self._call("delete_objects", keys, tier, force, adapter)
        return {"deleted": 0, "skipped": len(keys), "ok": True}

    def prefetch(
        self, model_name: str, world_size: int, token_ids: list[int], cache_salt: str
    ) -> dict[str, Any]:
        self._call("prefetch", model_name, world_size, token_ids, cache_salt)
        return {"request_id": "warm-1", "chunks": len(token_ids) // 256, "status": "submitted"}

    def prefetch_status(self, request_id: str) -> dict[str, Any]:
        self._call("prefetch_status", request_id)
        if request_id != "warm-1":
            raise NotFoundError(f"no prefetch request {request_id!r}")
        return {"request_id": request_id, "status": "pending"}

    def list_quotas(self) -> dict[str, dict[str, Any]]:
        self._call("list_quotas")
        salts = set(self.quotas) | set(self.usage)
        return {s: {"limit_bytes": self.quotas.get(s), "usage_bytes": self.usage.get(s, 0)} for s in salts}

    def metrics_text(self) -> str:
        self._call("metrics_text")
        return (
            "# HELP lmcache_mp_lookup_hit_tokens_total Tokens found by lookups.\n"
            "# TYPE lmcache_mp_lookup_hit_tokens_total counter\n"
            f'lmcache_mp_lookup_hit_tokens_total{{model_name="m",cache_salt=""}} {self.hits}\n'
        )

    def reset_metrics(self) -> None:
        self._call("reset_metrics")
        self.hits = 0


def _conforms(facade: FakeFacade) -> ServerFacade:
    return facade  # mypy/pyright check that FakeFacade implements the protocol
