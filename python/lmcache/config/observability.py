"""Observability options of ``lmcache server``: the event bus, metrics, logging, tracing, and the
lookup hash log (a logging subscriber, so part of this group, as in LMCache).

Accepted ranges, and why:

* ``--event-bus-queue-size``: 1 to 10,000,000 events (each queued event holds memory).
* ``--prometheus-port``: a TCP port, 0 to 65535; 0 lets the OS pick a free port.
* ``--metrics-sample-rate``: a share in [0, 1]; 0 records no sampled histogram.
* ``--otlp-endpoint``: ``host:port`` or ``http(s)://host[:port][/path]``; ``--enable-tracing``
  needs it.
* ``--lookup-hash-log-dir``: ``""`` (off) or a path that is a directory or does not exist yet
  (it is created).
* rotation: 1 s to one year; 1 byte to 1 TiB; 1 to 1,000,000 files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from lmcache.config.fields import Requirement, flag, number_range, option

__all__ = ["LookupHashLogConfig", "ObservabilityConfig"]

_HOST_PORT_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):[0-9]{1,5}")


def _is_otlp_endpoint(text: str) -> bool:
    if not text or any(c.isspace() for c in text):
        return False
    if "://" not in text:
        if not _HOST_PORT_RE.fullmatch(text):
            return False
        return 1 <= int(text.rsplit(":", 1)[1]) <= 65535
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and (port is None or port >= 1)


def _is_log_dir(text: str) -> bool:
    if text == "":
        return True
    if "\0" in text:
        return False
    return os.path.isdir(text) or not os.path.lexists(text)


_OTLP = Requirement(
    "of the form host:port or http(s)://host[:port][/path]", _is_otlp_endpoint, noun="an OTLP endpoint"
)
_LOG_DIR = Requirement('that is a directory or does not exist yet, or "" (off)', _is_log_dir, noun="a path")


@dataclass(frozen=True, kw_only=True)
class LookupHashLogConfig:
    """Lookup hash logging: the chunk hashes computed by each lookup, written to rotating JSONL files."""

    TITLE: ClassVar[str] = "Lookup Hash Logging"

    lookup_hash_log_dir: str = option(
        "--lookup-hash-log-dir",
        "Directory for the lookup hash JSONL files (created when missing): each lookup publishes "
        "the chunk hashes it computed, for offline analysis. An empty string turns the log off.",
        "",
        validate=_LOG_DIR,
        metavar="DIR",
    )
    lookup_hash_log_rotation_interval: int = option(
        "--lookup-hash-log-rotation-interval",
        "Seconds after which the lookup hash log moves on to a new file.",
        21600,
        validate=number_range(ge=1, le=365 * 24 * 3600),
        metavar="SECONDS",
    )
    lookup_hash_log_rotation_max_size: int = option(
        "--lookup-hash-log-rotation-max-size",
        "Size in bytes at which a lookup hash log file is rotated even before the interval ends.",
        104857600,
        validate=number_range(ge=1, le=1 << 40),
        metavar="BYTES",
    )
    lookup_hash_log_max_files: int = option(
        "--lookup-hash-log-max-files",
        "Most lookup hash log files kept; the oldest are deleted beyond it.",
        100,
        validate=number_range(ge=1, le=1_000_000),
        metavar="N",
    )

    @property
    def enabled(self) -> bool:
        return self.lookup_hash_log_dir != ""


@dataclass(frozen=True, kw_only=True)
class ObservabilityConfig:
    """Observability: the event bus and its metrics, logging and tracing subscribers."""

    TITLE: ClassVar[str] = "Observability"

    disable_observability: bool = option(
        "--disable-observability",
        "Master switch: no event bus at all, so no metrics, logging or tracing subscribers.",
        False,
    )
    disable_metrics: bool = option(
        "--disable-metrics",
        "Register no metrics subscribers (no Prometheus metrics).",
        False,
    )
    disable_logging: bool = option(
        "--disable-logging",
        "Register no logging subscribers (the lookup hash log included).",
        False,
    )
    enable_tracing: bool = option(
        "--enable-tracing",
        "Register the tracing subscribers, which export spans to --otlp-endpoint (required with it).",
        False,
    )
    event_bus_queue_size: int = option(
        "--event-bus-queue-size",
        "Most events queued on the event bus; newer events are dropped beyond it (tail drop).",
        10000,
        validate=number_range(ge=1, le=10_000_000),
        metavar="N",
    )
    otlp_endpoint: str | None = option(
        "--otlp-endpoint",
        "OTLP gRPC endpoint that metrics and traces are exported to, e.g. http://localhost:4317.",
        None,
        validate=_OTLP,
        metavar="URL",
    )
    prometheus_port: int = option(
        "--prometheus-port",
        "Port of the Prometheus /metrics endpoint; 0 lets the OS pick a free port.",
        9090,
        validate=number_range(ge=0, le=65535),
        metavar="PORT",
    )
    metrics_sample_rate: float = option(
        "--metrics-sample-rate",
        "Share of operations whose throughput is recorded in the sampled histograms (e.g. "
        "lmcache_mp_l0_l1_store_throughput_GB_per_second).",
        0.01,
        validate=number_range(ge=0, le=1),
        metavar="RATE",
    )
    lookup_hash_log: LookupHashLogConfig = field(default_factory=LookupHashLogConfig)

    def cross_check(self) -> list[str]:
        """Tracing exports to an OTLP endpoint, so it needs one."""
        if self.enable_tracing and self.otlp_endpoint is None:
            return [
                f"{flag(ObservabilityConfig, 'enable_tracing')}: needs "
                f"{flag(ObservabilityConfig, 'otlp_endpoint')} (where the spans are exported)"
            ]
        return []

    @property
    def metrics_enabled(self) -> bool:
        return not (self.disable_observability or self.disable_metrics)

    @property
    def logging_enabled(self) -> bool:
        return not (self.disable_observability or self.disable_logging)
