"""Drop-in compatibility with the real LMCache 0.5.6 clients, run against our server.

The real ``lmcache==0.5.6`` (its ``bench server``) and ``lmcache-cli==0.5.7rc3.dev0`` are
installed by these tests into their own venvs (``scripts/lmcache-venv.sh``; a few minutes the
first time, cached afterwards in ``$LMCACHE_COMPAT_DIR``, default ``~/.cache/lmcache-compat``).
Set ``LMCACHE_SKIP_COMPAT=1`` to skip them on a machine without network access to PyPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPAT_DIR = Path(os.environ.get("LMCACHE_COMPAT_DIR", Path.home() / ".cache" / "lmcache-compat"))
ENV = {
    **os.environ,
    "LMCACHE_TRACK_USAGE": "false",
    "DO_NOT_TRACK": "1",
    "LMCACHE_DISABLE_BANNER": "1",
    "PYTHONWARNINGS": "ignore",
}
# The real LMCache tools must import their own `lmcache`, never ours.
XENV = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("LMCACHE_SKIP_COMPAT") == "1", reason="LMCACHE_SKIP_COMPAT=1"),
]


def _venv_with(name: str, install: list[str]) -> Path:
    venv = COMPAT_DIR / name
    exe = venv / "bin" / "lmcache"
    if exe.exists():
        return venv
    COMPAT_DIR.mkdir(parents=True, exist_ok=True)
    if name == "lmcache-0.5.6":
        subprocess.run(["bash", str(ROOT / "scripts" / "lmcache-venv.sh"), str(venv)], check=True, env=XENV)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *install], check=True, env=XENV
        )
    return venv


@pytest.fixture(scope="module")
def lmcache056() -> Path:
    explicit = os.environ.get("LMCACHE_056_VENV")
    if explicit:
        return Path(explicit)
    if Path("/opt/lmcache-0.5.6-venv/bin/lmcache").exists():
        return Path("/opt/lmcache-0.5.6-venv")
    return _venv_with("lmcache-0.5.6", [])


@pytest.fixture(scope="module")
def lmcache_cli() -> Path:
    return _venv_with("lmcache-cli-0.5.7rc3", ["--pre", "lmcache-cli==0.5.7rc3.dev0"])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Our server as a subprocess (as users run it), on free ports; its log goes to a file."""
    log_path = tmp_path / "server.log"
    argv = [sys.executable, "-m", "lmcache", "server", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--http-host", "127.0.0.1", "--http-port", "0", "--l1-size-gb", "1", "--eviction-policy", "LRU"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stderr=log, stdout=subprocess.DEVNULL, env=ENV)
    zmq_port = http_port = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        text = log_path.read_text()
        if "lmcache server ready" in text:
            line = next(ln for ln in text.splitlines() if "lmcache server ready" in ln)
            zmq_port = int(line.split("ZMQ tcp://127.0.0.1:")[1].split(",")[0])
            http_port = int(line.split("HTTP http://127.0.0.1:")[1].split(",")[0])
            break
        time.sleep(0.1)
    try:
        assert zmq_port and http_port, "server did not start: " + log_path.read_text()[-2000:]
        yield zmq_port, http_port
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-2000:]  # graceful shutdown exits 0


def _bench(venv: Path, ports: tuple[int, int], tmp_path: Path, *extra: str) -> dict[str, object]:
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            str(venv / "bin" / "lmcache"),
            "bench",
            "server",
            "--mode",
            "cpu",
            "--rpc-url",
            f"tcp://127.0.0.1:{ports[0]}",
            "--url",
            f"http://127.0.0.1:{ports[1]}",
            "--start",
            "0",
            "--end",
            "20",
            "--interval",
            "0",
            "--format",
            "json",
            "--output",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=XENV,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result: dict[str, object] = json.loads(out.read_text())
    return result


def _results(result: dict[str, object]) -> dict[str, object]:
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    results = metrics["results"]
    assert isinstance(results, dict)
    return results


@pytest.mark.parametrize(
    "shape",
    [None, "(1,256,16,1,64):float16:2;(2,256,16,2,64):bfloat16:3"],
    ids=["default-shape", "multi-group"],
)
def test_real_bench_lmcache_driven_interval_0(
    lmcache056: Path, server: tuple[int, int], tmp_path: Path, shape: str | None
) -> None:
    extra = ["--transfer-mode", "lmcache_driven"]
    if shape:
        extra += ["--kvcache-shape-spec", shape]
    results = _results(_bench(lmcache056, server, tmp_path, *extra))
    assert results["total_requests"] == 20
    assert results["checksum_fail"] == 0
    assert results["pass_rate"] == 100.0


def test_real_bench_engine_driven_interval_0(
    lmcache056: Path, server: tuple[int, int], tmp_path: Path
) -> None:
    results = _results(_bench(lmcache056, server, tmp_path, "--transfer-mode", "engine_driven"))
    assert results["total_requests"] == 20
    assert results["checksum_fail"] == 0
    assert results["pass_rate"] == 100.0


def test_real_cli_against_our_server(lmcache_cli: Path, server: tuple[int, int]) -> None:
    url = f"http://127.0.0.1:{server[1]}"
    exe = str(lmcache_cli / "bin" / "lmcache")

    def run(*args: str) -> str:
        r = subprocess.run([exe, *args, "--url", url], capture_output=True, text=True, env=XENV, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    assert "OK" in run("ping", "kvcache")
    described = json.loads(run("describe", "kvcache", "--format", "json"))
    assert json.dumps(described).count("LRU") >= 1
    run("kvcache", "clear")
    run("quota", "set", "tenant-a", "--limit-gb", "0.5")
    assert "tenant-a" in run("quota", "get", "tenant-a")
    assert "tenant-a" in run("quota", "list")
    run("quota", "delete", "tenant-a")
