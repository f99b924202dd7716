"""lmcache ping / describe / kvcache / quota against a real HTTP server (uvicorn on 127.0.0.1,
port 0) serving create_app(FakeFacade): terminal and JSON output, exit statuses, errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_facade import GIB, FakeFacade
from live_http import live_server
from lmcache.cli.main import main
from lmcache.client.http import AUTH_TOKEN_ENV, AdminClient, escape_salt, normalize_url
from lmcache.errors import UnavailableError
from lmcache.http import HttpServerHandle

TOKEN = "cli-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[HttpServerHandle, FakeFacade]]:
    with live_server() as pair:
        yield pair


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LMCACHE_DEBUG", AUTH_TOKEN_ENV, "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(server: tuple[HttpServerHandle, FakeFacade]) -> FakeFacade:
    server[1].reset()
    return server[1]


@pytest.fixture
def url(server: tuple[HttpServerHandle, FakeFacade], fake: FakeFacade) -> str:
    return server[0].url


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A port that refuses connections (bound, never listening, so nobody else gets it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lmcache: error: "), err
    assert "Traceback" not in err
    return lines[0]


def table(out: str) -> dict[str, str]:
    """Label -> value of a terminal table (all lines the same width, framed by '=')."""
    lines = out.splitlines()
    assert lines[0].startswith("=") and lines[-1] == "=" * len(lines[0])
    assert len({len(line) for line in lines}) == 1, out
    rows: dict[str, str] = {}
    for line in lines[1:-1]:
        if line.startswith("-"):
            continue
        label, _, value = line.partition(":")
        rows.setdefault(label, value.strip())
    return rows


# ---------------------------------------------------------------------------------------------
# ping
# ---------------------------------------------------------------------------------------------


def test_ping_kvcache_terminal(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["ping", "kvcache", "--url", url], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "======= Ping KV Cache ========"
    assert lines[1] == "Status:" + "OK".rjust(30 - len("Status:"))
    assert lines[2].startswith("Round trip time (ms):") and len(lines[2]) == 30
    float(lines[2].split(":")[1])
    assert lines[3] == "=" * 30
    assert ("health", ()) in fake.calls


def test_ping_kvcache_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["ping", "kvcache", "--url", url, "--format", "json"], capsys)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["title"] == "Ping KV Cache"
    assert set(data["metrics"]) == {"status", "round_trip_time_ms"}
    assert data["metrics"]["status"] == "OK"
    assert isinstance(data["metrics"]["round_trip_time_ms"], float)


def test_ping_bare_host_port_and_quiet(
    server: tuple[HttpServerHandle, FakeFacade], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["ping", "kvcache", "--url", f"127.0.0.1:{server[0].port}", "-q"], capsys)
    assert (code, out, err) == (0, "", "")


def test_ping_unreachable(dead_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["ping", "kvcache", "--url", dead_url], capsys)
    assert code == 1
    assert table(out)["Status"] == "FAIL"
    line = one_error_line(err)
    assert f"cannot reach {dead_url}/healthcheck" in line and "is the server running?" in line


def test_ping_unreachable_json_and_quiet(dead_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["ping", "kvcache", "--url", dead_url, "--format", "json"], capsys)
    assert code == 1 and json.loads(out)["metrics"]["status"] == "FAIL"
    one_error_line(err)
    code, out, err = run(["ping", "kvcache", "--url", dead_url, "-q"], capsys)
    assert (code, out) == (1, "")
    one_error_line(err)


def test_ping_unhealthy(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    fake.healthy = False
    fake.failing = {"l1_eviction": "thread died"}
    code, out, err = run(["ping", "kvcache", "--url", url], capsys)
    assert code == 1
    assert table(out)["Status"] == "FAIL"
    line = one_error_line(err)
    assert "HTTP 503" in line and "l1_eviction: thread died" in line


def test_ping_engine_uses_health(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Our server has no /health: the engine ping reaches it and reports the 404.
    code, out, err = run(["ping", "engine", "--url", url], capsys)
    assert code == 1
    assert out.splitlines()[0] == "======== Ping Engine ========="
    assert "/health: HTTP 404" in one_error_line(err)


def test_ping_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        code, _, err = run(["ping", "kvcache", "--url", url, "--timeout", "0.2"], capsys)
    assert code == 1
    assert "no answer within 0.2 s" in one_error_line(err)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ping", "kvcache", "--url", "ftp://x"], "not an http(s) URL"),
        (["ping", "kvcache", "--url", "http://h:99999"], "bad port"),
        (["ping", "kvcache", "--timeout", "0"], "--timeout"),
        (["ping", "kvcache", "--timeout", "nan"], "--timeout"),
        (["ping", "nothing"], "invalid choice"),
        (["quota", "set", "alice", "--limit-gb", "-1"], "--limit-gb"),
        (["quota", "set", "alice", "--limit-gb", "inf"], "--limit-gb"),
        (["quota", "set", "alice"], "--limit-gb"),
        (["kvcache", "clear", "--tier", "l3"], "--tier"),
    ],
)
def test_usage_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert needle in one_error_line(err)


# ---------------------------------------------------------------------------------------------
# describe
# ---------------------------------------------------------------------------------------------


def test_describe_terminal(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["describe", "kvcache", "--url", url], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "============ LMCache KV Cache Service ============"
    rows = table(out)
    assert rows["Health"] == "OK"
    assert rows["URL"] == url
    assert rows["Engine type"] == "MPCacheServer"
    assert rows["Chunk size"] == "256"
    assert rows["L1 capacity (GB)"] == "1.00"
    assert rows["L1 used (GB)"] == "0.72 (71.9%)"
    assert rows["Eviction policy"] == "LRU"
    assert rows["Cached objects"] == "1024"
    assert rows["Active sessions"] == "3"
    assert any(
        line.startswith("-") and " Model: meta-llama/Llama-3.1-70B-Instruct " in line for line in lines
    )
    assert rows["Model"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert rows["World size"] == "2"
    assert rows["GPU IDs"] == "0, 1"
    assert rows["Attention backend"] == "vLLM non-MLA flash attention"
    assert rows["GPU KV shape"] == "NL x [2, NB, BS, NH, HS]"
    assert rows["GPU KV tensor shape"] == "80 x [2, 2048, 128, 8, 128]"
    assert rows["Num layers"] == "80" and rows["Block size"] == "128" and rows["Num blocks"] == "2048"
    assert rows["Hidden dim size"] == "1024" and rows["Dtype"] == "torch.float16" and rows["MLA"] == "False"
    assert any(" L2: NixlStoreL2Adapter " in line for line in lines)
    assert rows["Type"] == "NixlStoreL2Adapter"
    assert rows["Backend"] == "nixl_rdma"
    assert rows["Stored objects"] == "512"
    assert rows["Pool used"] == "480 / 512 (93.8%)"


def test_describe_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["describe", "kvcache", "--url", url, "--format", "json"], capsys)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["title"] == "LMCache KV Cache Service"
    m = data["metrics"]
    assert {k: m[k] for k in list(m)[:9]} == {
        "health": "OK",
        "url": url,
        "engine_type": "MPCacheServer",
        "chunk_size": 256,
        "l1_capacity_gb": 1.0,
        "l1_used_gb": "0.72 (71.9%)",
        "eviction_policy": "LRU",
        "cached_objects": 1024,
        "active_sessions": 3,
    }
    assert m["models"] == [
        {
            "model": "meta-llama/Llama-3.1-70B-Instruct",
            "world_size": 2,
            "gpu_ids": "0, 1",
            "attention_backend": "vLLM non-MLA flash attention",
            "gpu_kv_shape": "NL x [2, NB, BS, NH, HS]",
            "gpu_kv_concrete_shape": "80 x [2, 2048, 128, 8, 128]",
            "num_layers": 80,
            "block_size": 128,
            "hidden_dim_size": 1024,
            "dtype": "torch.float16",
            "is_mla": False,
            "num_blocks": 2048,
        }
    ]
    assert m["l2_adapters"] == [
        {
            "type": "NixlStoreL2Adapter",
            "health": "OK",
            "backend": "nixl_rdma",
            "stored_object_count": 512,
            "pool_used": "480 / 512 (93.8%)",
        }
    ]


def test_describe_output_file(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "status.json"
    code, out, err = run(
        ["describe", "kvcache", "--url", url, "--format", "json", "--output", str(path), "-q"], capsys
    )
    assert (code, out, err) == (0, "", "")
    assert json.loads(path.read_text())["metrics"]["health"] == "OK"


def test_describe_minimal_and_unhealthy_server(
    url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.status_doc = {"engine_type": "MPCacheServer"}
    fake.healthy = False
    fake.failing = {"l2.fs": "timeout"}
    code, out, err = run(["describe", "kvcache", "--url", url], capsys)
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows["Health"] == "UNHEALTHY"
    assert rows["Failing"] == "l2.fs: timeout"
    for label in ("Chunk size", "L1 capacity (GB)", "L1 used (GB)", "Eviction policy", "Cached objects"):
        assert rows[label] == "N/A"
    assert "Model" not in rows and "Type" not in rows


def test_describe_unreachable(dead_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["describe", "kvcache", "--url", dead_url], capsys)
    assert (code, out) == (1, "")
    assert f"cannot reach {dead_url}/status" in one_error_line(err)


def test_describe_server_error(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail["status"] = UnavailableError("engine not initialized")
    code, out, err = run(["describe", "kvcache", "--url", url], capsys)
    assert (code, out) == (1, "")
    assert one_error_line(err).endswith(f"GET {url}/status: HTTP 503: engine not initialized")


# ---------------------------------------------------------------------------------------------
# kvcache clear
# ---------------------------------------------------------------------------------------------


def test_kvcache_clear_default_l1(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["kvcache", "clear", "--url", url], capsys)
    assert (code, err) == (0, "")
    assert fake.calls[-1] == ("clear", ("l1", False))
    rows = table(out)
    assert out.splitlines()[0].strip("= ") == "KV Cache Clear"
    assert rows["Status"] == "OK" and rows["Tier"] == "l1"
    assert rows["Objects"] == "1024"


def test_kvcache_clear_all_json(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["kvcache", "clear", "--url", url, "--tier", "all", "--force", "--format", "json"], capsys
    )
    assert (code, err) == (0, "")
    assert fake.calls[-1] == ("clear", ("all", True))
    assert json.loads(out) == {
        "title": "KV Cache Clear",
        "metrics": {
            "status": "OK",
            "tier": "all",
            "l1": {"objects": 1024, "bytes": int(0.72 * GIB)},
            "l2": {"objects": 512},
        },
    }


def test_kvcache_clear_l2_unsupported(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    fake.unclearable = {"l2"}
    code, out, err = run(["kvcache", "clear", "--url", url, "--tier", "l2"], capsys)
    assert (code, out) == (1, "")
    line = one_error_line(err)
    assert "HTTP 501" in line and "cannot clear tier 'l2'" in line


def test_kvcache_without_action(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["kvcache"], capsys)
    assert (code, out) == (2, "")
    assert "clear" in err


# ---------------------------------------------------------------------------------------------
# quota
# ---------------------------------------------------------------------------------------------


def test_quota_set_get_list_delete(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["quota", "set", "alice", "--limit-gb", "1.5", "--url", url], capsys)
    assert code == 0
    assert fake.quotas == {"alice": int(1.5 * GIB)}
    rows = table(out)
    assert out.splitlines()[0].strip("= ") == "Quota Set"
    assert rows == {"Cache salt": "alice", "Limit (GB)": "1.50", "Status": "ok", "Enforced": "False"}
    assert (
        err == "lmcache: warning: quotas are not enforced by this server: no tier uses the IsolatedLRU "
        "eviction policy (--eviction-policy IsolatedLRU)\n"
    )

    fake.policy = "IsolatedLRU"
    code, out, err = run(["quota", "get", "alice", "--url", url, "--format", "json"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "title": "Quota Info",
        "metrics": {
            "cache_salt": "alice",
            "limit_gb": 1.5,
            "current_usage_gb": 0.5,
            "exists": True,
            "enforced": True,
        },
    }

    code, out, err = run(["quota", "list", "--url", url, "--format", "json"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "title": "Quota List",
        "metrics": {
            "enforced": True,
            "quotas": [
                {"cache_salt": "_default", "limit_gb": 0.0, "current_usage_gb": 0.75},
                {"cache_salt": "alice", "limit_gb": 1.5, "current_usage_gb": 0.5},
            ],
        },
    }
    code, out, _ = run(["quota", "list", "--url", url], capsys)
    assert code == 0 and len(out.splitlines()[0]) == 55
    assert any(" Salt: alice " in line for line in out.splitlines())

    code, out, err = run(["quota", "delete", "alice", "--url", url], capsys)
    assert (code, err) == (0, "")
    assert table(out) == {"Cache salt": "alice", "Status": "removed"}
    code, out, _ = run(["quota", "delete", "alice", "--url", url], capsys)
    assert table(out)["Status"] == "not_found"


def test_quota_empty_list(url: str, fake: FakeFacade, capsys: pytest.CaptureFixture[str]) -> None:
    fake.usage = {}
    fake.policy = "IsolatedLRU"
    code, out, err = run(["quota", "list", "--url", url], capsys)
    assert (code, err) == (0, "")
    assert table(out)["Info"] == "No quotas configured"


@pytest.mark.parametrize("salt", ["", "_default"])
def test_quota_default_salt(
    url: str, fake: FakeFacade, salt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.policy = "IsolatedLRU"
    code, out, _ = run(["quota", "set", salt, "--limit-gb", "2", "--url", url], capsys)
    assert code == 0
    assert fake.quotas == {"": 2 * GIB}
    assert table(out)["Cache salt"] == "_default"


@pytest.mark.parametrize(
    ("salt", "needle"), [("bad@salt", "'@'"), ("a/b", "'/'"), ("x" * 129, "129 characters")]
)
def test_quota_invalid_salt(
    url: str, fake: FakeFacade, salt: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["quota", "set", salt, "--limit-gb", "1", "--url", url], capsys)
    assert (code, out) == (1, "")
    line = one_error_line(err)
    assert "HTTP 400" in line and needle in line
    assert fake.quotas == {}


def test_quota_unreachable(dead_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["quota", "list", "--url", dead_url], capsys)
    assert (code, out) == (1, "")
    assert "cannot reach" in one_error_line(err)


# ---------------------------------------------------------------------------------------------
# Authentication, and the client helper
# ---------------------------------------------------------------------------------------------


def test_auth_token_flag_and_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_server(auth_token=TOKEN) as (handle, _):
        code, out, err = run(["describe", "kvcache", "--url", handle.url], capsys)
        assert (code, out) == (1, "")
        line = one_error_line(err)
        assert "HTTP 401" in line and AUTH_TOKEN_ENV in line
        code, _, err = run(["describe", "kvcache", "--url", handle.url, "--auth-token", TOKEN], capsys)
        assert (code, err) == (0, "")
        monkeypatch.setenv(AUTH_TOKEN_ENV, TOKEN)
        code, _, err = run(["quota", "list", "--url", handle.url, "-q"], capsys)
        assert (code, err.startswith("lmcache: warning")) == (0, True)
        # ping's /healthcheck is open, with or without a token.
        monkeypatch.delenv(AUTH_TOKEN_ENV)
        assert run(["ping", "kvcache", "--url", handle.url, "-q"], capsys)[0] == 0


def test_admin_commands_are_registered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in ("ping", "describe", "kvcache", "quota"):
        assert name in out


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost:8080", "http://localhost:8080"),
        ("http://h:1/", "http://h:1"),
        ("https://h/prefix/", "https://h/prefix"),
        ("  127.0.0.1:9  ", "http://127.0.0.1:9"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["", "ftp://h", "http://", "http://h:notaport", "http://h/?q=1"])
def test_normalize_url_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(bad)


def test_escape_salt() -> None:
    assert escape_salt("") == "_default"
    assert escape_salt("a b/c@") == "a%20b%2Fc%40"


def test_client_request_roundtrip(url: str, fake: FakeFacade) -> None:
    client = AdminClient(url)
    answer: Any = client.request("PUT", "/quota/bob", {"limit_gb": 1})
    assert answer["status"] == "ok"
    assert client.request("GET", "/lmc_version") == "0.1.0"


def test_cli_stays_light() -> None:
    """The admin commands use urllib: importing the CLI loads no web framework."""
    code = (
        "import sys, lmcache.cli.main;"
        "names = ('fastapi', 'uvicorn', 'pydantic', 'starlette', 'lmcache.http');"
        "heavy = [m for m in names if m in sys.modules];"
        "sys.exit(', '.join(heavy) or None)"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(repo / "python")},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
