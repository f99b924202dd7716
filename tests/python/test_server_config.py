"""ServerConfig: every flag of `lmcache server`, its seed default, its checks, and inactive features."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest

from lmcache.cli.main import main
from lmcache.config import (
    L2_ADAPTER_TYPES,
    GdsConfig,
    HttpConfig,
    L2Config,
    LookupHashLogConfig,
    MPServerConfig,
    ObservabilityConfig,
    ServerConfig,
    StorageConfig,
    add_arguments,
    all_options,
    effective_value,
    fields,
    from_dict,
    from_namespace,
    inactive,
    inactive_features,
    l1,
    option,
    to_dict,
    validate,
)
from lmcache.config.fields import format_default, options
from lmcache.errors import ConfigError

REQUIRED = ["--l1-size-gb", "1", "--eviction-policy", "LRU"]
NEW_CLASSES = (MPServerConfig, HttpConfig, GdsConfig, L2Config, ObservabilityConfig, LookupHashLogConfig)
DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# What inactive_features says of each pending feature.
GDS = "the GDS L1 tier is not available in this build yet; L1 stays in DRAM"
BLEND = "CacheBlend is not available in this build yet; the default prefix-caching engine runs"
PLUGINS = "runtime plugins are not available in this build yet; no plugin is launched"
RUN_SCRIPT = "the HTTP /run_script route is not available in this build yet; POST /run_script is not served"
NO_L2 = "no effect without --l2-adapter"
OTLP = (
    "tracing and OTLP export are not available in this build yet; nothing is exported over OTLP "
    "(metrics stay on GET /metrics of the HTTP frontend)"
)
PROMETHEUS = (
    "a separate Prometheus exporter is not available in this build yet; metrics are served on the "
    "HTTP port (GET /metrics)"
)


@pytest.fixture(autouse=True)
def _big_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's examples use a 100 GB L1: pretend the machine has 1 TiB."""
    monkeypatch.setattr(l1, "physical_memory_bytes", lambda: 1 << 40)
    monkeypatch.delenv("LMCACHE_DEBUG", raising=False)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test", allow_abbrev=False)
    add_arguments(parser, ServerConfig)
    return parser


def parse(argv: list[str]) -> ServerConfig:
    return from_namespace(ServerConfig, make_parser().parse_args(argv))


