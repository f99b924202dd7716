"""lmcache.report: terminal tables, JSON shape, emit() and Progress."""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path

import pytest

from lmcache.errors import StorageIOError
from lmcache.report import (
    FORMATS,
    Progress,
    Report,
    Row,
    Section,
    emit,
    format_value,
    label_key,
    render,
    render_json,
    render_terminal,
    to_json_dict,
)

PING = Report(
    "Ping KV Cache",
    [Section(None, [("Status", "OK"), ("Round trip time (ms)", 3.42)])],
    width=30,
)


def test_module_does_not_import_cli() -> None:
    import lmcache.report as mod

    assert "lmcache.cli" not in Path(mod.__file__).read_text()


# ---------------------------------------------------------------------------------------------
# Terminal
# ---------------------------------------------------------------------------------------------


def test_ping_table_matches_the_documented_layout() -> None:
    assert render_terminal(PING).splitlines() == [
        "======= Ping KV Cache ========",
        "Status:                     OK",
        "Round trip time (ms):     3.42",
        "==============================",
    ]


def test_sections_headers_and_common_width() -> None:
    report = Report(
        "Query Engine",
        [
            Section(None, [("Model", "facebook/opt-125m"), ("Input tokens", 618)]),
            Section("Latency Metrics", [("TTFT (ms)", 26.876), ("Throughput (tokens/s)", 1100.644)]),
        ],
    )
    lines = render_terminal(report).splitlines()
    assert lines[0] == " Query Engine ".center(48, "=")
    assert lines[1] == "Model:" + "facebook/opt-125m".rjust(48 - len("Model:"))
    assert lines[3] == " Latency Metrics ".center(48, "-")
    assert lines[4].startswith("TTFT (ms):") and lines[4].endswith(" 26.88")
    assert lines[5].endswith(" 1100.64")
    assert lines[-1] == "=" * 48
    assert {len(line) for line in lines} == {48}


def test_width_grows_to_fit() -> None:
    long_value = "x" * 60
    report = Report("T", [Section("A very long section name indeed", [("Label", long_value)])], width=20)
    lines = render_terminal(report).splitlines()
    width = len("Label:") + 1 + len(long_value)
    assert {len(line) for line in lines} == {width}
    assert lines[2] == "Label: " + long_value
    long_title = Report("T" * 50, [], width=10)
    first, last = render_terminal(long_title).splitlines()
    assert first == "= " + "T" * 50 + " =" and last == "=" * 54


@pytest.mark.parametrize(
    ("value", "fmt", "shown"),
    [
        (3.14159, None, "3.14"),
        (1100.0, None, "1100.00"),
        (0.0, None, "0.00"),
        (0.00123, None, "0.00123"),
        (-0.005, None, "-0.005"),
        (math.nan, None, "nan"),
        (math.inf, None, "inf"),
        (1.6473, ".3f", "1.647"),
        (600.0, "", "600.0"),
        ("n/a", ".3f", "n/a"),  # a format spec that does not apply falls back
        (None, None, "N/A"),
        (None, ".2f", "N/A"),
        (True, None, "True"),
        (42, None, "42"),
        ([0, 1, 2], None, "0, 1, 2"),
        ({"a": 1}, None, '{"a": 1}'),
        ("two\nlines", None, "two lines"),
    ],
)
def test_format_value(value: object, fmt: str | None, shown: str) -> None:
    assert format_value(value, fmt) == shown


class Color(enum.Enum):
    RED = "red"


def test_enum_values() -> None:
    assert format_value(Color.RED) == "red"
    assert to_json_dict(Report("t", [Section(None, [("c", Color.RED)])]))["metrics"] == {"c": "red"}


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def test_ping_json_matches_lmcache_shape() -> None:
    assert json.loads(render_json(PING)) == {
        "title": "Ping KV Cache",
        "metrics": {"status": "OK", "round_trip_time_ms": 3.42},
    }


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("Round trip time (ms)", "round_trip_time_ms"),
        ("L1 capacity (GB)", "l1_capacity_gb"),
        ("Pass rate (%)", "pass_rate_pct"),
        ("TPOT (ms/token)", "tpot_ms_token"),
        ("Status", "status"),
    ],
)
def test_label_key(label: str, key: str) -> None:
    assert label_key(label) == key


