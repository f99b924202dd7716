"""``lmcache describe kvcache``: the state of a running lmcache server, from ``GET /status``.

Usage::

    lmcache describe kvcache [--url http://localhost:8080] [--timeout 5] [--format json]
        [--output PATH] [-q]

The layout is LMCache's (its CLI reference)::

    ============ LMCache KV Cache Service ============
    Health:                                         OK
    URL:                         http://localhost:8080
    Engine type:                         MPCacheServer
    Chunk size:                                    256
    L1 capacity (GB):                            60.00
    L1 used (GB):                        42.30 (70.5%)
    Eviction policy:                               LRU
    Cached objects:                               1024
    Active sessions:                                 3
    ---- Model: meta-llama/Llama-3.1-70B-Instruct ----
    Model:           meta-llama/Llama-3.1-70B-Instruct
    World size:                                      4
    GPU IDs:                                0, 1, 2, 3
    ...
    ------------- L2: NixlStoreL2Adapter -------------
    Type:                           NixlStoreL2Adapter
    Health:                                         OK
    ...
    ==================================================

Fields the server does not publish show ``N/A``; per-model rows and L2 rows appear when the
server has them. With ``--format json`` models and L2 adapters are the lists ``models`` and
``l2_adapters``. GB is GiB (2^30 bytes), as in LMCache. An unhealthy server adds a
``Failing`` row naming the failing components. Exit status 1 (one line on stderr) when the
server cannot be reached or answers with an error.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from lmcache.cli.options import add_output_options, emit_report
from lmcache.cli.status import ExitStatus
from lmcache.client.http import DEFAULT_URLS, AdminApiError, add_server_arguments, client_from_args
from lmcache.report import Report, Row, Section

NAME = "describe"
HELP = "Show the detailed state of a running lmcache server."

_TITLE = "LMCache KV Cache Service"
_WIDTH = 50
_GIB = 1 << 30

# (layout key(s), label, JSON key) of a model section, in LMCache's order.
_MODEL_FIELDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("attention_backend",), "Attention backend", "attention_backend"),
    (("gpu_kv_shape", "engine_kv_shape"), "GPU KV shape", "gpu_kv_shape"),
    (("gpu_kv_concrete_shape", "engine_kv_concrete_shape"), "GPU KV tensor shape", "gpu_kv_concrete_shape"),
    (("num_layers",), "Num layers", "num_layers"),
    (("block_size", "tokens_per_block"), "Block size", "block_size"),
    (("hidden_dim_size", "hidden_dim_sizes"), "Hidden dim size", "hidden_dim_size"),
    (("dtype",), "Dtype", "dtype"),
    (("is_mla",), "MLA", "is_mla"),
    (("num_blocks",), "Num blocks", "num_blocks"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        description=f"{HELP} Health, L1 usage and eviction, registered models and L2 adapters (GET /status).",
    )
    parser.add_argument("target", choices=("kvcache",), help="What to describe (only kvcache).")
    add_server_arguments(parser, default_url=DEFAULT_URLS["kvcache"])
    add_output_options(parser)
    parser.set_defaults(func=run)


def _get(data: Any, *keys: str) -> Any:
    cur = data
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _health(flag: Any) -> str | None:
    return None if flag is None else ("OK" if flag else "UNHEALTHY")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _l1_manager(sm: Any) -> Any:
    legacy = _get(sm, "l1_manager")
    if isinstance(legacy, Mapping):
        return legacy
    managers = _get(sm, "l1_managers")
    if isinstance(managers, Mapping) and managers:
        return next(iter(managers.values()))
    return None


def _overview(status: Mapping[str, Any], url: str) -> Section:
    sm = status.get("storage_manager")
    l1 = _l1_manager(sm)
    total = _number(_get(l1, "memory_total_bytes"))
    used = _number(_get(l1, "memory_used_bytes"))
    ratio = _number(_get(l1, "memory_usage_ratio"))
    if ratio is None and used is not None and total:
        ratio = used / total
    used_text = f"{used / _GIB:.2f} ({ratio * 100:.1f}%)" if used is not None and ratio is not None else None
    policy = _get(sm, "l1_eviction_controller", "eviction_policy") or _get(
        sm, "eviction_controller", "eviction_policy"
    )
    rows = [
        Row("Health", _health(status.get("is_healthy"))),
        Row("URL", url),
        Row("Engine type", status.get("engine_type")),
        Row("Chunk size", status.get("chunk_size")),
        Row("L1 capacity (GB)", None if total is None else round(total / _GIB, 2)),
        Row("L1 used (GB)", used_text),
        Row("Eviction policy", policy),
        Row("Cached objects", _get(l1, "total_object_count")),
        Row("Active sessions", status.get("active_sessions")),
    ]
    if status.get("is_healthy") is False:
        failing = status.get("failing")
        reason = (
            "; ".join(f"{k}: {v}" for k, v in sorted(failing.items()))
            if isinstance(failing, Mapping) and failing
            else status.get("unhealthy_reason")
        )
        rows.append(Row("Failing", reason))
    return Section(None, rows)


def _layout_value(layout: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    groups = layout.get("kernel_groups")
    first_group = groups[0] if isinstance(groups, list) and groups and isinstance(groups[0], Mapping) else {}
    for source in (layout, first_group):
        for key in keys:
            if key in source:
                return True, source[key]
    return False, None


def _models(status: Mapping[str, Any]) -> list[Section]:
    meta = status.get("cache_context_meta") or status.get("gpu_context_meta")
    if not isinstance(meta, Mapping):
        return []
    seen: dict[tuple[str, Any], tuple[list[str], Any]] = {}
    for gpu_id, info in meta.items():
        if not isinstance(info, Mapping):
            continue
        key = (str(info.get("model_name")), info.get("world_size"))
        ids, _ = seen.setdefault(key, ([], info.get("kv_cache_layout")))
        ids.append(str(gpu_id))
    sections = []
    for (model, world_size), (ids, layout) in seen.items():
        rows = [Row("Model", model), Row("World size", world_size), Row("GPU IDs", ", ".join(ids))]
        if isinstance(layout, Mapping):
            for keys, label, json_key in _MODEL_FIELDS:
                found, value = _layout_value(layout, keys)
                if found:
                    rows.append(Row(label, value, key=json_key))
        sections.append(Section(f"Model: {model}", rows, group="models"))
    return sections


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _l2_adapters(status: Mapping[str, Any]) -> list[Section]:
    adapters = _get(status.get("storage_manager"), "l2_adapters")
    if not isinstance(adapters, list):
        return []
    sections = []
    for adapter in adapters:
        info = adapter if isinstance(adapter, Mapping) else {}
        kind = info.get("type") or info.get("type_name") or "Unknown"
        rows = [Row("Type", kind), Row("Health", _health(info.get("is_healthy")))]
        if "backend" in info:
            rows.append(Row("Backend", info["backend"]))
        if "base_path" in info:
            rows.append(Row("Base path", info["base_path"]))
        if "stored_object_count" in info:
            rows.append(Row("Stored objects", info["stored_object_count"], key="stored_object_count"))
        cap, used = _number(info.get("max_capacity_bytes")), _number(info.get("current_size_bytes"))
        if cap is not None and used is not None:
            pct = used / cap * 100 if cap > 0 else 0.0
            rows.append(Row("Used", f"{_bytes(used)} / {_bytes(cap)} ({pct:.1f}%)"))
        size, free = _number(info.get("pool_size")), _number(info.get("pool_free_slots"))
        if size is not None and free is not None:
            pct = (size - free) / size * 100 if size > 0 else 0.0
            rows.append(Row("Pool used", f"{size - free:.0f} / {size:.0f} ({pct:.1f}%)"))
        sections.append(Section(f"L2: {kind}", rows, group="l2_adapters"))
    return sections


def build_report(status: Mapping[str, Any], url: str) -> Report:
    """The ``describe kvcache`` report of a ``/status`` document fetched from ``url``."""
    sections = [_overview(status, url), *_models(status), *_l2_adapters(status)]
    return Report(_TITLE, sections, width=_WIDTH)


def run(args: argparse.Namespace) -> int:
    client = client_from_args(args, DEFAULT_URLS["kvcache"])
    status = client.request("GET", "/status")
    if not isinstance(status, Mapping):
        raise AdminApiError(f"GET {client.base_url}/status: the answer is not a JSON object", status=200)
    emit_report(args, build_report(status, client.base_url))
    return ExitStatus.SUCCESS