def flat(cfg: Any) -> dict[str, Any]:
    """{option name: effective value} over the whole tree."""
    out: dict[str, Any] = {}
    for opt in options(type(cfg)):
        out[opt.name] = effective_value(cfg, opt)
    for name, _ in fields.sub_configs(type(cfg)):
        out.update(flat(getattr(cfg, name)))
    return out


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return str(exc.value).splitlines()


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["config", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# Every flag of the seed's configuration reference, with its documented default
# ---------------------------------------------------------------------------------------------

# (flag, argv that passes the seed default explicitly (None: a flag that cannot be given "off"),
#  the default's effective value, the default as shown in help and docs)
SEED_FLAGS: list[tuple[str, list[str] | None, Any, str]] = [
    # MP Server
    ("--instance-id", None, None, "a fresh UUID4 minted at startup"),
    ("--host", ["--host", "localhost"], "localhost", "localhost"),
    ("--port", ["--port", "5555"], 5555, "5555"),
    ("--chunk-size", ["--chunk-size", "256"], 256, "256"),
    ("--max-workers", ["--max-workers", "1"], 1, "1"),
    ("--max-gpu-workers", None, 1, "inherits --max-workers"),
    ("--max-cpu-workers", None, 1, "inherits --max-workers"),
    ("--hash-algorithm", ["--hash-algorithm", "blake3"], "blake3", "blake3"),
    ("--engine-type", ["--engine-type", "default"], "default", "default"),
    ("--supported-transfer-mode", ["--supported-transfer-mode", "auto"], "auto", "auto"),
    ("--runtime-plugin-locations", ["--runtime-plugin-locations"], (), "none"),
    ("--runtime-plugin-config", ["--runtime-plugin-config", "{}"], "{}", "{}"),
    ("--script-allowed-imports", ["--script-allowed-imports"], (), "none"),
    ("--shm-name", None, None, "unset"),
    ("--worker-reap-timeout-seconds", ["--worker-reap-timeout-seconds", "120.0"], 120.0, "120"),
    (
        "--worker-registration-grace-seconds",
        ["--worker-registration-grace-seconds", "3600.0"],
        3600.0,
        "3600",
    ),
    ("--enable-segmented-prefix", None, False, "off"),
    # Lookup Hash Logging
    ("--lookup-hash-log-dir", ["--lookup-hash-log-dir", ""], "", '""'),
    ("--lookup-hash-log-rotation-interval", ["--lookup-hash-log-rotation-interval", "21600"], 21600, "21600"),
    (
        "--lookup-hash-log-rotation-max-size",
        ["--lookup-hash-log-rotation-max-size", "104857600"],
        104857600,
        "104857600",
    ),
    ("--lookup-hash-log-max-files", ["--lookup-hash-log-max-files", "100"], 100, "100"),
    # HTTP Frontend
    ("--http-host", ["--http-host", "0.0.0.0"], "0.0.0.0", "0.0.0.0"),
    ("--http-port", ["--http-port", "8080"], 8080, "8080"),
    # L1 Memory Manager (required flags: their values come from REQUIRED)
    ("--l1-size-gb", ["--l1-size-gb", "1"], 1.0, "required"),
    ("--l1-use-lazy", ["--l1-use-lazy"], True, "on"),
    ("--l1-init-size-gb", ["--l1-init-size-gb", "20"], 20.0, "20"),
    ("--l1-align-bytes", ["--l1-align-bytes", "4096"], 4096, "4096"),
    ("--l1-devdax-path", None, None, "unset"),
    # GDS L1 Tier
    ("--gds-l1-path", None, None, "unset"),
    ("--gds-l1-use-direct-io", ["--gds-l1-use-direct-io"], True, "on"),
    # L1 Manager TTLs
    ("--l1-write-ttl-seconds", ["--l1-write-ttl-seconds", "600"], 600.0, "600"),
    ("--l1-read-ttl-seconds", ["--l1-read-ttl-seconds", "300"], 300.0, "300"),
    # Eviction Policy
    ("--eviction-policy", ["--eviction-policy", "LRU"], "LRU", "required"),
    ("--eviction-trigger-watermark", ["--eviction-trigger-watermark", "0.8"], 0.8, "0.8"),
    ("--eviction-ratio", ["--eviction-ratio", "0.2"], 0.2, "0.2"),
    # L2 Policies
    ("--l2-store-policy", ["--l2-store-policy", "default"], "default", "default"),
    ("--l2-prefetch-policy", ["--l2-prefetch-policy", "default"], "default", "default"),
    ("--l2-prefetch-max-in-flight", ["--l2-prefetch-max-in-flight", "8"], 8, "8"),
    ("--periodic-notifier-interval-ms", ["--periodic-notifier-interval-ms", "5"], 5, "5"),
    # L2 Adapters
    ("--l2-adapter", None, (), "none"),
    # Observability
    ("--disable-observability", None, False, "off"),
    ("--disable-metrics", None, False, "off"),
    ("--disable-logging", None, False, "off"),
    ("--enable-tracing", None, False, "off"),
    ("--event-bus-queue-size", ["--event-bus-queue-size", "10000"], 10000, "10000"),
    ("--otlp-endpoint", None, None, "unset"),
    ("--prometheus-port", ["--prometheus-port", "9090"], 9090, "9090"),
    ("--metrics-sample-rate", ["--metrics-sample-rate", "0.01"], 0.01, "0.01"),
]

# Flags we add to the seed's set (compat reference sections 2.1, 5, 11 and 20).
OUR_FLAGS = {
    "--transport": "zmq",
    "--session-ttl-seconds": "600",
    "--allow-process-local-hash": "off",
    "--http-auth-token": "unset",
    "--run-script-api-enabled": "off",
}


def _by_flag() -> dict[str, fields.OptionInfo]:
    return {o.flag: o for o in all_options(ServerConfig)}


def test_the_flag_set_is_the_seeds_plus_ours() -> None:
    seed = [f for f, *_ in SEED_FLAGS]
    assert len(seed) == len(set(seed))
    assert set(_by_flag()) == set(seed) | set(OUR_FLAGS)


@pytest.mark.parametrize(("flag", "argv", "value", "shown"), SEED_FLAGS, ids=[f for f, *_ in SEED_FLAGS])
def test_seed_flag_default(flag: str, argv: list[str] | None, value: Any, shown: str) -> None:
    opt = _by_flag()[flag]
    assert format_default(opt) == shown
    defaults = parse(REQUIRED)
    if flag != "--instance-id":
        assert flat(defaults)[opt.name] == value
    if argv is not None:
        given = parse([*REQUIRED, *argv])
        assert dataclasses.replace(given, mp=dataclasses.replace(given.mp, instance_id="x")) == (
            dataclasses.replace(defaults, mp=dataclasses.replace(defaults.mp, instance_id="x"))
        )


@pytest.mark.parametrize(("flag", "shown"), OUR_FLAGS.items())
def test_our_flag_defaults(flag: str, shown: str) -> None:
    assert format_default(_by_flag()[flag]) == shown


def test_defaults_have_no_inactive_features() -> None:
    assert inactive_features(parse(REQUIRED)) == []


def test_instance_id_is_minted_at_parse_time() -> None:
    a, b = parse(REQUIRED).mp.instance_id, parse(REQUIRED).mp.instance_id
    assert a != b
    for value in (a, b):
        assert uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
    assert make_parser().parse_args(REQUIRED).instance_id is None  # argparse holds no default


def test_instance_id_given_is_normalised() -> None:
    given = "6F9619FF-8B86-D011-B42D-00CF4FC964FF"
    assert parse([*REQUIRED, "--instance-id", given]).mp.instance_id == given.lower()


def test_worker_pools_inherit_max_workers() -> None:
    cfg = parse([*REQUIRED, "--max-workers", "4"])
    assert (cfg.mp.max_gpu_workers, cfg.mp.max_cpu_workers) == (None, None)
    assert (cfg.mp.gpu_workers, cfg.mp.cpu_workers) == (4, 4)
    cfg = parse([*REQUIRED, "--max-workers", "4", "--max-gpu-workers", "2"])
    assert (cfg.mp.gpu_workers, cfg.mp.cpu_workers) == (2, 4)
    shown = to_dict(cfg, effective=True)["mp"]
    assert (shown["max_gpu_workers"], shown["max_cpu_workers"]) == (2, 4)
    assert to_dict(cfg)["mp"]["max_cpu_workers"] is None


def test_sequences() -> None:
    cfg = parse([*REQUIRED, "--script-allowed-imports", "numpy", "os.path", "--max-workers", "2"])
    assert cfg.mp.script_allowed_imports == ("numpy", "os.path")
    assert cfg.mp.max_workers == 2
    adapters = [
        '{"type": "fs", "base_path": "/a"}',
        '{"type": "mock", "max_size_gb": 1}',
        '{"type": "fs", "base_path": "/b"}',
    ]
    argv = [*REQUIRED]
    for a in adapters:
        argv += ["--l2-adapter", a]
    cfg = parse(argv)
    assert cfg.storage_manager.l2.l2_adapter == tuple(adapters)  # as given, in order
    assert [a["type"] for a in cfg.storage_manager.l2.adapters] == ["fs", "mock", "fs"]
    assert cfg.storage_manager.l2.adapters[2]["base_path"] == "/b"


def test_every_registered_adapter_type_parses() -> None:
    for kind in L2_ADAPTER_TYPES:
        cfg = parse([*REQUIRED, "--l2-adapter", json.dumps({"type": kind})])
        assert cfg.storage_manager.l2.adapters == [{"type": kind}]


def test_json_options() -> None:
    cfg = parse(
        [*REQUIRED, "--runtime-plugin-config", '{"plugin.frontend.heartbeat_url": "http://x:5000/hb"}']
    )
    assert cfg.mp.runtime_plugin_extra_config == {"plugin.frontend.heartbeat_url": "http://x:5000/hb"}
    assert parse(REQUIRED).mp.runtime_plugin_extra_config == {}


def test_runtime_plugin_locations(tmp_path: Path) -> None:
    script = tmp_path / "plugin.py"
    script.write_text("")
    cfg = parse([*REQUIRED, "--runtime-plugin-locations", str(script), str(tmp_path)])
    assert cfg.mp.runtime_plugin_locations == (str(script), str(tmp_path))


@pytest.mark.parametrize("name", ["lmcache_pool", "/lmcache_pool", "a.b-c_1"])
def test_shm_names(name: str) -> None:
    assert parse([*REQUIRED, "--shm-name", name]).mp.shm_name == name


@pytest.mark.parametrize(
    "endpoint", ["http://localhost:4317", "https://otel.example.com", "localhost:4317", "[::1]:4317"]
)
def test_otlp_endpoints(endpoint: str) -> None:
    cfg = parse([*REQUIRED, "--otlp-endpoint", endpoint])
    assert cfg.observability.otlp_endpoint == endpoint


def test_port_zero_is_any_free_port() -> None:
    cfg = parse([*REQUIRED, "--port", "0", "--http-port", "0", "--prometheus-port", "0"])
    assert (cfg.mp.port, cfg.http.http_port, cfg.observability.prometheus_port) == (0, 0, 0)


def test_hosts() -> None:
    cfg = parse([*REQUIRED, "--host", "::1", "--http-host", "127.0.0.1"])
    assert (cfg.mp.host, cfg.http.http_host) == ("::1", "127.0.0.1")
    assert parse([*REQUIRED, "--host", "*"]).mp.host == "*"


# ---------------------------------------------------------------------------------------------
# The seed's "Full Example"
# ---------------------------------------------------------------------------------------------

FULL_EXAMPLE = r"""
    --host 0.0.0.0 --port 6555 --chunk-size 512 --max-workers 4 --max-gpu-workers 2
    --hash-algorithm blake3 --engine-type default
    --lookup-hash-log-dir /data/lmcache/lookup_hashes
    --lookup-hash-log-rotation-interval 21600 --lookup-hash-log-rotation-max-size 104857600
    --lookup-hash-log-max-files 100
    --l1-size-gb 100 --l1-use-lazy --l1-init-size-gb 20 --l1-align-bytes 4096
    --l1-write-ttl-seconds 600 --l1-read-ttl-seconds 300
    --eviction-policy noop --l2-store-policy skip_l1 --eviction-trigger-watermark 0.9
    --eviction-ratio 0.1 --l2-prefetch-policy default --l2-prefetch-max-in-flight 8
    --periodic-notifier-interval-ms 5
    --l2-adapter '{"type": "nixl_store", "backend": "POSIX", "backend_params": {"file_path": "/data/lmcache/l2", "use_direct_io": "false"}, "pool_size": 64}'
    --prometheus-port 9090 --metrics-sample-rate 0.01 --enable-tracing
    --otlp-endpoint http://localhost:4317
"""  # noqa: E501 - the seed's command line, as written


def test_full_example_parses() -> None:
    cfg = parse(shlex.split(FULL_EXAMPLE))
    assert cfg.mp.host == "0.0.0.0" and cfg.mp.port == 6555 and cfg.mp.chunk_size == 512
    assert (cfg.mp.gpu_workers, cfg.mp.cpu_workers) == (2, 4)
    assert cfg.observability.lookup_hash_log.lookup_hash_log_dir == "/data/lmcache/lookup_hashes"
    sm = cfg.storage_manager
    assert sm.l1.l1_size_gb == 100.0 and sm.eviction.eviction_policy == "noop"
    assert sm.eviction.eviction_trigger_watermark == 0.9 and sm.eviction.eviction_ratio == 0.1
    assert sm.l2.l2_store_policy == "skip_l1"
    (adapter,) = sm.l2.adapters
    assert adapter["type"] == "nixl_store" and adapter["pool_size"] == 64
    assert cfg.observability.enable_tracing and cfg.observability.otlp_endpoint == "http://localhost:4317"
    assert cfg.observability.metrics_sample_rate == 0.01
    assert inactive_features(cfg) == [
        f"--enable-tracing: {OTLP}",
        f"--otlp-endpoint: {OTLP}",
    ]


def test_full_example_through_config_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check([*shlex.split(FULL_EXAMPLE), "--format", "json"], capsys)
    assert code == 0
    metrics = json.loads(out)["metrics"]
    assert metrics["status"] == "OK"
    assert metrics["mp"]["port"] == 6555 and metrics["mp"]["max_cpu_workers"] == 4
    assert json.loads(metrics["l2"]["l2_adapter"][0])["type"] == "nixl_store"
    lines = err.splitlines()
    assert len(lines) == 2  # tracing and OTLP; the L2 flags take effect
    assert all(line.startswith("lmcache: warning: --") for line in lines)


def test_the_quick_start_command_parses() -> None:
    """The `lmcache server` line of the CLI reference."""
    cfg = parse(shlex.split("--host 0.0.0.0 --port 5555 --l1-size-gb 100 --eviction-policy LRU"))
    assert (cfg.mp.host, cfg.mp.port, cfg.storage_manager.l1.l1_size_gb) == ("0.0.0.0", 5555, 100.0)


# ---------------------------------------------------------------------------------------------
# Bad values: one line naming the flag, exit 2 through `lmcache config check`
# ---------------------------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, str, str]] = [
    ("--instance-id", "server-1", "a UUID"),
    ("--instance-id", "6f9619ff8b86d011b42d00cf4fc964ff", "a UUID"),
    ("--instance-id", "{6f9619ff-8b86-d011-b42d-00cf4fc964ff}", "a UUID"),
    ("--host", "", "a host name or IP address"),
    ("--host", "tcp://localhost", "a host name or IP address"),
    ("--host", "local host", "a host name or IP address"),
    ("--port", "-1", ">= 0 and <= 65535"),
    ("--port", "65536", ">= 0 and <= 65535"),
    ("--port", "80.5", "an integer"),
    ("--transport", "http", "one of zmq, grpc"),
    ("--chunk-size", "0", ">= 1 and <= 65536"),
    ("--chunk-size", "65537", ">= 1 and <= 65536"),
    ("--chunk-size", "256.0", "an integer"),
    ("--max-workers", "0", ">= 1 and <= 1024"),
    ("--max-gpu-workers", "0", ">= 1 and <= 1024"),
    ("--max-cpu-workers", "many", "an integer"),
    ("--hash-algorithm", "md5", "one of builtin, sha256_cbor, blake3"),
    ("--hash-algorithm", "BLAKE3", "one of builtin, sha256_cbor, blake3"),
    ("--engine-type", "blend_v3", "one of default, blend, blend_legacy"),
    ("--supported-transfer-mode", "both", "one of lmcache_driven, engine_driven, auto"),
    ("--runtime-plugin-locations", "/no/such/plugin.py", "a path to an existing file or directory"),
    ("--runtime-plugin-config", "not json", "a JSON object"),
    ("--runtime-plugin-config", "[1, 2]", "a JSON object"),
    ("--runtime-plugin-config", '{"a": NaN}', "a JSON object"),
    ("--runtime-plugin-config", '{"a": 1, "a": 2}', "a JSON object"),
    ("--script-allowed-imports", "os path", "a dotted Python module name"),
    ("--script-allowed-imports", "1numpy", "a dotted Python module name"),
    ("--shm-name", "", "pickle transfer path"),
    ("--shm-name", "a/b", "a shared-memory name"),
    ("--shm-name", "..", "a shared-memory name"),
    ("--shm-name", "x" * 251, "a shared-memory name"),
    ("--worker-reap-timeout-seconds", "-1", ">= 0"),
    ("--worker-reap-timeout-seconds", "nan", "finite"),
    ("--worker-registration-grace-seconds", "-0.5", ">= 0"),
    ("--session-ttl-seconds", "0", "> 0"),
    ("--lookup-hash-log-dir", "/dev/null", "a directory or does not exist yet"),
    ("--lookup-hash-log-rotation-interval", "0", ">= 1"),
    ("--lookup-hash-log-rotation-interval", "1.5", "an integer"),
    ("--lookup-hash-log-rotation-max-size", "0", ">= 1"),
    ("--lookup-hash-log-max-files", "0", ">= 1"),
    ("--http-host", "0.0.0.0 ", "a host name or IP address"),
    ("--http-port", "70000", "<= 65535"),
    ("--gds-l1-path", "/no/such/nvme", "an existing directory"),
    ("--l2-store-policy", "write_through", "one of default, skip_l1"),
    ("--l2-prefetch-policy", "lru", "one of default, retain"),
    ("--l2-prefetch-max-in-flight", "0", ">= 1"),
    ("--l2-adapter", '{"type": "nixl"}', '"type" that is one of nixl_store'),
    ("--l2-adapter", '{"base_path": "/x"}', '"type" that is one of'),
    ("--l2-adapter", '{"type": 3}', '"type" that is one of'),
    ("--l2-adapter", "fs", "a JSON object"),
    ("--l2-adapter", '["fs"]', "a JSON object"),
    ("--event-bus-queue-size", "0", ">= 1"),
    ("--otlp-endpoint", "localhost", "an OTLP endpoint"),
    ("--otlp-endpoint", "ftp://localhost:4317", "an OTLP endpoint"),
    ("--otlp-endpoint", "http://", "an OTLP endpoint"),
    ("--otlp-endpoint", "localhost:99999", "an OTLP endpoint"),
    ("--prometheus-port", "-5", ">= 0"),
    ("--metrics-sample-rate", "1.5", ">= 0 and <= 1"),
    ("--metrics-sample-rate", "-0.01", ">= 0 and <= 1"),
    ("--http-auth-token", "short", "a token of 16 to 4096"),
]


