"""Options that are set but have no effect, so that none is ignored silently.

Every flag of LMCache's ``lmcache server`` is parsed and validated, including those of features
this build does not have yet (:data:`PENDING_FEATURES`). :func:`inactive_features` returns one
line per option that is set (differs from its default) but does nothing, either because its
feature is pending or because another option turns it off; ``lmcache server`` prints them at
startup and ``lmcache config check`` as warnings. When a feature lands, delete its entry from
:data:`PENDING_FEATURES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lmcache.config.fields import OptionInfo, decode_json_object, flag, options, sub_configs
from lmcache.config.server import BLEND_ENGINE_TYPES, ServerConfig

__all__ = ["PENDING_FEATURES", "PendingFeature", "inactive_features", "pending_feature_of"]


@dataclass(frozen=True)
class PendingFeature:
    """A feature whose options are parsed and validated, but that this build does not run yet."""

    name: str
    options: tuple[str, ...]  # option names (fields of the classes under ServerConfig)
    absent: str  # e.g. "the GDS L1 tier is not available in this build yet"
    instead: str  # what happens instead, e.g. "L1 stays in DRAM"

    @property
    def effect(self) -> str:
        """The end of the line "<flag>: ..." for an option of this feature that is set."""
        return f"{self.absent}; {self.instead}"


PENDING_FEATURES: tuple[PendingFeature, ...] = (
    PendingFeature(
        "gds",
        ("gds_l1_path", "gds_l1_use_direct_io"),
        "the GDS L1 tier is not available in this build yet",
        "L1 stays in DRAM",
    ),
    PendingFeature(
        "blend",
        ("engine_type", "enable_segmented_prefix"),
        "CacheBlend is not available in this build yet",
        "the default prefix-caching engine runs",
    ),
    PendingFeature(
        "runtime_plugins",
        ("runtime_plugin_locations", "runtime_plugin_config"),
        "runtime plugins are not available in this build yet",
        "no plugin is launched",
    ),
    PendingFeature(
        "run_script",
        ("run_script_api_enabled", "script_allowed_imports"),
        "the HTTP /run_script route is not available in this build yet",
        "POST /run_script is not served",
    ),
    PendingFeature(
        "otlp",
        ("enable_tracing", "otlp_endpoint"),
        "tracing and OTLP export are not available in this build yet",
        "nothing is exported over OTLP (metrics stay on GET /metrics of the HTTP frontend)",
    ),
    PendingFeature(
        "prometheus_exporter",
        ("prometheus_port",),
        "a separate Prometheus exporter is not available in this build yet",
        "metrics are served on the HTTP port (GET /metrics)",
    ),
)


def pending_feature_of(option_name: str) -> PendingFeature | None:
    """The pending feature that option ``option_name`` belongs to, if any."""
    for feature in PENDING_FEATURES:
        if option_name in feature.options:
            return feature
    return None


def _walk(inst: Any) -> Iterator[tuple[OptionInfo, Any]]:
    cls = type(inst)
    for opt in options(cls):
        yield opt, getattr(inst, opt.name)
    for name, _ in sub_configs(cls):
        yield from _walk(getattr(inst, name))


def _is_set(opt: OptionInfo, value: Any) -> bool:
    """Whether ``value`` differs from the option's written default (a computed default never does)."""
    return opt.default_factory is None and not opt.required and value != opt.default


def _f(name: str) -> str:
    return flag(ServerConfig, name)


# Option name -> the reason another option turns it off (None while it takes effect).
_Rule = Callable[[ServerConfig], str | None]


