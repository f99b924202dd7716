"""The real :class:`~lmcache.server.facade.ServerFacade`: what the HTTP API sees of a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmcache import __version__, errors
from lmcache._native import keys as nkeys
from lmcache._native import transfer
from lmcache.config import to_dict
from lmcache.server.core import ServerCore
from lmcache.server.dispatcher import Dispatcher
from lmcache.server.facade import Health


def _prom_name(name: str) -> str:
    return "lmcache_mp_" + name


def _page(
    list_page: Callable[[], tuple[list[dict[str, Any]], str]], page_token: str
) -> tuple[list[dict[str, Any]], str]:
    """One listing page; a rejected ``page_token`` is reported under that name (the HTTP field)."""
    try:
        return list_page()
    except errors.InvalidArgumentError as exc:
        if not page_token:
            raise
        raise errors.InvalidArgumentError(f"bad page_token: {exc}") from None


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
        if not eng.l2_healthy:
            failing["l2_controllers"] = "L2 store/prefetch controller not running"
        return Health(healthy=not failing, failing=failing)

    def _l2_sections(self) -> dict[str, Any]:
        """The L2 parts of ``storage_manager`` in /status (LMCache's keys, plus our counters)."""
        l2 = self._core.engine.l2_status()
        if l2 is None:
            return {
                "store_controller": {},
                "store_controllers": {},
                "prefetch_controller": {},
                "l2_eviction_controller": {},
                "l2_adapters": [],
            }
        sc, pc, adapters = l2["store_controller"], l2["prefetch_controller"], l2["adapters"]
        store = {
            "is_healthy": sc["running"],
            "thread_alive": sc["running"],
            "pending_keys_count": sc["queue_depth"],
            "in_flight_task_count": sc["in_flight_batches"],
            "num_l2_adapters": len(adapters),
            "num_active_adapters": len(adapters),
            "num_draining_adapters": 0,
            **sc,
        }
        prefetch = {
            "is_healthy": pc["running"],
            "thread_alive": pc["running"],
            "submission_queue_size": pc["queued"],
            "pending_queue_size": pc["queued"],
            "in_flight_request_count": pc["in_flight"],
            "completed_results_count": pc["results_pending"],
            "num_l2_adapters": len(adapters),
            "num_active_adapters": len(adapters),
            "num_draining_adapters": 0,
            **pc,
        }
        eviction = {
            str(i): {
                "eviction_policy": a["details"].get("eviction_policy", "none"),
                "evicted_objects": a["counters"]["evicted_objects"],
                "evicted_bytes": a["counters"]["evicted_bytes"],
                "usage_fraction": a["usage"]["usage_fraction"],
            }
            for i, a in enumerate(adapters)
        }
        return {
            "store_controller": store,
            "store_controllers": {"default": store},
            "prefetch_controller": prefetch,
            "l2_eviction_controller": eviction,
            "l2_adapters": [{"index": i, **a} for i, a in enumerate(adapters)],
        }

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
            "active_prefetch_jobs": self._active_prefetch_jobs(),
            "active_p2p_lookup_jobs": 0,
            "storage_manager": {
                "l1_manager": l1_manager,
                "l1_managers": {"default": l1_manager},
                "l1_eviction_controller": eviction,
                "l1_eviction_controllers": {"default": eviction},
                **self._l2_sections(),
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

    def _active_prefetch_jobs(self) -> int:
        l2 = self._core.engine.l2
        if l2 is None or l2.closed:
            return 0
        pc = l2.prefetch_stats()
        return int(pc["queued"]) + int(pc["in_flight"])

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
            l2 = self._core.engine.l2
            # Every object of every adapter (an operator's explicit request; the default tier,
            # and the ZMQ clear op, clear L1 only).
            cleared["l2_objects"] = 0 if l2 is None else l2.clear_adapters()
        return cleared

    def _l2_adapter_index(self, adapter: str | None) -> int:
        """``adapter`` as given to /cache/objects: None (the first), an index, or a type name."""
        l2 = self._core.engine.l2
        if l2 is None:
            raise errors.UnavailableError("no L2 adapter is configured (--l2-adapter)")
        if adapter is None or adapter == "":
            return 0
        if adapter.isdigit():
            i = int(adapter)
            if i >= l2.num_adapters:
                raise errors.InvalidArgumentError(f"adapter {i} does not exist ({l2.num_adapters} adapters)")
            return i
        types = [a["type"] for a in l2.adapters_status()]
        if adapter not in types:
            raise errors.InvalidArgumentError(
                f"no L2 adapter of type {adapter!r} (configured: {', '.join(types)})"
            )
        return types.index(adapter)

    def list_objects(
        self, tier: str, adapter: str | None, model_name: str | None, page_size: int, page_token: str
    ) -> dict[str, Any]:
        if tier == "all":
            raise errors.InvalidArgumentError(
                "tier 'all' cannot be listed in one pass: list tier=l1, then tier=l2"
            )
        if tier not in ("l1", "l2"):
            raise errors.InvalidArgumentError(f"unknown tier {tier!r} (choose l1 or l2)")
        if not 1 <= page_size <= 10_000:
            raise errors.InvalidArgumentError(f"page_size must be in [1, 10000], got {page_size}")
        if tier == "l1":
            if adapter:
                raise errors.InvalidArgumentError(f"adapter applies to tier=l2 only, got {adapter!r}")
            entries, cursor = _page(
                lambda: self._core.engine.l1.list_objects(model_name or None, page_size, page_token),
                page_token,
            )
            return {
                "tier": "l1",
                "adapter": None,
                "type": "l1",
                "shared": False,
                "entries": entries,
                "next_page_token": cursor or None,
            }
        i = self._l2_adapter_index(adapter)
        l2 = self._core.engine.l2
        status = l2.adapters_status()[i]
        entries, cursor = _page(
            lambda: l2.list_objects(i, model_name or None, page_size, page_token), page_token
        )
        return {
            "tier": "l2",
            "adapter": i,
            "type": status["type"],
            "shared": bool(status.get("shared", False)),
            "entries": entries,
            "next_page_token": cursor or None,
        }

    def delete_objects(
        self, keys: list[dict[str, Any]], tier: str, force: bool, adapter: str | None
    ) -> dict[str, Any]:
        if tier not in ("l1", "l2", "all"):
            raise errors.InvalidArgumentError(f"unknown tier {tier!r} (choose l1, l2 or all)")
        groups: dict[tuple[str, int, int, str], list[bytes]] = {}
        for n, k in enumerate(keys):
            try:
                digest = bytes.fromhex(str(k["chunk_hash_hex"]))
                ident = (str(k["model_name"]), int(k["kv_rank"]), int(k.get("object_group_id", 0)))
                salt = str(k.get("cache_salt", "") or "")
            except (KeyError, TypeError, ValueError) as exc:
                raise errors.InvalidArgumentError(
                    f"keys[{n}]: needs chunk_hash_hex (hex), model_name, kv_rank (int): {exc}"
                ) from None
            if not 1 <= len(digest) <= 32 or not ident[0]:
                raise errors.InvalidArgumentError(
                    f"keys[{n}]: a chunk hash of 1 to 32 bytes and a model name"
                )
            groups.setdefault((*ident, salt), []).append(digest)
        l2 = self._core.engine.l2
        index: int | None = None
        if tier in ("l2", "all"):
            if l2 is None:
                raise errors.UnavailableError("no L2 adapter is configured (--l2-adapter)")
            index = None if adapter is None else self._l2_adapter_index(adapter)
        deleted = 0
        for (model, rank, group, salt), digests in groups.items():
            klist = nkeys.make_keys(digests, model, rank, group, salt)
            if tier in ("l1", "all"):
                deleted += self._core.engine.l1.delete(klist, force)
            if tier in ("l2", "all"):
                deleted += l2.delete_objects(klist, index)
        return {"deleted": deleted, "skipped": max(0, len(keys) - deleted), "ok": True}

    def prefetch(
        self, model_name: str, world_size: int, token_ids: list[int], cache_salt: str
    ) -> dict[str, Any]:
        return self._core.warm(model_name, world_size, token_ids, cache_salt)

    def prefetch_status(self, request_id: str) -> dict[str, Any]:
        return self._core.warm_status(request_id)

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
        metric(
            "lookup_hit_l1_tokens_total",
            "counter",
            "Of lookup hits: tokens served from objects L1 already held.",
            c.lookup_hit_l1_tokens,
        )
        metric(
            "lookup_hit_l2_tokens_total",
            "counter",
            "Of lookup hits: tokens loaded from L2 into L1 (l1 + l2 == hit).",
            c.lookup_hit_l2_tokens,
        )
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
        self._l2_metrics(metric, lines)
        rejected = self._dispatcher.stats.rejected
        name = _prom_name("rejected_requests_total")
        lines.append(f"# HELP {name} Requests rejected, by reason.")
        lines.append(f"# TYPE {name} counter")
        for reason, n in sorted(rejected.items()):
            lines.append(f'{name}{{reason="{reason}"}} {n}')
        return "\n".join(lines) + "\n"

    def _l2_metrics(self, metric: Callable[..., None], lines: list[str]) -> None:
        """L2 counters (LMCache's ``lmcache_mp_l2_*`` names where it has them)."""
        l2 = self._core.engine.l2_status()
        if l2 is None:
            return
        sc, pc, adapters = l2["store_controller"], l2["prefetch_controller"], l2["adapters"]
        metric(
            "l2_store_submitted_total",
            "counter",
            "L2 store tasks submitted (group x adapter).",
            sc["batches"],
        )
        metric(
            "l2_store_submitted_objects_total",
            "counter",
            "Chunks submitted for L2 store (per adapter).",
            sc["submitted_keys"],
        )
        metric(
            "l2_store_completed_objects_total",
            "counter",
            "Chunks stored to L2 (per adapter).",
            sc["stored_keys"],
        )
        metric("l2_store_failed_objects_total", "counter", "Chunks L2 failed to store.", sc["failed_keys"])
        metric(
            "l2_store_dropped_objects_total",
            "counter",
            "Chunks not written behind: the queue was full (L2 slower than L1).",
            sc["dropped_keys"],
        )
        metric("l2_store_bytes_total", "counter", "Bytes written to L2.", sc["stored_bytes"])
        metric("l2_store_queue_depth", "gauge", "Chunks waiting for write-behind.", sc["queue_depth"])
        metric("l2_prefetch_lookup_total", "counter", "Prefetch requests submitted.", pc["submitted"])
        metric(
            "l2_prefetch_lookup_objects_total",
            "counter",
            "Chunks asked of L2 adapters (per adapter).",
            pc["l2_lookup_keys"],
        )
        metric("l2_prefetch_load_completed_total", "counter", "Chunks loaded from L2.", pc["loaded_keys"])
        metric("l2_prefetch_loaded_bytes_total", "counter", "Bytes loaded from L2.", pc["loaded_bytes"])
        metric(
            "l2_prefetch_failure_total",
            "counter",
            "Chunks found in L2 that failed to load into L1.",
            pc["load_failures"],
        )
        metric("l2_prefetch_timeouts_total", "counter", "L2 tasks that timed out.", pc["timeouts"])
        metric("l2_prefetch_in_flight", "gauge", "Prefetch requests running now.", pc["in_flight"])
        metric(
            "l2_evicted_objects_total",
            "counter",
            "Chunks evicted from L2.",
            sum(a["counters"]["evicted_objects"] for a in adapters),
        )
        name = _prom_name("l2_usage_bytes")
        lines.append(f"# HELP {name} Bytes stored per L2 adapter.")
        lines.append(f"# TYPE {name} gauge")
        for i, a in enumerate(adapters):
            lines.append(f'{name}{{adapter="{i}",type="{a["type"]}"}} {a["usage"]["total_bytes"]}')

    def reset_metrics(self) -> None:
        self._core.reset_counters()