@pytest.mark.parametrize(("flag", "value", "accepted"), BAD_VALUES)
def test_bad_value_is_one_line_exit_2(
    flag: str, value: str, accepted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check([*REQUIRED, f"{flag}={value}"], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"lmcache: error: {flag}: got "), line
    assert "; must be " in line and accepted in line, line
    assert "Traceback" not in err
    if flag != "--http-auth-token":
        assert (value or "''") in line or repr(value) in line


def test_bad_values_are_all_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        parse(
            [
                *REQUIRED,
                "--port",
                "-1",
                "--l2-adapter",
                "{}",
                "--l2-adapter",
                '{"type": "fs"}',
                "--l2-adapter",
                "x",
            ]
        )
    assert [line.split(":")[0] for line in problems_of(exc)] == ["--port", "--l2-adapter", "--l2-adapter"]


def test_empty_shm_name_explains_why() -> None:
    with pytest.raises(ConfigError) as exc:
        parse([*REQUIRED, "--shm-name", ""])
    (line,) = problems_of(exc)
    assert line.startswith("--shm-name: got ''; must be a shared-memory name")
    assert "pickle" in line and "never unpickles" in line


def test_secret_is_never_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    bad = "sh0rt secret"
    code, out, err = check([*REQUIRED, "--http-auth-token", bad], capsys)
    assert code == 2 and bad not in err and "not shown" in err
    good = "s3cret-token-0123456789"
    code, out, err = check([*REQUIRED, "--http-auth-token", good, "--format", "json"], capsys)
    assert code == 0 and good not in out
    assert json.loads(out)["metrics"]["http"]["http_auth_token"] == "***"
    cfg = parse([*REQUIRED, "--http-auth-token", good])
    assert cfg.http.http_auth_token == good
    assert to_dict(cfg)["http"]["http_auth_token"] == good
    assert to_dict(cfg, effective=True)["http"]["http_auth_token"] == "***"


# ---------------------------------------------------------------------------------------------
# Cross-checks
# ---------------------------------------------------------------------------------------------

CROSS_ERRORS: list[tuple[list[str], str]] = [
    (
        ["--hash-algorithm", "builtin"],
        "--hash-algorithm: got builtin; Python's hash() differs between processes",
    ),
    (
        ["--engine-type", "blend", "--supported-transfer-mode", "engine_driven"],
        "--supported-transfer-mode: got engine_driven; --engine-type blend needs lmcache_driven or auto",
    ),
    (
        ["--engine-type", "blend_legacy", "--supported-transfer-mode", "engine_driven"],
        "--supported-transfer-mode: got engine_driven; --engine-type blend_legacy needs",
    ),
    (
        ["--worker-reap-timeout-seconds", "600", "--worker-registration-grace-seconds", "300"],
        "--worker-registration-grace-seconds: got 300; must be >= --worker-reap-timeout-seconds (600)",
    ),
    (["--transport", "grpc"], "--transport: got grpc; the gRPC transport is not available in this build yet"),
    (["--enable-tracing"], "--enable-tracing: needs --otlp-endpoint"),
    (["--port", "8080"], "--http-port: got 8080; must differ from --port"),
    (["--port", "7000", "--http-port", "7000"], "--http-port: got 7000; must differ from --port"),
]


@pytest.mark.parametrize(("argv", "start"), CROSS_ERRORS)
def test_cross_check_errors(argv: list[str], start: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        parse([*REQUIRED, *argv])
    (line,) = problems_of(exc)
    assert line.startswith(start), line
    code, out, err = check([*REQUIRED, *argv], capsys)
    assert code == 2 and out == "" and err == f"lmcache: error: {line}\n"


def test_gds_and_devdax_exclude_each_other(tmp_path: Path) -> None:
    dax = tmp_path / "dax"
    dax.write_bytes(b"")
    with pytest.raises(ConfigError) as exc:
        parse([*REQUIRED, "--l1-devdax-path", str(dax), "--gds-l1-path", str(tmp_path)])
    (line,) = problems_of(exc)
    assert line.startswith("--gds-l1-path: cannot be combined with --l1-devdax-path")


@pytest.mark.parametrize(
    "argv",
    [
        ["--hash-algorithm", "builtin", "--allow-process-local-hash"],
        ["--hash-algorithm", "sha256_cbor"],
        ["--engine-type", "blend", "--supported-transfer-mode", "lmcache_driven"],
        ["--engine-type", "blend"],
        ["--worker-reap-timeout-seconds", "600", "--worker-registration-grace-seconds", "600"],
        ["--worker-reap-timeout-seconds", "0", "--worker-registration-grace-seconds", "0"],
        ["--enable-tracing", "--otlp-endpoint", "localhost:4317"],
        ["--port", "0", "--http-port", "0"],
        ["--port", "9090"],  # the Prometheus port is not bound by `lmcache server`
    ],
)
def test_cross_checks_accept(argv: list[str]) -> None:
    parse([*REQUIRED, *argv])


def test_cross_checks_wait_for_valid_values() -> None:
    """A bad value is reported alone; the checks that combine values run once each one is valid."""
    with pytest.raises(ConfigError) as exc:
        parse([*REQUIRED, "--hash-algorithm", "builtin", "--chunk-size", "0"])
    assert [line.split(":")[0] for line in problems_of(exc)] == ["--chunk-size"]


# ---------------------------------------------------------------------------------------------
# inactive_features
# ---------------------------------------------------------------------------------------------

INACTIVE: list[tuple[list[str], list[str]]] = [
    (["--gds-l1-path", "{tmp}"], [f"--gds-l1-path: {GDS}"]),
    (["--no-gds-l1-use-direct-io"], [f"--gds-l1-use-direct-io: {GDS}"]),
    (
        ["--engine-type", "blend", "--enable-segmented-prefix"],
        [f"--engine-type: {BLEND}", f"--enable-segmented-prefix: {BLEND}"],
    ),
    (
        ["--runtime-plugin-locations", "{tmp}", "--runtime-plugin-config", '{"a": 1}'],
        [f"--runtime-plugin-locations: {PLUGINS}", f"--runtime-plugin-config: {PLUGINS}"],
    ),
    (
        ["--run-script-api-enabled", "--script-allowed-imports", "numpy"],
        [f"--script-allowed-imports: {RUN_SCRIPT}", f"--run-script-api-enabled: {RUN_SCRIPT}"],
    ),
    (
        [
            "--l2-prefetch-policy",
            "retain",
            "--l2-prefetch-max-in-flight",
            "16",
            "--l2-store-policy",
            "skip_l1",
        ],
        [
            f"--l2-store-policy: {NO_L2}",
            f"--l2-prefetch-policy: {NO_L2}",
            f"--l2-prefetch-max-in-flight: {NO_L2}",
        ],
    ),
    (["--prometheus-port", "9191"], [f"--prometheus-port: {PROMETHEUS}"]),
    (
        ["--allow-process-local-hash"],
        ["--allow-process-local-hash: no effect unless --hash-algorithm is builtin"],
    ),
    (
        ["--supported-transfer-mode", "lmcache_driven", "--shm-name", "pool"],
        ["--shm-name: no effect with --supported-transfer-mode lmcache_driven (no engine_driven path)"],
    ),
    (
        ["--disable-observability", "--disable-metrics", "--event-bus-queue-size", "5"],
        [
            "--disable-metrics: no effect with --disable-observability",
            "--event-bus-queue-size: no effect with --disable-observability",
        ],
    ),
    (
        ["--disable-metrics", "--metrics-sample-rate", "0.5"],
        ["--metrics-sample-rate: no effect with --disable-metrics"],
    ),
    (
        ["--disable-logging", "--lookup-hash-log-dir", "{tmp}"],
        ["--lookup-hash-log-dir: no effect with --disable-logging"],
    ),
    (
        ["--lookup-hash-log-max-files", "5"],
        [
            "--lookup-hash-log-max-files: no effect while --lookup-hash-log-dir is empty "
            "(lookup hash logging is off)"
        ],
    ),
    # Set, and active: no line.
    (
        ["--l2-adapter", '{"type": "fs", "base_path": "/x"}', "--l2-adapter", '{"type": "mock"}'],
        [],
    ),
    (
        [
            "--l2-adapter",
            '{"type": "mock"}',
            "--l2-prefetch-policy",
            "retain",
            "--l2-store-policy",
            "skip_l1",
        ],
        [],
    ),
    (["--lookup-hash-log-dir", "{tmp}", "--lookup-hash-log-max-files", "5"], []),
    (["--hash-algorithm", "builtin", "--allow-process-local-hash", "--shm-name", "pool"], []),
    (["--http-auth-token", "0123456789abcdef", "--max-workers", "3", "--instance-id", str(uuid.uuid4())], []),
]


@pytest.mark.parametrize(("argv", "expected"), INACTIVE)
def test_inactive_features(argv: list[str], expected: list[str], tmp_path: Path) -> None:
    cfg = parse([*REQUIRED, *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    assert inactive_features(cfg) == expected


def test_inactive_features_are_warnings_of_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check([*REQUIRED, "--gds-l1-path", str(tmp_path), "-q"], capsys)
    assert (code, out) == (0, "")
    assert err == f"lmcache: warning: --gds-l1-path: {GDS}\n"


def test_landed_features_give_no_effect_lines_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a feature leaves PENDING_FEATURES, only the options that another one turns off are reported."""
    monkeypatch.setattr(inactive, "PENDING_FEATURES", ())
    cfg = parse([*REQUIRED, "--enable-segmented-prefix", "--runtime-plugin-config", '{"a": 1}'])
    assert inactive_features(cfg) == [
        "--runtime-plugin-config: no effect without --runtime-plugin-locations",
        "--enable-segmented-prefix: no effect unless --engine-type is blend or blend_legacy",
    ]
    cfg = parse([*REQUIRED, "--script-allowed-imports", "numpy", "--no-gds-l1-use-direct-io"])
    assert inactive_features(cfg) == [
        "--script-allowed-imports: no effect without --run-script-api-enabled",
        "--gds-l1-use-direct-io: no effect without --gds-l1-path",
    ]
    cfg = parse(
        [*REQUIRED, "--engine-type", "blend", "--enable-segmented-prefix", "--l2-store-policy", "skip_l1"]
    )
    assert inactive_features(cfg) == [f"--l2-store-policy: {NO_L2}"]
    cfg = parse([*REQUIRED, "--l2-store-policy", "skip_l1", "--l2-adapter", '{"type": "mock"}'])
    assert inactive_features(cfg) == []


def test_pending_features_name_real_options() -> None:
    names = {o.name for o in all_options(ServerConfig)}
    seen: set[str] = set()
    for feature in inactive.PENDING_FEATURES:
        assert set(feature.options) <= names, feature.name
        assert not seen & set(feature.options)
        seen |= set(feature.options)
        assert "not available in this build yet" in feature.absent
    assert set(inactive._RULES) <= names


# ---------------------------------------------------------------------------------------------
# Declarations, argparse, help, docs, to_dict / from_dict
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", NEW_CLASSES)
def test_every_field_is_a_documented_option(cls: type) -> None:
    for opt in options(cls):
        assert opt.flag == "--" + opt.name.replace("_", "-")
        assert len(opt.spec.help) > 20, opt.flag
        assert opt.spec.help.strip().endswith("."), opt.flag


def test_argparse_holds_no_defaults_and_help_shows_them() -> None:
    parser = make_parser()
    ns = parser.parse_args([])
    assert all(getattr(ns, o.name) is None for o in all_options(ServerConfig))
    by_dest = {a.dest: a for a in parser._actions}
    for opt in all_options(ServerConfig):
        text = by_dest[opt.name].help
        assert text is not None
        assert ("Required." if opt.required else f"Default: {format_default(opt)}.") in text, opt.flag
    rendered = parser.format_help()
    for title in ("MP Server:", "HTTP Frontend:", "GDS L1 Tier:", "L2 Policies and Adapters:",
                  "Observability:", "Lookup Hash Logging:"):  # fmt: skip
        assert title in rendered
    assert "Default: a fresh UUID4 minted at startup." in rendered
    assert "Default: inherits --max-workers." in rendered


def test_docs_list_every_flag() -> None:
    text = DOC.read_text()
    for opt in all_options(ServerConfig):
        assert f"`{opt.flag}`" in text, opt.flag
    assert "*Not active in this build yet; when set, L1 stays in DRAM.*" in text


def test_to_dict_shape_and_round_trip(tmp_path: Path) -> None:
    cfg = parse(
        [
            *REQUIRED, "--max-workers", "3", "--max-cpu-workers", "2",
            "--script-allowed-imports", "numpy", "--gds-l1-path", str(tmp_path),
            "--l2-adapter", '{"type": "fs", "base_path": "/x"}', "--http-auth-token", "0123456789abcdef",
            "--otlp-endpoint", "localhost:4317", "--lookup-hash-log-dir", str(tmp_path),
        ]
    )  # fmt: skip
    d = to_dict(cfg)
    assert list(d) == ["mp", "http", "storage_manager", "observability"]
    assert list(d["storage_manager"]) == ["l1", "gds", "eviction", "l2", "notifier"]
    assert "lookup_hash_log" in d["observability"]
    assert from_dict(ServerConfig, d) == cfg
    assert from_dict(ServerConfig, json.loads(json.dumps(d))) == cfg
    flat_names = [o.name for o in all_options(ServerConfig)]
    assert sorted(flat(cfg)) == sorted(flat_names)


def test_from_dict_takes_decoded_json_objects() -> None:
    cfg = from_dict(
        ServerConfig,
        {
            "mp": {"runtime_plugin_config": {"k": [1, 2]}, "max_workers": "2"},
            "storage_manager": {
                "l1": {"l1_size_gb": 1},
                "eviction": {"eviction_policy": "LRU"},
                "l2": {"l2_adapter": [{"type": "fs", "base_path": "/x"}, '{"type": "mock"}']},
            },
        },
    )
    assert cfg.mp.runtime_plugin_extra_config == {"k": [1, 2]}
    assert [a["type"] for a in cfg.storage_manager.l2.adapters] == ["fs", "mock"]
    with pytest.raises(ConfigError) as exc:
        from_dict(
            ServerConfig,
            {
                "storage_manager": {
                    "l1": {"l1_size_gb": 1},
                    "eviction": {"eviction_policy": "LRU"},
                    "l2": {"l2_adapter": "fs"},
                }
            },
        )
    assert problems_of(exc)[0].startswith("--l2-adapter: got fs; must be a JSON object with")
    with pytest.raises(ConfigError, match=r"^--l2-adapter: got \{'type': 'nope'\}; must be a JSON object"):
        from_dict(
            ServerConfig,
            {
                "storage_manager": {
                    "l1": {"l1_size_gb": 1},
                    "eviction": {"eviction_policy": "LRU"},
                    "l2": {"l2_adapter": [{"type": "nope"}]},
                }
            },
        )


def test_validate_instances_made_in_code() -> None:
    storage = StorageConfig(l1=l1.L1Config(l1_size_gb=1.0), eviction=l1.EvictionConfig(eviction_policy="LRU"))
    validate(ServerConfig(storage_manager=storage))
    bad_cases: list[tuple[Any, str]] = [
        (MPServerConfig(instance_id="nope"), "--instance-id"),
        (MPServerConfig(script_allowed_imports=["numpy"]), "--script-allowed-imports"),  # type: ignore[arg-type]
        (MPServerConfig(script_allowed_imports=("numpy", "no pe")), "--script-allowed-imports"),
        (MPServerConfig(runtime_plugin_config="[]"), "--runtime-plugin-config"),
        (MPServerConfig(max_gpu_workers=0), "--max-gpu-workers"),
    ]
    for mp, flag in bad_cases:
        with pytest.raises(ConfigError) as exc:
            validate(ServerConfig(mp=mp, storage_manager=storage))
        assert problems_of(exc)[0].startswith(f"{flag}: got "), flag


def test_server_config_is_frozen_and_hashable() -> None:
    cfg = parse([*REQUIRED, "--l2-adapter", '{"type": "fs"}', "--script-allowed-imports", "numpy"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mp.port = 1  # type: ignore[misc]
    assert hash(cfg) == hash(cfg)


# ---------------------------------------------------------------------------------------------
# The framework's new kinds of option, on made-up classes
# ---------------------------------------------------------------------------------------------


def test_new_option_declaration_errors() -> None:
    with pytest.raises(TypeError, match="default_text"):
        option("--x", "X.", default_factory=lambda: 1)
    with pytest.raises(TypeError, match="exactly one"):
        option("--x", "X.", 1, default_factory=lambda: 1, default_text="one")
    with pytest.raises(TypeError, match="defaults to None"):
        option("--x", "X.", 1, inherits="y")
    with pytest.raises(TypeError, match="tuple"):
        option("--x", "X.", "a", sequence="words")
    with pytest.raises(TypeError, match="sequence"):
        option("--x", "X.", (), sequence="many")  # type: ignore[arg-type]

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class BadInherit:
        a: int = option("--a", "A.", 1)
        b: float | None = option("--b", "B.", None, inherits="a")

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class MissingSource:
        b: int | None = option("--b", "B.", None, inherits="a")

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class JsonInt:
        a: int = option("--a", "A.", 1, json_object=True)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class SequenceNotTuple:
        a: str = option("--a", "A.", (), sequence="repeat")

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class BadFactory:
        a: int = option(
            "--a", "A.", default_factory=lambda: 0, default_text="zero", validate=fields.number_range(ge=1)
        )

    for cls in (BadInherit, MissingSource, JsonInt, SequenceNotTuple, BadFactory):
        with pytest.raises(TypeError):
            fields.options(cls)