def _no_effect_rules() -> dict[str, _Rule]:
    def when(condition: bool, reason: str) -> str | None:
        return reason if condition else None

    def obs_off(c: ServerConfig) -> str | None:
        return when(c.observability.disable_observability, f"no effect with {_f('disable_observability')}")

    def metrics_off(c: ServerConfig) -> str | None:
        return obs_off(c) or when(c.observability.disable_metrics, f"no effect with {_f('disable_metrics')}")

    def logging_off(c: ServerConfig) -> str | None:
        return obs_off(c) or when(c.observability.disable_logging, f"no effect with {_f('disable_logging')}")

    def hash_log_off(c: ServerConfig) -> str | None:
        off = not c.observability.lookup_hash_log.enabled
        reason = f"no effect while {_f('lookup_hash_log_dir')} is empty (lookup hash logging is off)"
        return when(off, reason) or logging_off(c)

    def not_builtin(c: ServerConfig) -> str | None:
        return when(c.mp.hash_algorithm != "builtin", f"no effect unless {_f('hash_algorithm')} is builtin")

    def not_blend(c: ServerConfig) -> str | None:
        reason = f"no effect unless {_f('engine_type')} is blend or blend_legacy"
        return when(c.mp.engine_type not in BLEND_ENGINE_TYPES, reason)

    def no_shm_path(c: ServerConfig) -> str | None:
        reason = f"no effect with {_f('supported_transfer_mode')} lmcache_driven (no engine_driven path)"
        return when(c.mp.supported_transfer_mode == "lmcache_driven", reason)

    def no_plugins(c: ServerConfig) -> str | None:
        return when(not c.mp.runtime_plugin_locations, f"no effect without {_f('runtime_plugin_locations')}")

    def no_run_script(c: ServerConfig) -> str | None:
        return when(not c.http.run_script_api_enabled, f"no effect without {_f('run_script_api_enabled')}")

    def no_l2(c: ServerConfig) -> str | None:
        return when(not c.storage_manager.l2.l2_adapter, f"no effect without {_f('l2_adapter')}")

    def no_gds(c: ServerConfig) -> str | None:
        return when(c.storage_manager.gds.gds_l1_path is None, f"no effect without {_f('gds_l1_path')}")

    return {
        "allow_process_local_hash": not_builtin,
        "enable_segmented_prefix": not_blend,
        "shm_name": no_shm_path,
        "runtime_plugin_config": no_plugins,
        "script_allowed_imports": no_run_script,
        "gds_l1_use_direct_io": no_gds,
        "l2_store_policy": no_l2,
        "l2_prefetch_policy": no_l2,
        "l2_prefetch_max_in_flight": no_l2,
        "disable_metrics": obs_off,
        "disable_logging": obs_off,
        "enable_tracing": obs_off,
        "event_bus_queue_size": obs_off,
        "otlp_endpoint": obs_off,
        "prometheus_port": metrics_off,
        "metrics_sample_rate": metrics_off,
        "lookup_hash_log_dir": logging_off,
        "lookup_hash_log_rotation_interval": hash_log_off,
        "lookup_hash_log_rotation_max_size": hash_log_off,
        "lookup_hash_log_max_files": hash_log_off,
    }


_RULES = _no_effect_rules()


def _item_label(opt: OptionInfo, index: int, item: Any) -> str:
    """``--l2-adapter #2 (type fs)``: one item of a repeated option."""
    label = f"{opt.flag} #{index}"
    if opt.spec.json_object and isinstance(item, str):
        decoded = decode_json_object(item)
        kind = decoded.get("type") if decoded is not None else None
        if isinstance(kind, str):
            label += f" (type {kind})"
    return label


def inactive_features(config: ServerConfig) -> list[str]:
    """One line per option that is set but has no effect in this build, naming the flag and why.

    An option of a pending feature gives "<flag>: <feature> is not available in this build yet;
    <what happens instead>" (one line per value of a repeated option); an option that another
    option turns off gives "<flag>: no effect ...". Options at their defaults give nothing.
    """
    lines: list[str] = []
    for opt, value in _walk(config):
        if not _is_set(opt, value):
            continue
        feature = pending_feature_of(opt.name)
        reason = feature.effect if feature is not None else None
        if reason is None:
            rule = _RULES.get(opt.name)
            reason = rule(config) if rule is not None else None
        if reason is None:
            continue
        if opt.spec.sequence == "repeat":
            lines.extend(f"{_item_label(opt, i, item)}: {reason}" for i, item in enumerate(value, 1))
        else:
            lines.append(f"{opt.flag}: {reason}")
    return lines
