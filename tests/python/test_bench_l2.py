"""``lmcache bench l2``: whole runs in-process (fs_native, mock, fault_inject), output formats,
``--only``, verification failures, and exit statuses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmcache._native import keys
from lmcache.bench import l2_bench
from lmcache.cli.main import main

ROUND = re.compile(
    r"^  \[(Store|Lookup|Load)\] Round (\d+): +\d+\.\d\d ms, (success_keys|found|loaded)=(\d+)/(\d+)$"
)


def fs_spec(tmp_path: Path, **extra: Any) -> str:
    return json.dumps({"type": "fs_native", "base_path": str(tmp_path / "l2"), "num_workers": 2, **extra})


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["bench", "l2", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def small(*args: str) -> list[str]:
    return ["--num-keys", "4", "--in-flight", "2", "--data-size-kb", "16", *args]


def test_fs_native_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys,
        "--l2-adapter",
        fs_spec(tmp_path),
        *small("--rounds", "2", "--no-skip-verify", "--l1-align-bytes", "4096"),
    )
    assert rc == 0, err
    rounds = [m.groups() for line in out.splitlines() if (m := ROUND.match(line))]
    # 1 warmup + 2 measured rounds per operation, 8 keys per round
    assert [(op, n) for op, n, *_ in rounds] == [
        (op, str(i)) for op in ("Store", "Lookup", "Load") for i in (1, 2, 3)
    ]
    assert all(total == "8" for *_, total in rounds)
    assert all(count == "8" for op, _, _, count, _ in rounds if op != "Lookup")
    assert all(count == "0" for op, _, _, count, _ in rounds if op == "Lookup")  # default max hit rate 0
    assert "[Verify] All 8 keys data verified OK." in out
    assert "L2 Adapter Benchmark Result" in out
    for section in ("Configuration", "Store", "Lookup", "Load", "Verify"):
        assert re.search(rf"^-+ {section} -+$", out, re.M), section
    assert re.search(r"^Total success: +16$", out, re.M)
    files = list((tmp_path / "l2").glob("bench-model@0x00000000@0@*.data"))
    assert len(files) == 24 and all(f.stat().st_size == 16 * 1024 for f in files)


def test_fs_native_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys, "--l2-adapter", fs_spec(tmp_path), *small("--lookup-max-hit-rate", "0.5", "--format", "json")
    )
    assert rc == 0, err
    doc = json.loads(out)  # stdout is exactly one JSON document
    assert doc["title"] == "L2 Adapter Benchmark Result"
    m = doc["metrics"]
    assert (
        m["config"]["num_keys"] == 4
        and m["config"]["keys_per_round"] == 8
        and m["config"]["data_size_kb"] == 16
    )
    assert [m[f"op_{i}"]["operation"] for i in range(3)] == ["Store", "Lookup", "Load"]
    store, lookup, load = (m[f"op_{i}"] for i in range(3))
    assert store["total_success"] == 8 and load["total_success"] == 8
    assert store["throughput_avg_mbps"] > 0 and lookup["throughput_avg_mbps"] == 0
    assert (
        lookup["total_success"] == 4
        and lookup["expected_hit_count"] == 4
        and lookup["actual_hit_rate"] == 0.5
    )
    assert store["duration_min_ms"] <= store["duration_p50_ms"] <= store["duration_max_ms"]
    assert "[Store] Round 1" in err  # progress on stderr


def test_mock_adapter(capsys: pytest.CaptureFixture[str]) -> None:
    spec = json.dumps({"type": "mock", "max_size_gb": 1, "mock_bandwidth_gb": 0})
    rc, out, err = run(
        capsys, "--l2-adapter", spec, *small("--no-skip-verify", "--format", "json", "--rounds", "3")
    )
    assert rc == 0, err
    m = json.loads(out)["metrics"]
    assert m["op_0"]["rounds"] == 3 and m["op_2"]["total_success"] == 24
    assert m["verify"]["status"] == "OK"


def test_env_spec_and_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L2_ADAPTER_JSON", fs_spec(tmp_path))
    rc, out, _ = run(capsys, *small("--only", "store", "--format", "json"))
    assert rc == 0
    m = json.loads(out)["metrics"]
    assert m["op_0"]["operation"] == "Store" and "op_1" not in m
    assert "lookup_max_hit_rate" not in m["config"]
    # A new process-like run over the same directory hits the same keys.
    rc, out, _ = run(capsys, *small("--only", "lookup", "--lookup-max-hit-rate", "1"))
    assert rc == 0
    assert "found=8/8" in out and "Store" not in out.split("Result")[1]
    rc, out, _ = run(capsys, *small("--only", "load", "--no-skip-verify"))
    assert rc == 0, out
    assert "loaded=8/8" in out and "[Verify] All 8 keys data verified OK." in out
    # --l2-adapter wins over the env var; only the first spec is used.
    rc, out, _ = run(
        capsys, "--l2-adapter", '{"type":"mock"}', "--l2-adapter", "{bad", *small("--only", "store")
    )
    assert rc == 0 and "Adapter type:" in out and re.search(r"Adapter type: +mock$", out, re.M)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], None, "no L2 adapter spec"),
        (["--l2-adapter", "{not json"], None, "invalid JSON"),
        ([], "{not json", "invalid JSON"),
        (["--l2-adapter", '["fs"]'], None, '"type"'),
        (["--l2-adapter", '{"type":"nope"}'], None, "unknown L2 adapter type 'nope'"),
        (["--l2-adapter", '{"type":"fs_native"}'], None, "base_path"),
        (["--l2-adapter", '{"type":"mock","x":1}'], None, "'x'"),
        (["--l2-adapter", '{"type":"mock"}', "--lookup-max-hit-rate", "1.5"], None, "lookup-max-hit-rate"),
        (
            ["--l2-adapter", '{"type":"mock"}', "--data-size-kb", "1", "--l1-align-bytes", "3000"],
            None,
            "multiple",
        ),
        (["--l2-adapter", '{"type":"mock"}', "--num-keys", "0"], None, "num-keys"),
        (["--l2-adapter", '{"type":"mock"}', "--only", "delete"], None, "only"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str],
    env: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env is None:
        monkeypatch.delenv("L2_ADAPTER_JSON", raising=False)
    else:
        monkeypatch.setenv("L2_ADAPTER_JSON", env)
    rc, _, err = run(capsys, *args)
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_adapter_creation_failure_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = json.dumps({"type": "fs_native", "base_path": str(blocker / "sub")})
    rc, _, err = run(capsys, "--l2-adapter", spec, *small())
    assert rc == 1
    assert "Failed to create adapter" in err and "Traceback" not in err


def test_verify_fails_when_loads_are_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = json.dumps({"type": "fault_inject", "inner": json.loads(fs_spec(tmp_path)), "corrupt_rate": 1.0})
    rc, out, _ = run(capsys, "--l2-adapter", spec, *small("--no-skip-verify"))
    assert rc == 1
    assert "loaded=0/8" in out and "MISMATCH (not loaded)" in out and "8/8 keys have data mismatches!" in out
    assert re.search(r"^Round-trip verification: +FAILED$", out, re.M)
    # Without verification the same run succeeds (misses are reported, not failed).
    rc, out, _ = run(capsys, "--l2-adapter", spec.replace("l2", "l2b"), *small())
    assert rc == 0


def test_verify_fails_on_wrong_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Files that another writer (LMCache: no checksum) left under the benchmark's names, with the
    # right size and the wrong bytes: the store skips them (first writer wins), the load serves
    # them after a size check, and only the byte comparison can tell.
    base = tmp_path / "l2"
    base.mkdir()
    k = keys.make_keys([l2_bench.chunk_hash(i) for i in range(16)], l2_bench.MODEL_NAME, 0)
    good = l2_bench.expected_objects(0, 16, 16 * 1024)
    for i in range(16):
        data = good[i].copy()
        if i == 13:  # the last round is keys 8..15; one byte off in one of them
            data[5000] ^= 0xFF
        (base / f"{k.to_string(i)}.data").write_bytes(data.tobytes())
    rc, out, _ = run(
        capsys, "--l2-adapter", fs_spec(tmp_path), *small("--no-skip-verify", "--format", "json")
    )
    assert rc == 1
    assert json.loads(out)["metrics"]["verify"] == {"status": "FAILED", "mismatching_keys": 1}


def test_quiet_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "summary.json"
    rc, out, err = run(
        capsys, "--l2-adapter", fs_spec(tmp_path), *small("-q", "--format", "json", "--output", str(target))
    )
    assert rc == 0 and out == "" and err == ""
    assert json.loads(target.read_text())["metrics"]["op_2"]["total_success"] == 8
    text = tmp_path / "summary.txt"
    rc, out, _ = run(capsys, "--l2-adapter", fs_spec(tmp_path), *small("--output", str(text)))
    assert rc == 0
    assert text.read_text() in out and text.read_text().startswith("=")
    rc, _, err = run(
        capsys, "--l2-adapter", fs_spec(tmp_path), *small("-q", "--output", str(tmp_path / "no" / "x"))
    )
    assert rc == 1 and "--output" in err


def test_all_rounds_timed_out_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(l2_bench, "STORE_TIMEOUT_S", 0.05)
    spec = json.dumps({"type": "mock", "latency_ms": 400})
    rc, out, err = run(capsys, "--l2-adapter", spec, *small("--only", "store", "--warmup-rounds", "0"))
    assert rc == 1
    assert "TIMEOUT (0/2 tasks completed" in out and "timed out" in err


def test_buffers_are_aligned() -> None:
    for align in (1, 4096, 8192, 3 * 4096):
        buf = l2_bench._aligned(3 * 8192, align)
        assert buf.ctypes.data % max(align, 4096) == 0 and buf.nbytes == 3 * 8192 and not buf.any()


def test_chunk_hashes_are_unique_and_spread() -> None:
    hashes = [l2_bench.chunk_hash(i) for i in range(4096)]
    assert len(set(hashes)) == 4096 and all(len(h) == 16 for h in hashes)
    assert hashes[5][8:] == (5).to_bytes(8, "big")
    assert len({h[:2] for h in hashes}) > 3000  # the leading bytes vary like a digest's


def test_pattern_depends_on_key_only() -> None:
    a = l2_bench.expected_objects(10, 4, 4096)
    b = l2_bench.expected_objects(12, 2, 4096)
    assert np.array_equal(a[2:], b)
    assert len({a[i].tobytes() for i in range(4)}) == 4


def test_percentiles_match_lmcache() -> None:
    r = l2_bench.OpResult(
        "Store", 1, 2, 1024, durations_s=[0.004, 0.001, 0.003, 0.002], success_counts=[2] * 4
    )
    assert r.duration_ms("p50") == pytest.approx(2.0)  # nearest rank: sorted[ceil(0.5 * 4) - 1]
    assert r.duration_ms("p99") == pytest.approx(4.0)
    assert r.duration_ms("avg") == pytest.approx(2.5)
    assert r.total_keys == 8 and r.throughputs_mbps[1] == pytest.approx(2 * 1024 / 2**20 / 0.001)