def test_json_sections_groups_and_explicit_keys() -> None:
    report = Report(
        "LMCache KV Cache Service",
        [
            Section(None, [("Health", "OK"), Row("L1 used (GB)", "0.72 (71.9%)", key="l1_used_gb")]),
            Section("L1 Memory Manager", [Row("--l1-size-gb", 4.0, key="l1_size_gb")], key="l1"),
            Section("Latency (ms)", [("p50", 1.5), ("p99", math.nan)]),
            Section("L2: fs", [("Type", "fs"), ("Path", Path("/tmp/x"))], group="l2_adapters"),
            Section("L2: mock", [("Type", "mock"), ("Tags", ("a", "b"))], group="l2_adapters"),
        ],
    )
    data = json.loads(render_json(report))
    assert data == {
        "title": "LMCache KV Cache Service",
        "metrics": {
            "health": "OK",
            "l1_used_gb": "0.72 (71.9%)",
            "l1": {"l1_size_gb": 4.0},
            "latency_ms": {"p50": 1.5, "p99": None},
            "l2_adapters": [{"type": "fs", "path": "/tmp/x"}, {"type": "mock", "tags": ["a", "b"]}],
        },
    }
    assert list(data["metrics"]) == ["health", "l1_used_gb", "l1", "latency_ms", "l2_adapters"]


def test_duplicate_json_keys_are_a_bug() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        render_json(Report("t", [Section(None, [("A b", 1), ("A-b", 2)])]))
    with pytest.raises(ValueError, match="duplicate"):
        render_json(Report("t", [Section("S", [("x", 1)]), Section("S", [("y", 1)])]))


def test_render_dispatch() -> None:
    assert FORMATS == ("terminal", "json")
    assert render(PING, "terminal") == render_terminal(PING)
    assert render(PING, "json") == render_json(PING)
    with pytest.raises(ValueError, match="unknown report format"):
        render(PING, "xml")


# ---------------------------------------------------------------------------------------------
# emit() and Progress
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_emit_to_stdout(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    emit(PING, fmt, None, quiet=False)
    out, err = capsys.readouterr()
    assert out == render(PING, fmt) + "\n"
    assert err == ""


@pytest.mark.parametrize("fmt", FORMATS)
def test_emit_to_file_in_the_same_format(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.txt"
    emit(PING, fmt, path, quiet=False)
    out, _ = capsys.readouterr()
    assert path.read_text() == out == render(PING, fmt) + "\n"


def test_quiet_prints_nothing_but_still_writes_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emit(PING, "json", None, quiet=True)
    assert capsys.readouterr() == ("", "")
    path = tmp_path / "r.json"
    emit(PING, "json", str(path), quiet=True)
    assert capsys.readouterr() == ("", "")
    assert json.loads(path.read_text())["title"] == "Ping KV Cache"


def test_unwritable_output_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "missing-dir" / "r.json"
    with pytest.raises(StorageIOError) as exc:
        emit(PING, "json", bad, quiet=True)
    message = str(exc.value)
    assert message.startswith(f"--output {bad}: cannot write:")
    assert "\n" not in message


def test_progress_streams(capsys: pytest.CaptureFixture[str]) -> None:
    Progress("terminal", quiet=False).line("step 1")
    assert capsys.readouterr() == ("step 1\n", "")
    Progress("json", quiet=False).line("step 2")
    assert capsys.readouterr() == ("", "step 2\n")
    Progress("terminal", quiet=True).line("step 3")
    Progress("json", quiet=True).line("step 4")
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError):
        Progress("xml", quiet=False)


def test_json_mode_keeps_stdout_pure(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("json", quiet=False)
    progress.line("connecting ...")
    emit(PING, "json", None, quiet=False)
    progress.line("done")
    out, err = capsys.readouterr()
    assert json.loads(out) == to_json_dict(PING)
    assert err == "connecting ...\ndone\n"
