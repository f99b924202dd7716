"""``lmcache bench server`` / ``bench kvcache``: the shape-spec grammar, the fake worker's KV
memory, and whole runs against our server in-process (ZMQ + HTTP on free ports) and, marked
``e2e``, against a real LMCache 0.5.6 server (skipped where its venv is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmcache.bench import server_bench as sb
from lmcache.bench.kv_cache import SHM_DIR, KVCache
from lmcache.bench.kv_shape import (
    DEFAULT_SHAPE_SPEC,
    ShapeSpecError,
    format_kvcache_shape_spec,
    parse_kvcache_shape_spec,
    resolve_geometry,
)
from lmcache.cli.main import main
from lmcache.config import ServerConfig, add_arguments, from_namespace
from lmcache.server.app import Server

SPEC = "(2,64,16,2,32):float16:2"  # 2 chunks per request = 32 blocks, and 32 more to retrieve into
PROGRESS = re.compile(
    r"^\[seq=(\d+)\] (LOOKUP cold:  \d+/\d+ chunks hit \(\d+\.\d\d ms\)"
    r"|STORE:        \d+ chunks stored \(\d+\.\d\d ms\)"
    r"|LOOKUP warm:  \d+/\d+ chunks hit \(\d+\.\d\d ms\)"
    r"|RETRIEVE:     \d+ chunks retrieved \(\d+\.\d\d ms\)"
    r"|CHECKSUM MATCH OK)$"
)
PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"


def _own_segments() -> set[str]:
    return {n for n in os.listdir(SHM_DIR) if n.startswith(f"lmcache_kv_{os.getpid()}_")}


# ----------------------------------------------------------------------------- shape spec


def test_default_spec() -> None:
    (g,) = parse_kvcache_shape_spec(DEFAULT_SHAPE_SPEC)
    assert (g.kv_size, g.num_blocks, g.block_size, g.num_heads, g.head_size) == (2, 1024, 16, 8, 128)
    assert (g.dtype, g.num_layers, g.layer_indices) == ("float16", 32, tuple(range(32)))
    assert g.layer_shape == (2, 1024, 16, 8, 128) and g.block_axis == 1
    assert format_kvcache_shape_spec([g]) == DEFAULT_SHAPE_SPEC


def test_multi_group_spec() -> None:
    spec = "(1,1024,16,1,128):float16:4;(2,1024,16,8,128):float16:28"
    mla, dense = parse_kvcache_shape_spec(spec)
    assert mla.is_mla and mla.layer_indices == (0, 1, 2, 3)
    assert mla.layer_shape == (1024, 16, 128) and mla.block_axis == 0
    assert not dense.is_mla and dense.layer_indices == tuple(range(4, 32))
    assert format_kvcache_shape_spec([mla, dense]) == spec


def test_spec_spelling_is_lenient_where_0_5_6_is() -> None:
    groups = parse_kvcache_shape_spec(" ( 2, 8 ,16,2,32 ):BFloat16: 3 ; ")
    assert format_kvcache_shape_spec(groups) == "(2,8,16,2,32):bfloat16:3"


def test_spec_zero_nb_bs_take_the_flags() -> None:
    groups = resolve_geometry(parse_kvcache_shape_spec("(2,0,0,2,32):float16:2"), 96, 32)
    assert format_kvcache_shape_spec(groups) == "(2,96,32,2,32):float16:2"
    groups = resolve_geometry(parse_kvcache_shape_spec("(2,64,16,2,32):float16:2"), 96, 32)
    assert format_kvcache_shape_spec(groups) == "(2,64,16,2,32):float16:2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "cannot be empty"),
        (" ; ", "No valid layer groups"),
        ("2,1024,16,8,128:float16:32", "Invalid group spec format"),
        ("(2,1024,16,8,128):float16", "Invalid group spec format"),
        ("(2,1024,16,8,128):float16:32:1", "Invalid group spec format"),
        ("(2,1024,16,8,128):float64:32", "Unrecognized dtype 'float64'"),
        ("(2,1024,x,8,128):float16:32", "Invalid number"),
        ("(2,1024,16,8,128):float16:many", "Invalid number"),
        ("(2,1024,16,8):float16:32", "5-tuple"),
        ("(3,1024,16,8,128):float16:32", "kv_size must be 2"),
        ("(2,-1,16,8,128):float16:32", "NB and BS must be positive"),
        ("(2,1024,16,0,128):float16:32", "NH and HS must be positive"),
        ("(2,1024,16,8,128):float16:0", "Layer count"),
        ("(2,1024,16,8,128):float16:4;(2,512,16,8,128):float16:4", "must share NB and BS"),
    ],
)
def test_spec_errors_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(ShapeSpecError, match=re.escape(message)) as info:
        parse_kvcache_shape_spec(spec)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- KV memory


def test_kv_data_is_deterministic_and_checksums_follow_0_5_6() -> None:
    (g,) = parse_kvcache_shape_spec("(2,16,4,2,8):bfloat16:2")
    kv = KVCache([g], shared=True)
    try:
        assert len(_own_segments()) == 2
        kv.fill(7, 1, 0, 2)
        kv.fill(7, 1, 8, 2)  # same chunk elsewhere: same bytes
        np.testing.assert_array_equal(kv.layers[0][:, 0:2], kv.layers[0][:, 8:10])
        kv.fill(8, 1, 4, 2)
        assert not np.array_equal(kv.layers[1][:, 0:2], kv.layers[1][:, 4:6])
        # 0.5.6: per chunk, every layer's rows gathered on the block axis, bf16 widened to fp32.
        md5 = hashlib.md5()
        for layer in kv.layers:
            md5.update((layer[:, 8:10].astype(np.uint32) << 16).tobytes())
        assert kv.checksums(8, 1, 2) == [md5.hexdigest()]
        assert kv.checksums(0, 1, 2) == kv.checksums(8, 1, 2) != kv.checksums(4, 1, 2)
        # engine_driven objects: gather then scatter elsewhere gives the same blocks.
        obj = np.zeros(kv.object_shape(8), dtype=np.uint16)
        kv.gather(0, 2, obj)
        assert obj[1, 1, 5, 3] == kv.layers[1][1, 1, 1, 0, 3]  # V, layer 1, token 5 = block 1 token 1
        kv.scatter(12, 2, obj)
        assert kv.checksums(12, 1, 2) == kv.checksums(0, 1, 2)
        kv.unlink()
        assert not _own_segments()
    finally:
        kv.close()
    assert not _own_segments()


def test_latency_stats_are_nearest_rank() -> None:
    stats = sb.LatencyStats.of([1.823, 1.312, 1.647])
    assert stats is not None
    assert (stats.count, stats.min, stats.max, stats.p50, stats.p99) == (3, 1.312, 1.823, 1.647, 1.823)
    assert sb.LatencyStats.of([]) is None


# ----------------------------------------------------------------------------- against our server


def _config() -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServerConfig)
    argv = [
        "--host", "127.0.0.1", "--port", "0", "--http-host", "127.0.0.1", "--http-port", "0",
        "--l1-size-gb", "0.0625", "--eviction-policy", "LRU",
    ]  # fmt: skip
    return from_namespace(ServerConfig, parser.parse_args(argv))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(_config())
    srv.startup()
    try:
        yield srv
    finally:
        srv.shutdown()


@pytest.fixture(autouse=True)
def no_leaked_segments() -> Iterator[None]:
    before = _own_segments()
    yield
    assert _own_segments() == before


def _args(srv: Server, *extra: str, start: int = 0, count: int = 3) -> list[str]:
    return [
        "bench", "server", "--mode", "cpu",
        "--rpc-url", f"tcp://127.0.0.1:{srv.zmq_port}", "--url", f"http://127.0.0.1:{srv.http_port}",
        "--kvcache-shape-spec", SPEC, "--start", str(start), "--end", str(start + count),
        "--interval", "0", *extra,
    ]  # fmt: skip


def _served_modes(srv: Server) -> list[str]:
    from lmcache.client.mp import MPClient

    with MPClient(f"tcp://127.0.0.1:{srv.zmq_port}", timeout=5) as c:
        return list(c.hello().transfer_modes)


def test_terminal_run(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(server, "--transfer-mode", "lmcache_driven", start=1000)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"Connecting to LMCache MP Server at tcp://127.0.0.1:{server.zmq_port} (mode=cpu) ..."
    assert lines[1] == "Server chunk_size = 256"
    assert lines[2] == f"Resolved KV shape spec: {SPEC}"
    seq_lines = [line for line in lines if line.startswith("[seq=")]
    assert len(seq_lines) == 15 and all(PROGRESS.match(line) for line in seq_lines), seq_lines
    assert seq_lines[0].startswith("[seq=1000] LOOKUP cold:  0/2 chunks hit (")
    assert seq_lines[4] == "[seq=1000] CHECKSUM MATCH OK"
    for section in ("Configuration", "Results", "Cold Lookup (ms)", "Cold Store (ms)", "Warm Lookup (ms)"):
        assert re.search(rf"^-+ {re.escape(section)} -+$", out, re.M), section
    assert re.search(r"^=+ Server Bench Result =+$", out, re.M)
    assert re.search(r"^Pass rate \(%\): +100\.0$", out, re.M)
    assert re.search(r"^Checksum FAIL: +0$", out, re.M)
    assert re.search(r"^Server checksums: +verified$", out, re.M)
    assert re.search(r"^p99: +\d+\.\d{3}$", out, re.M)
    st = server.facade.status()
    assert st["storage_manager"]["l1_manager"]["read_locked_count"] == 0
    assert st["active_sessions"] == 0 and st["shm_mappings"]["live"] == 0


def test_json_run_and_cold_hits(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_args(server, start=2000), "--format", "json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout holds the JSON document alone
    assert doc["title"] == "Server Bench Result"
    m = doc["metrics"]
    assert m["config"]["mode"] == "cpu" and m["config"]["transfer_mode"] == "auto"
    # auto on cpu: what the server says it serves, engine_driven first (0.5.6's cpu default)
    served = _served_modes(server)
    resolved = "engine_driven" if "engine_driven" in served else "lmcache_driven"
    assert m["config"]["resolved_transfer_mode"] == resolved
    assert f"Transfer mode = {resolved} (auto: server serves {', '.join(served)})" in captured.err
    assert m["config"]["num_tokens"] == 512 and m["config"]["interval"] == 0.0
    assert m["results"] | {"server_checksums": None} == {
        "total_requests": 3, "checksum_ok": 3, "checksum_fail": 0, "pass_rate": 100.0, "cold_hits": 0,
        "warm_misses": 0, "errors": 0, "server_checksums": None, "interrupted": False,
    }  # fmt: skip
    for key in ("cold_lookup", "cold_store", "warm_lookup", "warm_retrieve"):
        assert m[key][f"{key}_count"] == 3
        assert set(m[key]) == {f"{key}_{s}" for s in ("count", "mean", "min", "max", "p50", "p99")}
    assert "[seq=2000] CHECKSUM MATCH OK" in captured.err
    # Again: everything is cached now. Cold hits are reported, not failed, and still verified.
    assert main([*_args(server, start=2000), "--format", "json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)["metrics"]["results"]
    assert results["cold_hits"] == 3 and results["checksum_ok"] == 3 and results["pass_rate"] == 100.0
    assert "cold_store" not in json.loads(captured.out)["metrics"]
    assert "skipped: all 2 chunks already cached (cold hit)" in captured.err


def test_quiet_and_output(server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([*_args(server, start=3000), "-q"]) == 0
    out = capsys.readouterr().out
    assert "[seq=" not in out and "Connecting" not in out
    assert out.startswith("=") and "Server Bench Result" in out  # the summary stays
    path = tmp_path / "summary.json"
    assert main([*_args(server, start=3100), "-q", "--format", "json", "--output", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert json.loads(path.read_text())["metrics"]["results"]["checksum_ok"] == 3
    path = tmp_path / "summary.txt"
    assert main([*_args(server, start=3200), "--output", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[seq=3200] CHECKSUM MATCH OK" in out and path.read_text() in out


def test_kvcache_alias_and_multi_group(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    spec = "(1,64,16,1,128):float16:2;(2,64,16,2,32):bfloat16:3"
    args = _args(server, "--format", "json", start=4000, count=2)
    args[1] = "kvcache"
    args[args.index(SPEC)] = spec
    assert main(args) == 0
    captured = capsys.readouterr()
    m = json.loads(captured.out)["metrics"]
    assert m["config"]["resolved_transfer_mode"] == "lmcache_driven"  # several groups
    assert m["results"]["checksum_ok"] == 2 and m["results"]["server_checksums"] == "verified"


def test_engine_driven_follows_what_the_server_serves(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_args(server, "--transfer-mode", "engine_driven", start=5000, count=2))
    captured = capsys.readouterr()
    if "engine_driven" in _served_modes(server):
        assert code == 0, captured.err
        assert "[seq=5001] CHECKSUM MATCH OK" in captured.out
    else:
        assert code == 1
        assert "[seq=" not in captured.out
        (line,) = captured.err.splitlines()
        assert line.startswith("lmcache: error: the server does not serve engine_driven")


def test_a_retrieve_that_writes_nothing_fails(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sb._LMCacheDriven, "retrieve", lambda self, key, first, n: None)
    assert main([*_args(server, start=6000, count=2), "--transfer-mode", "lmcache_driven"]) == 1
    out = capsys.readouterr().out
    assert "[seq=6000] CHECKSUM MISMATCH" in out
    assert re.search(r"^\[seq=6000\]   retrieved blocks: chunk 1 expected=\w{12} got=\w{12} FAIL$", out, re.M)
    assert re.search(r"^Checksum FAIL: +2$", out, re.M) and re.search(r"^Pass rate \(%\): +0\.0$", out, re.M)
    assert server.facade.status()["storage_manager"]["l1_manager"]["read_locked_count"] == 0


def test_an_engine_driven_retrieve_that_writes_nothing_fails(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if "engine_driven" not in _served_modes(server):
        pytest.skip("this server build does not serve engine_driven yet")
    monkeypatch.setattr(KVCache, "scatter", lambda self, first, bpc, src: None)
    assert main([*_args(server, start=6100, count=1), "--transfer-mode", "engine_driven"]) == 1
    out = capsys.readouterr().out
    assert "[seq=6100] CHECKSUM MISMATCH" in out
    assert re.search(r"^\[seq=6100\]   retrieved blocks: chunk 0 expected=\w{12} got=\w{12} FAIL$", out, re.M)
    st = server.facade.status()
    assert st["storage_manager"]["l1_manager"]["read_locked_count"] == 0 and st["active_sessions"] == 0


def test_gpu_mode_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "server", "--end", "1"]) == 1  # --mode gpu is the default
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "lmcache: error: --mode gpu: CUDA is not available in this build/machine; use --mode cpu\n"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kvcache-shape-spec", "(2,64,16,2):float16:2"], "--kvcache-shape-spec: Shape must be a 5-tuple"),
        (["--kvcache-shape-spec", "(2,40,16,2,32):float16:2"], "retrieving into other blocks needs twice"),
        (["--num-tokens", "100"], "has no full chunk"),
        (["--interval", "-1"], "argument --interval: must be a non-negative number"),
        (["--mode", "tpu"], "argument --mode: invalid choice"),
        (["--rpc-url", "grpc://127.0.0.1:1"], "gRPC is not available"),
        (["--start", "5", "--end", "4"], "--end (4) must not be below --start (5)"),
        (["--start", str(2**32 + 1), "--end", str(2**32 + 2)], "must stay below 2^32"),
    ],
)
def test_usage_errors_exit_2(
    server: Server, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main([*_args(server), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmcache: error: ") and err.count("\n") == 1 and message in err, err


def test_unreachable_server_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sb, "DEFAULT_RPC_TIMEOUT_S", 0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: nothing answers
        code = main(
            ["bench", "server", "--mode", "cpu", "--rpc-url", f"tcp://127.0.0.1:{port}", "--end", "1"]
        )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("lmcache: error: cannot reach the LMCache MP server at tcp://127.0.0.1:")
    assert err.count("\n") == 1


def test_ctrl_c_ends_cleanly_with_a_summary(server: Server) -> None:
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR)}
    args = _args(server, "--format", "json", "--interval", "0.05", start=7000)
    del args[args.index("--end") : args.index("--end") + 2]  # run forever
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmcache", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            if "CHECKSUM MATCH OK" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    results = json.loads(out)["metrics"]["results"]
    assert results["interrupted"] is True and results["total_requests"] >= 1
    assert results["checksum_fail"] == 0
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(f"lmcache_kv_{proc.pid}_")]


# ----------------------------------------------------------------------------- against LMCache 0.5.6


def _venv_056() -> Path | None:
    root = os.environ.get("LMCACHE_056_VENV", "/opt/lmcache-0.5.6-venv")
    exe = Path(root) / "bin" / "lmcache"
    return exe if exe.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_dead_segments() -> None:
    for name in os.listdir(SHM_DIR):
        m = re.match(r"lmcache_kv_(\d+)_\d+$", name)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, name))


@pytest.fixture(scope="module")
def server_056() -> Iterator[dict[str, Any]]:
    exe = _venv_056()
    if exe is None:
        pytest.skip("LMCache 0.5.6 is not installed (set LMCACHE_056_VENV to its venv)")
    zmq_port, http_port = _free_port(), _free_port()
    pool = f"lmcb{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # its own lmcache
    env.update(LMCACHE_TRACK_USAGE="false", DO_NOT_TRACK="1", LMCACHE_DISABLE_BANNER="1")
    log = tempfile.NamedTemporaryFile(prefix="lmcache056-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [
        str(exe), "server", "--host", "127.0.0.1", "--port", str(zmq_port),
        "--http-host", "127.0.0.1", "--http-port", str(http_port), "--l1-size-gb", "1",
        "--eviction-policy", "LRU", "--supported-transfer-mode", "auto", "--shm-name", pool,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tempfile.gettempdir(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"LMCache 0.5.6 exited with {proc.returncode}; log in {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthcheck", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"LMCache 0.5.6 did not become healthy; log in {log.name}")
            time.sleep(0.5)
        yield {"zmq": zmq_port, "http": http_port, "log": log.name}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, f"lmcache_l1_pool_{pool}"))
        _clean_dead_segments()
        if os.environ.get("LMCACHE_KEEP_056_LOG") is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(log.name)


def _run_056(
    srv: dict[str, Any], capsys: pytest.CaptureFixture[str], *extra: str, start: int
) -> dict[str, Any]:
    args = [
        "bench", "server", "--mode", "cpu", "--rpc-url", f"tcp://127.0.0.1:{srv['zmq']}",
        "--url", f"http://127.0.0.1:{srv['http']}", "--kvcache-shape-spec", SPEC,
        "--start", str(start), "--end", str(start + 3), "--interval", "0.2", "--format", "json", *extra,
    ]  # fmt: skip
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics: dict[str, Any] = json.loads(captured.out)["metrics"]
    return metrics


@pytest.mark.e2e
def test_against_lmcache_0_5_6(server_056: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    # auto: 0.5.6 does not answer hello -> its own CPU default, engine_driven (SHM pool).
    m = _run_056(server_056, capsys, start=0)
    assert m["config"]["resolved_transfer_mode"] == "engine_driven"
    assert m["results"]["checksum_ok"] == 3 and m["results"]["server_checksums"] == "n/a (engine_driven)"
    # lmcache_driven: SHM KV registration, server copies, server checksums cross-checked.
    m = _run_056(server_056, capsys, "--transfer-mode", "lmcache_driven", start=100)
    assert m["results"]["checksum_ok"] == 3 and m["results"]["server_checksums"] == "verified"
    # Again: cold hits on 0.5.6 are verified and their lookup locks released.
    m = _run_056(server_056, capsys, "--transfer-mode", "lmcache_driven", start=100)
    assert m["results"]["cold_hits"] == 3 and m["results"]["checksum_ok"] == 3
    with urllib.request.urlopen(f"http://127.0.0.1:{server_056['http']}/status", timeout=5) as r:
        status = json.loads(r.read())
    assert status["storage_manager"]["l1_manager"]["read_locked_count"] == 0
    assert not _own_segments()
