"""lmcache.config: dataclass options -> argparse, parsing, validation, to_dict/from_dict."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pytest

from lmcache.config import (
    EvictionConfig,
    L1Config,
    NotifierConfig,
    StorageConfig,
    add_arguments,
    all_options,
    fields,
    from_dict,
    from_namespace,
    l1,
    option,
    title,
    to_dict,
    validate,
)
from lmcache.config.fields import format_default, number_range, options, power_of_two
from lmcache.errors import ConfigError, InvalidArgumentError

CONFIG_CLASSES = (L1Config, EvictionConfig, NotifierConfig)
REQUIRED = ["--l1-size-gb", "1", "--eviction-policy", "LRU"]


def make_parser(cls: type = StorageConfig) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test", allow_abbrev=False)
    add_arguments(parser, cls)
    return parser


def parse(argv: list[str], cls: type = StorageConfig) -> Any:
    return from_namespace(cls, make_parser(cls).parse_args(argv))


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return str(exc.value).splitlines()


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_every_field_is_a_documented_option(cls: type) -> None:
    fields_ = dataclasses.fields(cls)
    assert [o.name for o in options(cls)] == [f.name for f in fields_]
    for opt in options(cls):
        assert opt.flag == "--" + opt.name.replace("_", "-")
        assert len(opt.spec.help) > 20, opt.flag
        assert opt.spec.help.strip().endswith("."), opt.flag


def test_config_classes_are_frozen() -> None:
    cfg = parse(REQUIRED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.l1.l1_size_gb = 2.0


def test_argparse_covers_every_option_once() -> None:
    parser = make_parser()
    dests = [a.dest for a in parser._actions if a.dest != "help"]
    assert sorted(dests) == sorted(o.name for o in all_options(StorageConfig))
    flags = {s for a in parser._actions for s in a.option_strings}
    for opt in all_options(StorageConfig):
        assert opt.flag in flags
    assert "--no-l1-use-lazy" in flags


def test_one_argument_group_per_class() -> None:
    parser = make_parser()
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups}
    for cls in CONFIG_CLASSES:
        assert groups[title(cls)] == {o.name for o in options(cls)}
    assert title(L1Config) == "L1 Memory Manager"
    assert title(EvictionConfig) == "Eviction Policy"


def test_add_arguments_into_an_existing_group() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_argument_group("everything")
    add_arguments(group, StorageConfig)
    assert {a.dest for a in group._group_actions} == {o.name for o in all_options(StorageConfig)}


def test_help_mentions_each_default_and_range() -> None:
    parser = make_parser()
    by_dest = {a.dest: a for a in parser._actions}
    for opt in all_options(StorageConfig):
        text = by_dest[opt.name].help
        assert text is not None
        if opt.required:
            assert "Required." in text
        else:
            assert f"Default: {format_default(opt)}." in text, opt.flag
        if opt.spec.validate is not None:
            assert opt.spec.validate.text in text
    rendered = parser.format_help()
    assert "Default: 0.8." in rendered and "Default: 4096." in rendered and "Default: on." in rendered


def test_argparse_holds_no_defaults() -> None:
    """Defaults live in the dataclasses only: argparse reports every option as absent (None)."""
    ns = make_parser().parse_args([])
    assert all(getattr(ns, o.name) is None for o in all_options(StorageConfig))


def test_choices_are_completable() -> None:
    parser = make_parser()
    action = next(a for a in parser._actions if a.dest == "eviction_policy")
    assert action.completer() == ["LRU", "IsolatedLRU", "noop"]  # type: ignore[attr-defined]


def test_format_default() -> None:
    by_name = {o.name: o for o in all_options(StorageConfig)}
    assert format_default(by_name["l1_init_size_gb"]) == "20"
    assert format_default(by_name["eviction_ratio"]) == "0.2"
    assert format_default(by_name["l1_use_lazy"]) == "on"
    assert format_default(by_name["l1_devdax_path"]) == "unset"
    assert format_default(by_name["l1_size_gb"]) == "required"


# ---------------------------------------------------------------------------------------------
# Parsing valid values
# ---------------------------------------------------------------------------------------------


def test_defaults_come_from_the_dataclasses() -> None:
    cfg = parse(REQUIRED)
    assert cfg == StorageConfig(
        l1=L1Config(l1_size_gb=1.0), eviction=EvictionConfig(eviction_policy="LRU"), notifier=NotifierConfig()
    )
    assert cfg.l1.l1_use_lazy is True
    assert cfg.l1.l1_init_size_gb == 20.0
    assert cfg.l1.l1_align_bytes == 4096
    assert cfg.l1.l1_devdax_path is None
    assert cfg.l1.l1_write_ttl_seconds == 600.0
    assert cfg.l1.l1_read_ttl_seconds == 300.0
    assert cfg.eviction.eviction_trigger_watermark == 0.8
    assert cfg.eviction.eviction_ratio == 0.2
    assert cfg.notifier.periodic_notifier_interval_ms == 5


def test_all_flags_parse(tmp_path: Path) -> None:
    dax = tmp_path / "dax"
    dax.write_bytes(b"")
    cfg = parse(
        [
            "--l1-size-gb", "0.5", "--no-l1-use-lazy", "--l1-init-size-gb", "1e-1",
            "--l1-align-bytes", "64", "--l1-devdax-path", str(dax),
            "--l1-write-ttl-seconds", "10", "--l1-read-ttl-seconds", "2.5",
            "--eviction-policy", "IsolatedLRU", "--eviction-trigger-watermark", "1",
            "--eviction-ratio", ".5", "--periodic-notifier-interval-ms", "60000",
        ]
    )  # fmt: skip
    assert cfg.l1 == L1Config(
        l1_size_gb=0.5,
        l1_use_lazy=False,
        l1_init_size_gb=0.1,
        l1_align_bytes=64,
        l1_devdax_path=str(dax),
        l1_write_ttl_seconds=10.0,
        l1_read_ttl_seconds=2.5,
    )
    assert cfg.eviction == EvictionConfig(
        eviction_policy="IsolatedLRU", eviction_trigger_watermark=1.0, eviction_ratio=0.5
    )
    assert cfg.notifier.periodic_notifier_interval_ms == 60000
    assert isinstance(cfg.l1.l1_write_ttl_seconds, float)
    assert isinstance(cfg.notifier.periodic_notifier_interval_ms, int)


def test_lazy_flag_forms() -> None:
    assert parse([*REQUIRED, "--l1-use-lazy"]).l1.l1_use_lazy is True
    assert parse([*REQUIRED, "--no-l1-use-lazy"]).l1.l1_use_lazy is False


@pytest.mark.parametrize("policy", ["LRU", "IsolatedLRU", "noop"])
def test_each_policy_is_accepted(policy: str) -> None:
    assert parse(["--l1-size-gb", "1", "--eviction-policy", policy]).eviction.eviction_policy == policy


def test_char_device_is_accepted_as_devdax_path() -> None:
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    cfg = parse([*REQUIRED, "--l1-devdax-path", "/dev/null"])
    assert cfg.l1.l1_devdax_path == "/dev/null"


# ---------------------------------------------------------------------------------------------
# Rejecting invalid values: one line, naming the flag, the value and the accepted range
# ---------------------------------------------------------------------------------------------

BAD_VALUES = [
    ("--l1-size-gb", "0", "> 0 and <= 65536"),
    ("--l1-size-gb", "-1", "> 0"),
    ("--l1-size-gb", "nan", "finite"),
    ("--l1-size-gb", "inf", "finite"),
    ("--l1-size-gb", "-inf", "finite"),
    ("--l1-size-gb", "1e999", "finite"),
    ("--l1-size-gb", "1_000", "finite"),
    ("--l1-size-gb", "0x10", "finite"),
    ("--l1-size-gb", "ten", "finite"),
    ("--l1-size-gb", "", "finite"),
    ("--l1-size-gb", "70000", "<= 65536"),
    ("--l1-init-size-gb", "0", "> 0"),
    ("--l1-align-bytes", "4k", "an integer"),
    ("--l1-align-bytes", "4096.0", "an integer"),
    ("--l1-align-bytes", "1e3", "an integer"),
    ("--l1-align-bytes", "100", "power of two from 64 to 1073741824"),
    ("--l1-align-bytes", "32", "power of two"),
    ("--l1-align-bytes", "0", "power of two"),
    ("--l1-align-bytes", str(1 << 31), "power of two"),
    ("--l1-devdax-path", "/nonexistent/dax0.0", "existing regular file or character device"),
    ("--l1-devdax-path", "/", "existing regular file or character device"),
    ("--l1-write-ttl-seconds", "0", "> 0"),
    ("--l1-read-ttl-seconds", "-5", "> 0"),
    ("--l1-read-ttl-seconds", "1e30", "<= 31536000"),
    ("--eviction-policy", "FIFO", "one of LRU, IsolatedLRU, noop"),
    ("--eviction-policy", "lru", "one of LRU, IsolatedLRU, noop"),
    ("--eviction-trigger-watermark", "0", "> 0 and <= 1"),
    ("--eviction-trigger-watermark", "1.01", "> 0 and <= 1"),
    ("--eviction-ratio", "0", "> 0 and <= 1"),
    ("--eviction-ratio", "NaN", "finite"),
    ("--periodic-notifier-interval-ms", "0", ">= 1 and <= 60000"),
    ("--periodic-notifier-interval-ms", "2.5", "an integer"),
    ("--periodic-notifier-interval-ms", "60001", "<= 60000"),
]


@pytest.mark.parametrize(("flag", "value", "accepted"), BAD_VALUES)
def test_bad_value_gives_one_line(flag: str, value: str, accepted: str) -> None:
    argv = [*REQUIRED, f"{flag}={value}"]  # the later occurrence wins
    with pytest.raises(ConfigError) as exc:
        parse(argv)
    lines = problems_of(exc)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"{flag}: got ")
    assert (value or "''") in line
    assert "must be" in line and accepted in line
    assert isinstance(exc.value, InvalidArgumentError)


def test_missing_required_options() -> None:
    with pytest.raises(ConfigError) as exc:
        parse([])
    lines = problems_of(exc)
    assert len(lines) == 2
    assert lines[0].startswith("--l1-size-gb: required")
    assert lines[1].startswith("--eviction-policy: required") and "LRU, IsolatedLRU, noop" in lines[1]


def test_every_problem_is_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        parse(["--l1-size-gb", "-1", "--eviction-ratio", "2", "--l1-align-bytes", "3"])
    flags = [line.split(":")[0] for line in problems_of(exc)]
    assert flags == ["--l1-size-gb", "--l1-align-bytes", "--eviction-policy", "--eviction-ratio"]


def test_l1_larger_than_ram_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(l1, "physical_memory_bytes", lambda: 8 << 30)
    assert parse(["--l1-size-gb", "8", "--eviction-policy", "LRU"]).l1.l1_size_gb == 8.0
    with pytest.raises(ConfigError) as exc:
        parse(["--l1-size-gb", "8.5", "--eviction-policy", "LRU"])
    (line,) = problems_of(exc)
    assert line.startswith("--l1-size-gb: got 8.5; must be <=")
    assert "physical memory (8.0 GB)" in line and "--l1-devdax-path" in line
    # A DAX device or file may be larger than RAM.
    dax = tmp_path / "dax"
    dax.write_bytes(b"")
    cfg = parse(["--l1-size-gb", "8.5", "--eviction-policy", "LRU", "--l1-devdax-path", str(dax)])
    assert cfg.l1.l1_size_gb == 8.5


def test_real_ram_bound() -> None:
    ram = l1.physical_memory_bytes()
    if ram is None:
        pytest.skip("physical memory unknown")
    too_big = ram / l1.GIB * 2
    if too_big > l1.MAX_L1_SIZE_GB:
        pytest.skip("machine too large for this check")
    with pytest.raises(ConfigError, match="physical memory"):
        parse(["--l1-size-gb", str(too_big), "--eviction-policy", "LRU"])


def test_ram_check_skipped_when_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(l1, "physical_memory_bytes", lambda: None)
    assert parse(["--l1-size-gb", "60000", "--eviction-policy", "noop"]).l1.l1_size_gb == 60000.0


# ---------------------------------------------------------------------------------------------
# validate() on instances made in code
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"l1_size_gb": math.nan}, "--l1-size-gb"),
        ({"l1_size_gb": math.inf}, "--l1-size-gb"),
        ({"l1_size_gb": "1"}, "--l1-size-gb"),
        ({"l1_size_gb": True}, "--l1-size-gb"),
        ({"l1_size_gb": 1, "l1_align_bytes": 4096.0}, "--l1-align-bytes"),
        ({"l1_size_gb": 1, "l1_use_lazy": 1}, "--l1-use-lazy"),
        ({"l1_size_gb": 1, "l1_devdax_path": 3}, "--l1-devdax-path"),
    ],
)
def test_validate_rejects_bad_instances(kwargs: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError) as exc:
        validate(L1Config(**kwargs))
    (line,) = problems_of(exc)
    assert line.startswith(f"{flag}: got ")


def test_validate_accepts_int_for_float() -> None:
    validate(L1Config(l1_size_gb=1))


def test_validate_checks_nested_classes() -> None:
    cfg = StorageConfig(l1=L1Config(l1_size_gb=1.0), eviction=EvictionConfig(eviction_policy="MRU"))
    with pytest.raises(ConfigError, match=r"^--eviction-policy: got MRU; must be one of"):
        validate(cfg)


# ---------------------------------------------------------------------------------------------
# to_dict / from_dict
# ---------------------------------------------------------------------------------------------


def test_to_dict_shape() -> None:
    d = to_dict(parse(REQUIRED))
    assert set(d) == {"l1", "gds", "eviction", "l2", "notifier"}
    assert d["l1"]["l1_size_gb"] == 1.0
    assert d["eviction"] == {
        "eviction_policy": "LRU",
        "eviction_trigger_watermark": 0.8,
        "eviction_ratio": 0.2,
    }
    assert d["notifier"] == {"periodic_notifier_interval_ms": 5}
    # every option appears exactly once
    flat = [k for section in d.values() for k in section]
    assert sorted(flat) == sorted(o.name for o in all_options(StorageConfig))


def test_to_dict_from_dict_round_trip(tmp_path: Path) -> None:
    dax = tmp_path / "dax"
    dax.write_bytes(b"")
    cfg = parse(
        [
            "--l1-size-gb", "3", "--no-l1-use-lazy", "--l1-devdax-path", str(dax),
            "--eviction-policy", "noop", "--eviction-ratio", "0.1",
            "--periodic-notifier-interval-ms", "7",
        ]
    )  # fmt: skip
    assert from_dict(StorageConfig, to_dict(cfg)) == cfg
    assert from_dict(L1Config, to_dict(cfg.l1)) == cfg.l1


def test_from_dict_parses_strings_and_fills_defaults() -> None:
    cfg = from_dict(
        StorageConfig,
        {"l1": {"l1_size_gb": "2", "l1_use_lazy": "off"}, "eviction": {"eviction_policy": "LRU"}},
    )
    assert cfg.l1.l1_size_gb == 2.0 and cfg.l1.l1_use_lazy is False
    assert cfg.notifier == NotifierConfig()


def test_from_dict_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(
            StorageConfig,
            {"l1": {"l1_size_gb": 1, "l1_sise_gb": 2}, "eviction": {"eviction_policy": "LRU"}, "x": 1},
        )
    assert problems_of(exc) == ["l1.l1_sise_gb: unknown configuration key", "x: unknown configuration key"]
    with pytest.raises(ConfigError) as exc:
        from_dict(StorageConfig, {"l1": {"l1_size_gb": 1}, "eviction": "LRU"})
    assert problems_of(exc)[0].startswith("eviction: got LRU; must be a mapping")
    with pytest.raises(ConfigError, match=r"^--eviction-ratio: got 1\.5;"):
        from_dict(
            StorageConfig,
            {"l1": {"l1_size_gb": 1}, "eviction": {"eviction_policy": "LRU", "eviction_ratio": 1.5}},
        )


# ---------------------------------------------------------------------------------------------
# The framework itself, on a made-up class
# ---------------------------------------------------------------------------------------------


def _csv(text: str) -> tuple[str, ...]:
    items = tuple(x for x in text.split(",") if x)
    if not items:
        raise ValueError(text)
    return items


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Demo:
    """Demo options. More words here."""

    name: str | None = option("--name", "A name.", None)
    verbose: bool = option("--verbose", "Say more.", False)
    tags: tuple[str, ...] = option("--tags", "Comma-separated tags.", ("a",), parse=_csv)
    level: int = option("--level", "A level.", 3, validate=number_range(ge=0, lt=10))
    align: int = option("--align", "An alignment.", 8, validate=power_of_two(8, 64))


def test_framework_on_a_custom_class() -> None:
    assert title(_Demo) == "Demo options"
    assert from_namespace(_Demo, make_parser(_Demo).parse_args([])) == _Demo()
    demo = from_namespace(
        _Demo, make_parser(_Demo).parse_args(["--name", "x", "--verbose", "--tags", "b,c", "--level", "9"])
    )
    assert demo == _Demo(name="x", verbose=True, tags=("b", "c"), level=9)
    with pytest.raises(ConfigError, match=r"^--tags: got ','; must be a valid value$"):
        from_namespace(_Demo, make_parser(_Demo).parse_args(["--tags", ","]))
    with pytest.raises(ConfigError, match=r"^--level: got 10; must be an integer >= 0 and < 10$"):
        from_namespace(_Demo, make_parser(_Demo).parse_args(["--level", "10"]))
    with pytest.raises(ConfigError, match=r"^--level: got '1 0'; must be an integer >= 0 and < 10$"):
        from_namespace(_Demo, make_parser(_Demo).parse_args(["--level", "1 0"]))
    with pytest.raises(ConfigError, match=r"^--name: got 5; must be a string \(or unset\)$"):
        validate(_Demo(name=5))  # type: ignore[arg-type]
    assert to_dict(_Demo()) == {"name": None, "verbose": False, "tags": ("a",), "level": 3, "align": 8}


def test_option_declaration_errors() -> None:
    with pytest.raises(TypeError):
        option("--x", "X.")  # neither default nor required
    with pytest.raises(TypeError):
        option("--x", "X.", 1, required=True)
    with pytest.raises(TypeError):
        option("x", "X.", 1)
    with pytest.raises(TypeError):
        option("--x", "X.", [1])


@dataclasses.dataclass(frozen=True, kw_only=True)
class _A:
    x: int = option("--x", "X.", 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _B:
    x: int = option("--x", "X.", 2)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Both:
    a: _A = dataclasses.field(default_factory=_A)
    b: _B = dataclasses.field(default_factory=_B)


def test_repeated_option_names_are_refused() -> None:
    with pytest.raises(TypeError, match="repeated"):
        add_arguments(argparse.ArgumentParser(), _Both)


def test_bad_declarations_are_refused() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NotNegatable:
        x: int = option("--x", "X.", 1, negatable=True)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Plain:
        x: int = 1

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Unsupported:
        x: list[int] = option("--x", "X.", (1,))  # noqa: RUF009 - an unsupported type, on purpose

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class DefaultOutOfRange:
        x: int = option("--x", "X.", 0, validate=number_range(ge=1))

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NoneForNonOptional:
        x: int = option("--x", "X.", None)

    for cls in (NotNegatable, Plain, Unsupported, DefaultOutOfRange, NoneForNonOptional):
        with pytest.raises(TypeError):
            fields.options(cls)
