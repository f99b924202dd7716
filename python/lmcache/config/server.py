"""Options of ``lmcache server``: the MP (ZMQ) request server, the HTTP frontend, and the whole
server configuration (:class:`ServerConfig`) that gathers them with the storage engine and
observability.

Accepted ranges and decisions, and why:

* ``--instance-id``: a UUID (any version, 8-4-4-4-12 hex digits, kept in lower case). Unset, a
  fresh UUID4 is minted when the configuration is parsed, so each start has its own.
* ``--host`` / ``--http-host``: a host name or an IP address (``*`` too, for ZeroMQ).
* ``--port`` / ``--http-port``: 0 to 65535; 0 lets the OS pick a free port (useful for tests;
  the server reports the port it bound). Both nonzero and equal is an error.
* ``--transport``: ``zmq``. ``grpc`` (LMCache's other transport) is recognised and rejected: a
  server that quietly served ZMQ instead would leave gRPC clients hanging.
* ``--chunk-size``: 1 to 65536 tokens.
* ``--max-workers``: 1 to 1024 threads; ``--max-gpu-workers`` / ``--max-cpu-workers`` take the
  value of ``--max-workers`` while unset (:attr:`MPServerConfig.gpu_workers`, ``cpu_workers``).
* ``--hash-algorithm builtin``: Python's ``hash()`` differs between processes, so it needs
  ``--allow-process-local-hash`` as an explicit acknowledgement.
* ``--engine-type blend`` / ``blend_legacy``: need a transfer mode that loads the
  lmcache_driven path (``lmcache_driven`` or ``auto``).
* ``--shm-name``: unset = an automatic pool; otherwise a POSIX shared-memory name. ``""``, which
  makes LMCache use its pickle transfer path, is rejected: this server never unpickles data.
* ``--worker-reap-timeout-seconds``: 0 (reaping off) to one year;
  ``--worker-registration-grace-seconds`` must be at least the reap timeout.
* ``--http-auth-token``: unset (no authentication) or at least 16 printable ASCII characters
  without spaces; it is never printed.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lmcache.config.fields import Requirement, decode_json_object, flag, number_range, option, show_value
from lmcache.config.observability import ObservabilityConfig
from lmcache.config.storage import StorageConfig

__all__ = [
    "BLEND_ENGINE_TYPES",
    "ENGINE_TYPES",
    "HASH_ALGORITHMS",
    "TRANSFER_MODES",
    "TRANSPORTS",
    "HttpConfig",
    "MPServerConfig",
    "ServerConfig",
]

HASH_ALGORITHMS = ("builtin", "sha256_cbor", "blake3")
ENGINE_TYPES = ("default", "blend", "blend_legacy")
BLEND_ENGINE_TYPES = ("blend", "blend_legacy")
TRANSFER_MODES = ("lmcache_driven", "engine_driven", "auto")
TRANSPORTS = ("zmq", "grpc")
AVAILABLE_TRANSPORTS = ("zmq",)

_MAX_SECONDS = 365 * 24 * 3600.0
_PORT = number_range(ge=0, le=65535)

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HOST_RE = re.compile(r"[A-Za-z0-9_.\-:%*\[\]]{1,253}")
_SHM_RE = re.compile(r"/?[A-Za-z0-9_.\-]{1,250}")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_TOKEN_RE = re.compile(r"[\x21-\x7e]{16,4096}")


def new_instance_id() -> str:
    """A fresh UUID4, as the default ``--instance-id`` of each server start."""
    return str(uuid.uuid4())


def _parse_uuid(text: str) -> str:
    value = text.strip().lower()
    if not _UUID_RE.fullmatch(value):
        raise ValueError(text)
    return value


def _is_host(text: str) -> bool:
    return bool(_HOST_RE.fullmatch(text)) and "://" not in text


def _is_shm_name(text: str) -> bool:
    return bool(_SHM_RE.fullmatch(text)) and text.lstrip("/") not in (".", "..")


_UUID = Requirement("(8-4-4-4-12 hex digits)", lambda v: bool(_UUID_RE.fullmatch(v)), noun="a UUID")
_HOST = Requirement("", _is_host, noun="a host name or IP address")
_EXISTING_PATH = Requirement("to an existing file or directory", os.path.exists, noun="a path")
_MODULE = Requirement("", lambda v: bool(_MODULE_RE.fullmatch(v)), noun="a dotted Python module name")
_SHM_NAME = Requirement(
    'of 1 to 250 letters, digits, ".", "_" or "-", after an optional "/"',
    _is_shm_name,
    noun="a shared-memory name",
    hint=lambda v: (
        "the empty name selects LMCache's pickle transfer path, which this server never uses: it "
        "never unpickles data; leave the flag out for an automatic pool"
        if v == ""
        else None
    ),
)
_TOKEN = Requirement(
    "of 16 to 4096 printable ASCII characters without spaces",
    lambda v: bool(_TOKEN_RE.fullmatch(v)),
    noun="a token",
)


@dataclass(frozen=True, kw_only=True)
class MPServerConfig:
    """The MP request server (ZMQ) and its workers."""

    TITLE: ClassVar[str] = "MP Server"

    instance_id: str = option(
        "--instance-id",
        "Stable identity of this server: the coordinator membership key, and the OTel "
        "service.instance.id of its metrics and spans.",
        default_factory=new_instance_id,
        default_text="a fresh UUID4 minted at startup",
        parse=_parse_uuid,
        validate=_UUID,
        metavar="UUID",
    )
    host: str = option(
        "--host",
        "Address the ZMQ request server binds to.",
        "localhost",
        validate=_HOST,
        metavar="HOST",
    )
    port: int = option(
        "--port",
        "Port the ZMQ request server binds to; 0 lets the OS pick a free port (reported at startup).",
        5555,
        validate=_PORT,
        metavar="PORT",
    )
    transport: str = option(
        "--transport",
        "Transport of the request server. zmq is the one available in this build; grpc, LMCache's "
        "other transport, is recognised and refused.",
        "zmq",
        choices=TRANSPORTS,
    )
    chunk_size: int = option(
        "--chunk-size",
        "Tokens per chunk: only full chunks are hashed and stored. Clients ask for it "
        "(get_chunk_size), and the engine's connector must agree.",
        256,
        validate=number_range(ge=1, le=65536),
        metavar="TOKENS",
    )
    max_workers: int = option(
        "--max-workers",
        "Worker threads of each pool: the default of --max-gpu-workers and --max-cpu-workers.",
        1,
        validate=number_range(ge=1, le=1024),
        metavar="N",
    )
    max_gpu_workers: int | None = option(
        "--max-gpu-workers",
        "Worker threads of the GPU affinity pool (STORE/RETRIEVE). Requests of one engine instance "
        "always go to the same thread, so they never contend for its GPU transfer lock.",
        None,
        inherits="max_workers",
        validate=number_range(ge=1, le=1024),
        metavar="N",
    )
    max_cpu_workers: int | None = option(
        "--max-cpu-workers",
        "Worker threads of the CPU pool (LOOKUP and the other requests).",
        None,
        inherits="max_workers",
        validate=number_range(ge=1, le=1024),
        metavar="N",
    )
    hash_algorithm: str = option(
        "--hash-algorithm",
        "Hash of token chunks; the engine's connector must use the same one. builtin is Python's "
        "hash(), which differs between processes (unless PYTHONHASHSEED is fixed): it needs "
        "--allow-process-local-hash.",
        "blake3",
        choices=HASH_ALGORITHMS,
    )
    allow_process_local_hash: bool = option(
        "--allow-process-local-hash",
        "Acknowledge that --hash-algorithm builtin gives hashes that only match within one process "
        "tree; without it, builtin is refused.",
        False,
    )
    engine_type: str = option(
        "--engine-type",
        "Cache engine. default: prefix caching. blend: CacheBlend V3. blend_legacy: the original "
        "CacheBlend. Both blend engines need --supported-transfer-mode lmcache_driven or auto.",
        "default",
        choices=ENGINE_TYPES,
    )
    supported_transfer_mode: str = option(
        "--supported-transfer-mode",
        "Worker-to-server transfer paths loaded. lmcache_driven: the server copies (STORE/RETRIEVE, "
        "CUDA IPC or CPU shared memory). engine_driven: the worker copies (PREPARE/COMMIT). auto: "
        "both, so workers of any device type connect without configuration.",
        "auto",
        choices=TRANSFER_MODES,
    )
    runtime_plugin_locations: tuple[str, ...] = option(
        "--runtime-plugin-locations",
        "Runtime plugin scripts or directories launched alongside the server; each receives the "
        "server configuration in LMCACHE_RUNTIME_PLUGIN_CONFIG.",
        (),
        sequence="words",
        validate=_EXISTING_PATH,
        metavar="PATH",
    )
    runtime_plugin_config: str = option(
        "--runtime-plugin-config",
        "Extra configuration for the runtime plugins, as a JSON object, passed to them in "
        'LMCACHE_RUNTIME_PLUGIN_EXTRA_CONFIG, e.g. \'{"plugin.frontend.heartbeat_url": '
        '"http://localhost:5000/heartbeat"}\'.',
        "{}",
        json_object=True,
        metavar="JSON",
    )
    script_allowed_imports: tuple[str, ...] = option(
        "--script-allowed-imports",
        "Python modules that scripts posted to the HTTP /run_script route may import, e.g. "
        "--script-allowed-imports numpy pandas.",
        (),
        sequence="words",
        validate=_MODULE,
        metavar="MODULE",
    )
    shm_name: str | None = option(
        "--shm-name",
        "Name of the shared-memory pool of the non-GPU (engine_driven) transfer path. Unset: a pool "
        "is allocated automatically. The empty name, which makes LMCache fall back to its pickle "
        "path, is refused.",
        None,
        validate=_SHM_NAME,
        metavar="NAME",
    )
    worker_reap_timeout_seconds: float = option(
        "--worker-reap-timeout-seconds",
        "Silence after which a worker that has sent at least one heartbeat is reaped: its KV cache "
        "registration and everything it holds are released. 0 disables reaping. Keep it at least 3 "
        "times the connector's heartbeat interval (10 s by default).",
        120.0,
        validate=number_range(ge=0, le=_MAX_SECONDS),
        metavar="SECONDS",
    )
    worker_registration_grace_seconds: float = option(
        "--worker-registration-grace-seconds",
        "Silence after which a worker that registered but never sent a heartbeat is reaped. At "
        "least --worker-reap-timeout-seconds; generous, so a slow model warm-up is not mistaken for "
        "a dead worker.",
        3600.0,
        validate=number_range(ge=0, le=_MAX_SECONDS),
        metavar="SECONDS",
    )
    session_ttl_seconds: float = option(
        "--session-ttl-seconds",
        "Idle time after which a request session (its tokens, chunk hashes and last lookup) expires.",
        600.0,
        validate=number_range(gt=0, le=_MAX_SECONDS),
        metavar="SECONDS",
    )
    enable_segmented_prefix: bool = option(
        "--enable-segmented-prefix",
        "CacheBlend only (--engine-type blend): when an L2 retrieve fails in the middle of a prefix, "
        "keep the chunks after the gap in L1 and recompute only the gap, instead of cutting the "
        "prefix at the gap.",
        False,
    )

    def cross_check(self) -> list[str]:
        """The hash acknowledgement, the transport, blend's transfer path and the reap timeouts."""
        c = MPServerConfig
        problems: list[str] = []
        if self.transport not in AVAILABLE_TRANSPORTS:
            problems.append(
                f"{flag(c, 'transport')}: got {show_value(self.transport)}; the gRPC transport is not "
                f"available in this build yet; must be {', '.join(AVAILABLE_TRANSPORTS)}"
            )
        if self.hash_algorithm == "builtin" and not self.allow_process_local_hash:
            problems.append(
                f"{flag(c, 'hash_algorithm')}: got builtin; Python's hash() differs between processes, "
                f"so other processes would never hit; pass {flag(c, 'allow_process_local_hash')} to "
                "use it anyway, or choose blake3"
            )
        if self.engine_type in BLEND_ENGINE_TYPES and self.supported_transfer_mode == "engine_driven":
            problems.append(
                f"{flag(c, 'supported_transfer_mode')}: got engine_driven; {flag(c, 'engine_type')} "
                f"{self.engine_type} needs lmcache_driven or auto"
            )
        if self.worker_registration_grace_seconds < self.worker_reap_timeout_seconds:
            problems.append(
                f"{flag(c, 'worker_registration_grace_seconds')}: got "
                f"{show_value(self.worker_registration_grace_seconds)}; must be >= "
                f"{flag(c, 'worker_reap_timeout_seconds')} "
                f"({show_value(self.worker_reap_timeout_seconds)})"
            )
        return problems

    @property
    def gpu_workers(self) -> int:
        """Threads of the GPU affinity pool (``--max-gpu-workers``, else ``--max-workers``)."""
        return self.max_workers if self.max_gpu_workers is None else self.max_gpu_workers

    @property
    def cpu_workers(self) -> int:
        """Threads of the CPU pool (``--max-cpu-workers``, else ``--max-workers``)."""
        return self.max_workers if self.max_cpu_workers is None else self.max_cpu_workers

    @property
    def runtime_plugin_extra_config(self) -> dict[str, Any]:
        """``--runtime-plugin-config``, decoded (a fresh dict on each call)."""
        value = decode_json_object(self.runtime_plugin_config)
        if value is None:  # not reachable for a validated instance
            raise ValueError(f"--runtime-plugin-config: not a JSON object: {self.runtime_plugin_config!r}")
        return value


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """The HTTP frontend (health, status, configuration, cache and quota administration, metrics)."""

    TITLE: ClassVar[str] = "HTTP Frontend"

    http_host: str = option(
        "--http-host",
        "Address the HTTP server binds to. The default listens on every interface; pass 127.0.0.1 "
        "to keep the admin routes local.",
        "0.0.0.0",
        validate=_HOST,
        metavar="HOST",
    )
    http_port: int = option(
        "--http-port",
        "Port of the HTTP server; 0 lets the OS pick a free port (reported at startup).",
        8080,
        validate=_PORT,
        metavar="PORT",
    )
    http_auth_token: str | None = option(
        "--http-auth-token",
        "Bearer token required by every HTTP route except / and /healthcheck. Unset: no "
        "authentication. Note that command lines are visible to other local users.",
        None,
        validate=_TOKEN,
        secret=True,
        metavar="TOKEN",
    )
    run_script_api_enabled: bool = option(
        "--run-script-api-enabled",
        "Serve POST /run_script, which runs posted Python code in the server process; only for "
        "loopback clients, and the imports are limited to --script-allowed-imports.",
        False,
    )


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """The whole configuration of ``lmcache server``."""

    mp: MPServerConfig = field(default_factory=MPServerConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    storage_manager: StorageConfig
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    def cross_check(self) -> list[str]:
        """The ZMQ and HTTP servers cannot share a port."""
        port, http_port = self.mp.port, self.http.http_port
        if port != 0 and port == http_port:
            return [
                f"{flag(HttpConfig, 'http_port')}: got {port}; must differ from "
                f"{flag(MPServerConfig, 'port')} (both servers bind a TCP port)"
            ]
        return []
