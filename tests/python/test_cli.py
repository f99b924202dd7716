"""The lmcache CLI, run in-process through main(argv): exit codes, streams, formats."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lmcache
from lmcache.cli import main as cli_main
from lmcache.cli.commands import COMMANDS
from lmcache.cli.commands import config as config_command
from lmcache.cli.main import build_parser, entry_point, main
from lmcache.cli.status import ExitStatus, UsageError
from lmcache.config import ServerConfig, all_options
from lmcache.errors import ConfigError, NoSpaceError

CHECK = ["config", "check", "--l1-size-gb", "2", "--eviction-policy", "LRU"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMCACHE_DEBUG", raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, start: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lmcache: error: {start}"), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# The root command
# ---------------------------------------------------------------------------------------------


def test_no_command_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([], capsys)
    assert code == 2
    assert out == ""
    assert "usage: lmcache" in err and "config" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--version"], capsys)
    assert (code, out, err) == (0, f"lmcache {lmcache.__version__}\n", "")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "usage: lmcache" in out
    for command in COMMANDS:
        assert command.NAME in out


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["frobnicate"], capsys)
    assert code == 2 and out == ""
    line = assert_one_error_line(err, "argument COMMAND: invalid choice: 'frobnicate'")
    assert "(see 'lmcache --help')" in line


def test_registry_is_explicit_and_well_formed() -> None:
    names = [c.NAME for c in COMMANDS]
    assert len(names) == len(set(names))
    for command in COMMANDS:
        assert isinstance(command.NAME, str) and command.NAME
        assert isinstance(command.HELP, str) and command.HELP
        assert callable(command.register) and callable(command.run)
    assert config_command in COMMANDS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(names)


def test_cli_does_not_import_the_native_module() -> None:
    code = (
        "import sys, lmcache.cli.main, lmcache.report, lmcache.config;"
        "sys.exit('lmcache._native' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(REPO / "python")},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_commands_never_exit_the_process() -> None:
    for command in COMMANDS:
        source = Path(command.__file__).read_text()  # type: ignore[attr-defined]
        assert "sys.exit" not in source and "SystemExit" not in source, command.NAME


def test_shell_completion_of_choices(tmp_path: Path) -> None:
    pytest.importorskip("argcomplete")
    line = "lmcache config check --eviction-policy "
    out = tmp_path / "completions"
    env = {
        "PYTHONPATH": str(REPO / "python"),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from lmcache.cli.main import entry_point; entry_point()"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().split() == ["LRU", "IsolatedLRU", "noop"]


def test_argcomplete_marker() -> None:
    head = Path(cli_main.__file__).read_text().splitlines()[:2]
    assert "# PYTHON_ARGCOMPLETE_OK" in head


def test_entry_point_exits_with_main_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["lmcache", *CHECK, "-q"])
    with pytest.raises(SystemExit) as exc:
        entry_point()
    assert exc.value.code == 0
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------------------------
# lmcache config check
# ---------------------------------------------------------------------------------------------


def test_config_without_action(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config"], capsys)
    assert code == 2 and out == ""
    assert "usage: lmcache config" in err and "check" in err


def test_config_check_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["config", "check", "--help"], capsys)
    assert code == 0
    for opt in all_options(ServerConfig):
        assert opt.flag in out
    for title in ("L1 Memory Manager:", "Eviction Policy:", "Periodic Notifier:", "MP Server:", "output:"):
        assert title in out
    assert "--format {terminal,json}" in out and "-q, --quiet" in out


def test_config_check_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(CHECK, capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("=") and "LMCache Configuration" in lines[0]
    assert lines[-1] == "=" * len(lines[0])
    assert len({len(line) for line in lines}) == 1
    assert any(line.startswith("--l1-size-gb:") and line.endswith(" 2.0") for line in lines)
    for opt in all_options(ServerConfig):
        assert f"{opt.flag}:" in out
    assert any(line.startswith("--eviction-policy:") and line.endswith(" LRU") for line in lines)
    assert any(line.startswith("--l1-devdax-path:") and line.endswith(" N/A") for line in lines)


def test_config_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*CHECK, "--format", "json", "--eviction-ratio", "0.25"], capsys)
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["title"] == "LMCache Configuration"
    metrics = data["metrics"]
    assert metrics["status"] == "OK"
    assert metrics["l1"]["l1_size_gb"] == 2.0
    assert metrics["l1"]["l1_use_lazy"] is True
    assert metrics["l1"]["l1_devdax_path"] is None
    assert metrics["eviction"] == {
        "eviction_policy": "LRU",
        "eviction_trigger_watermark": 0.8,
        "eviction_ratio": 0.25,
    }
    assert metrics["notifier"] == {"periodic_notifier_interval_ms": 5}


@pytest.mark.parametrize("fmt", ["terminal", "json"])
def test_config_check_output_file(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cfg.out"
    code, out, _ = run([*CHECK, "--format", fmt, "--output", str(path)], capsys)
    assert code == 0
    assert path.read_text() == out
    if fmt == "json":
        json.loads(path.read_text())


def test_config_check_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*CHECK, "-q"], capsys) == (0, "", "")
    path = tmp_path / "cfg.json"
    assert run([*CHECK, "--quiet", "--format", "json", "--output", str(path)], capsys) == (0, "", "")
    assert json.loads(path.read_text())["metrics"]["eviction"]["eviction_policy"] == "LRU"
    # quiet does not hide errors
    code, out, err = run(["config", "check", "-q", "--l1-size-gb", "0", "--eviction-policy", "LRU"], capsys)
    assert code == 2 and out == ""
    assert_one_error_line(err, "--l1-size-gb: got 0;")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--l1-size-gb", "0"),
        ("--l1-size-gb", "-1"),
        ("--l1-size-gb", "nan"),
        ("--l1-size-gb", "abc"),
        ("--l1-size-gb", "99999999"),
        ("--l1-init-size-gb", "-2"),
        ("--l1-align-bytes", "1000"),
        ("--l1-align-bytes", "4096.5"),
        ("--l1-devdax-path", "/no/such/dax"),
        ("--l1-write-ttl-seconds", "0"),
        ("--l1-read-ttl-seconds", "inf"),
        ("--eviction-policy", "ARC"),
        ("--eviction-trigger-watermark", "1.5"),
        ("--eviction-ratio", "-0.1"),
        ("--periodic-notifier-interval-ms", "0"),
        ("--periodic-notifier-interval-ms", "5ms"),
    ],
)
def test_invalid_value_is_one_line_exit_2(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*CHECK, f"{flag}={value}"], capsys)
    assert code == 2
    assert out == ""
    line = assert_one_error_line(err, f"{flag}: got ")
    assert value in line and "; must be " in line


def test_l1_larger_than_ram(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from lmcache.config import l1

    monkeypatch.setattr(l1, "physical_memory_bytes", lambda: 4 << 30)
    code, _, err = run(["config", "check", "--l1-size-gb", "5", "--eviction-policy", "noop"], capsys)
    assert code == 2
    line = assert_one_error_line(err, "--l1-size-gb: got 5; must be <= this machine's physical memory")
    assert "--l1-devdax-path" in line


def test_missing_required_flags_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "check"], capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("lmcache: error: --l1-size-gb: required")
    assert lines[1].startswith("lmcache: error: --eviction-policy: required")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (
            [*CHECK, "--l1-size", "3"],
            "unrecognized arguments: --l1-size 3 (see 'lmcache config check --help')",
        ),
        ([*CHECK, "--bogus"], "unrecognized arguments: --bogus"),
        ([*CHECK, "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["config", "check", "--l1-size-gb"], "argument --l1-size-gb: expected one argument"),
        (["config", "frob"], "argument ACTION: invalid choice: 'frob'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    argv: list[str], start: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert_one_error_line(err, start)


def test_unwritable_output_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "nope" / "x.json"
    code, _, err = run([*CHECK, "-q", "--output", str(bad)], capsys)
    assert code == 1
    assert_one_error_line(err, f"--output {bad}: cannot write:")


def test_real_process(tmp_path: Path) -> None:
    """The console-script path: a fresh interpreter, real streams."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lmcache.cli.main import entry_point; entry_point()",
            *CHECK,
            "--format",
            "json",
        ],
        env={"PYTHONPATH": str(REPO / "python")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metrics"]["l1"]["l1_size_gb"] == 2.0
    assert proc.stderr == ""


# ---------------------------------------------------------------------------------------------
# The exception -> exit status map
# ---------------------------------------------------------------------------------------------


def _raising(exc: BaseException):  # type: ignore[no-untyped-def]
    def check(_args: object) -> int:
        raise exc

    return check


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (NoSpaceError("L1 is full"), ExitStatus.ERROR, "lmcache: error: L1 is full"),
        (ConfigError("--x: got 1; must be 2"), ExitStatus.USAGE, "lmcache: error: --x: got 1; must be 2"),
        (UsageError("bad usage"), ExitStatus.USAGE, "lmcache: error: bad usage"),
        (RuntimeError("boom\nsecond line"), ExitStatus.ERROR,
         "lmcache: error: RuntimeError: boom second line (set LMCACHE_DEBUG=1 for a traceback)"),
        (ValueError(), ExitStatus.ERROR, "lmcache: error: ValueError (set LMCACHE_DEBUG=1 for a traceback)"),
    ],
)  # fmt: skip
def test_exception_map(
    exc: BaseException,
    status: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(config_command, "_check", _raising(exc))
    code, out, err = run(CHECK, capsys)
    assert code == status
    assert out == ""
    assert err == message + "\n"


def test_multi_line_config_error_gives_one_prefixed_line_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(config_command, "_check", _raising(ConfigError("--a: got 1; x\n--b: got 2; y")))
    code, _, err = run(CHECK, capsys)
    assert code == 2
    assert err.splitlines() == ["lmcache: error: --a: got 1; x", "lmcache: error: --b: got 2; y"]


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (KeyboardInterrupt(), ExitStatus.INTERRUPTED),
        (BrokenPipeError(32, "Broken pipe"), ExitStatus.BROKEN_PIPE),
    ],
)
def test_quiet_exits(
    exc: BaseException, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(config_command, "_check", _raising(exc))
    assert run(CHECK, capsys) == (status, "", "")
    assert int(ExitStatus.INTERRUPTED) == 130


def test_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LMCACHE_DEBUG", "1")
    monkeypatch.setattr(config_command, "_check", _raising(RuntimeError("boom")))
    code, _, err = run(CHECK, capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1] == "lmcache: error: RuntimeError: boom"


def test_broken_pipe_in_a_real_process() -> None:
    """Writing into a closed pipe ends quietly with 141, no traceback and no 'Exception ignored'."""
    script = (
        "import os, sys\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        "from lmcache.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *CHECK],
        env={"PYTHONPATH": str(REPO / "python")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == ExitStatus.BROKEN_PIPE
    assert proc.stderr == ""
