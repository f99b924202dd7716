"""The real :class:`~lmcache.server.facade.ServerFacade`: what the HTTP API sees of a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmcache import __version__, errors
from lmcache._native import transfer
from lmcache.config import to_dict
from lmcache.server.core import ServerCore
from lmcache.server.dispatcher import Dispatcher
from lmcache.server.facade import Health


def _prom_name(name: str) -> str:
    return "lmcache_mp_" + name


class CoreFacade:
    def __init__(self, core: ServerCore, dispatcher: Dispatcher, reaper_alive: Callable[[], bool]) -> None:
        self._core = core
        self._dispatcher = dispatcher
        self._reaper_alive = reaper_alive
        # Quotas recorded while the policy cannot enforce them (not IsolatedLRU): shown with
        # "enforced": false so nobody mistakes them for limits.
        self._soft_quotas: dict[str, int] = {}

    # ---- health ----

    def health(self) -> Health:
        failing = dict(self._dispatcher.health_reasons())
        eng = self._core.engine
        ev = eng.eviction.stats()
        if not ev["healthy"]:
            failing["l1_eviction_controller"] = (
                "eviction thread not running"
                if not ev["thread_alive"]
                else "eviction thread missed its deadline"
            )
        if not eng.notifier.stats()["running"]:
            failing["periodic_notifier"] = "notifier thread not running"
        if not self._reaper_alive():
            failing["worker_reaper"] = "liveness/session thread not running"
        return Health(healthy=not failing, failing=failing)

    # ---- status ----

    def status(self) -> dict[str, Any]:
        core = self._core
        l1 = core.engine.l1.stats()
        ev = core.engine.eviction.stats()
        mp = core.config.mp
        health = self.health()
        l1_manager = {
            "total_object_count": l1["resident_objects"],
            "write_locked_count": l1["write_locked_objects"],
            "read_locked_count": l1["read_locked_objects"],
            "temporary_count": l1["temporary_objects"],
            "staging_object_count": l1["staging_objects"],
            "staging_bytes": l1["staging_bytes"],
            "doomed_object_count": l1["doomed_objects"],
            "memory_used_bytes": l1["used_bytes"],
            "memory_total_bytes": l1["capacity_bytes"],
            "memory_usage_ratio": l1["used_bytes"] / l1["capacity_bytes"] if l1["capacity_bytes"] else 0.0,
            "memory_prefaulted_bytes": l1["prefaulted_bytes"],
            "write_ttl_seconds": l1["write_ttl_seconds"],
            "read_ttl_seconds": l1["read_ttl_seconds"],
            "evicted_object_count": l1["evicted_objects"],
            "allocation_failure_count": l1["allocation_failures"],
        }
        eviction = {
            "eviction_policy": ev["eviction_policy"],
            "trigger_watermark": ev["trigger_watermark"],
            "eviction_ratio": ev["eviction_ratio"],
            "thread_alive": ev["thread_alive"],
            "is_healthy": ev["healthy"],
            "ticks": ev["ticks"],
            "evicted_bytes": ev["evicted_bytes"],
        }
        regs = core.registrations()
        engine_driven = core.engine_driven.status()
        live_count, live_bytes = transfer.live_mappings()
        return {
            "is_healthy": health.healthy,
            "unhealthy_components": health.failing,
            "engine_type": "MPCacheServer",
            "version": __version__,
            "instance_id": mp.instance_id,
            "chunk_size": core.chunk_size,
            "hash_algorithm": core.hasher.algorithm,
            "supported_transfer_modes": core.transfer_modes,
            "eviction_policy": ev["eviction_policy"],
            "active_sessions": len(core.sessions),
            "active_prefetch_jobs": 0,
            "active_p2p_lookup_jobs": 0,
            "storage_manager": {
                "l1_manager": l1_manager,
                "l1_managers": {"default": l1_manager},
                "l1_eviction_controller": eviction,
                "l1_eviction_controllers": {"default": eviction},
                "store_controller": {},
                "store_controllers": {},
                "prefetch_controller": {},
                "l2_eviction_controller": {},
                "l2_adapters": [],
            },
            "worker_liveness": {
                "enabled": mp.worker_reap_timeout_seconds > 0,
                "reap_timeout_seconds": mp.worker_reap_timeout_seconds,
                "registration_grace_seconds": mp.worker_registration_grace_seconds,
                "tracked_instances": len(regs) + len(engine_driven["registered_non_cuda_instance_ids"]),
            },
            "kv_events": {"enabled": False},
            "registered_gpu_ids": sorted(r.instance_id for r in regs),
            "cache_context_meta": {
                str(r.instance_id): {
                    "model_name": r.model_name,
                    "world_size": r.world_size,
                    "kv_cache_layout": r.kv.describe(),
                }
                for r in regs
            },
            **engine_driven,
            "shm_mappings": {"live": live_count, "bytes": live_bytes},
            "requests": {
                "received": self._dispatcher.stats.requests,
                "replied": self._dispatcher.stats.replies,
                "rejected": dict(self._dispatcher.stats.rejected),
                "in_flight": self._dispatcher.in_flight(),
            },
        }

    def config(self) -> dict[str, Any]:
        return to_dict(self._core.config)

    def version(self) -> str:
        return __version__

    # ---- cache ----

    def clear(self, tier: str, force: bool) -> dict[str, Any]:
        if tier not in ("l1", "l2", "all"):
            raise errors.InvalidArgumentError(f"unknown tier {tier!r} (choose l1, l2 or all)")
        cleared: dict[str, Any] = {"tier": tier}
        if tier in ("l1", "all"):
            cleared["l1_objects"] = self._core.engine.l1.clear(force)
        if tier in ("l2", "all"):
            cleared["l2_objects"] = 0  # no L2 adapter is configured in this build yet
        return cleared

    def checksums(
        self, instance_id: int, block_ids: list[int], chunk_size: int, layerwise: bool
    ) -> dict[str, Any]:
        if not block_ids:
            raise errors.InvalidArgumentError("block_ids must not be empty")
        if chunk_size <= 0:
            raise errors.InvalidArgumentError("chunk_size must be positive")
        reg = self._core._registration(instance_id)
        sums = reg.kv.checksums(block_ids, chunk_size, layerwise)
        num_chunks = (len(block_ids) + chunk_size - 1) // chunk_size
        ranges = [
            [block_ids[i * chunk_size], block_ids[min(len(block_ids), (i + 1) * chunk_size) - 1]]
            for i in range(num_chunks)
        ]
        if layerwise:
            out: Any = {f"layer_{i}": row for i, row in enumerate(sums)}
        else:
            out = sums
        return {
            "status": "success",
            "chunk_size": chunk_size,
            "num_chunks": num_chunks,
            "chunk_checksums": out,
            "layerwise": layerwise,
            "block_id_ranges": ranges,
        }

    # ---- quotas ----

    def set_quota(self, cache_salt: str, limit_bytes: int) -> None:
        l1 = self._core.engine.l1
        if l1.supports_quotas:
            l1.set_quota(cache_salt, limit_bytes)
        else:
            self._soft_quotas[cache_salt] = limit_bytes

    def _quotas(self) -> dict[str, int]:
        l1 = self._core.engine.l1
        return dict(l1.quotas()) if l1.supports_quotas else dict(self._soft_quotas)

    def get_quota(self, cache_salt: str) -> dict[str, Any]:
        quotas = self._quotas()
        usage = self._core.engine.l1.usage_by_salt().get(cache_salt, 0)
        return {
            "limit_bytes": quotas.get(cache_salt),
            "usage_bytes": usage,
            "exists": cache_salt in quotas,
            "enforced": self._core.engine.l1.supports_quotas,
        }

    def delete_quota(self, cache_salt: str) -> bool:
        l1 = self._core.engine.l1
        if l1.supports_quotas:
            try:
                l1.remove_quota(cache_salt)
            except errors.NotFoundError:
                return False
            return True
        return self._soft_quotas.pop(cache_salt, None) is not None

    def list_quotas(self) -> dict[str, dict[str, Any]]:
        quotas = self._quotas()
        usage = self._core.engine.l1.usage_by_salt()
        return {
            salt: {"limit_bytes": quotas.get(salt), "usage_bytes": usage.get(salt, 0)}
            for salt in sorted(set(quotas) | set(usage))
        }

    # ---- metrics ----

    def metrics_text(self) -> str:
        core = self._core
        l1 = core.engine.l1.stats()
        c = core.counters
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
            full = _prom_name(name)
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            lines.append(f"{full}{labels} {value}")

        metric(
            "lookup_requested_tokens_total",
            "counter",
            "Tokens asked for by lookups.",
            c.lookup_requested_tokens,
        )
        metric("lookup_hit_tokens_total", "counter", "Tokens found by lookups.", c.lookup_hit_tokens)
        metric("lookup_hit_l1_tokens_total", "counter", "Tokens found in L1 by lookups.", c.lookup_hit_tokens)
        metric("lookup_hit_l2_tokens_total", "counter", "Tokens found in L2 by lookups.", 0)
        metric("num_finished_stores_total", "counter", "Store requests served.", c.stores)
        metric("num_finished_retrieves_total", "counter", "Retrieve requests served.", c.retrieves)
        metric("l1_write_chunks_total", "counter", "Chunks written to L1.", c.store_chunks)
        metric("l1_read_chunks_total", "counter", "Chunks read from L1.", c.retrieve_chunks)
        metric("l1_memory_usage_bytes", "gauge", "L1 bytes in use.", l1["used_bytes"])
        metric("l1_memory_capacity_bytes", "gauge", "L1 capacity in bytes.", l1["capacity_bytes"])
        ratio = l1["used_bytes"] / l1["capacity_bytes"] if l1["capacity_bytes"] else 0.0
        metric("l1_usage_ratio", "gauge", "L1 bytes in use / capacity.", ratio)
        metric("l1_evicted_chunks_total", "counter", "Chunks evicted from L1.", l1["evicted_objects"])
        metric(
            "l1_allocation_failure_chunks_total",
            "counter",
            "Chunks a store could not place in L1 (answered ok=false).",
            l1["allocation_failures"],
        )
        metric(
            "l1_eviction_loop_ticks_total",
            "counter",
            "Eviction thread ticks.",
            core.engine.eviction.stats()["ticks"],
        )
        metric("active_sessions", "gauge", "Open sessions.", len(core.sessions))
        metric(
            "registered_instances", "gauge", "Workers with a registered KV cache.", len(core.registrations())
        )
        metric("worker_reaped_total", "counter", "Workers reaped for silence.", c.reaped)
        rejected = self._dispatcher.stats.rejected
        name = _prom_name("rejected_requests_total")
        lines.append(f"# HELP {name} Requests rejected, by reason.")
        lines.append(f"# TYPE {name} counter")
        for reason, n in sorted(rejected.items()):
            lines.append(f'{name}{{reason="{reason}"}} {n}')
        return "\n".join(lines) + "\n"

    def reset_metrics(self) -> None:
        self._core.reset_counters()
