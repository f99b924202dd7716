"""Configuration from frozen dataclasses: one definition per flag.

A configuration class is a ``@dataclass(frozen=True, kw_only=True)`` whose fields are declared with
:func:`option`. Each option carries its command-line flag, its help text, its default (written
once, as the field's default) and its accepted range. Everything else is generated from that one
definition:

* :func:`add_arguments` adds the flags to an argparse parser, one argument group per class;
* :func:`from_namespace` / :func:`from_dict` turn parsed flags or a mapping into an instance and
  validate it;
* :func:`validate` checks an instance (field ranges, then the class's ``cross_check`` hook);
* :func:`to_dict` dumps an instance (for ``GET /config`` and ``lmcache describe``).

A field whose type is itself a configuration class nests that class: its flags get their own
argument group, and :func:`to_dict` nests its values under the field's name. Flags are global:
every option name (which is also the argparse ``dest``) must be unique across a nested tree.

Beyond plain int/float/str/bool values, an option may be:

* computed: ``default_factory=`` (with ``default_text=`` saying what it is) makes the default a
  value computed when the instance is made, i.e. at parse time (a fresh UUID, say);
* inherited: ``inherits="other"`` on an ``X | None`` option defaulting to None means "unset: use
  the value of the sibling option ``other``" (:func:`effective_value` resolves it);
* a sequence: a ``tuple[X, ...]`` field with ``sequence="words"`` (one flag followed by zero or
  more values, ``nargs='*'``) or ``sequence="repeat"`` (the flag repeated, one value each, in
  order, ``action='append'``); each item is parsed and checked on its own;
* a JSON object: ``json_object=True`` on a ``str`` option keeps the JSON text as given, after
  checking that it decodes to an object (:func:`from_dict` also accepts the decoded mapping);
* secret: ``secret=True`` keeps the value out of error messages and out of
  ``to_dict(effective=True)``.

Error messages are one line per bad value, naming the flag, the value and what is accepted::

    --eviction-ratio: got 1.5; must be a finite number > 0 and <= 1

All problems found are reported together, in a :class:`lmcache.errors.ConfigError` whose message
has one such line per problem.

Argparse never converts or checks values itself: every argument is collected as the raw string
(``default=None`` meaning "not given"), so a bad value is reported in the format above instead of
argparse's two-line usage error, and the default stays in the dataclass only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

from lmcache.errors import ConfigError

__all__ = [
    "OptionInfo",
    "OptionSpec",
    "Requirement",
    "add_arguments",
    "all_options",
    "decode_json_object",
    "describe_accepted",
    "effective_value",
    "flag",
    "format_default",
    "from_dict",
    "from_namespace",
    "number_range",
    "option",
    "options",
    "power_of_two",
    "show_value",
    "sub_configs",
    "title",
    "to_dict",
    "validate",
]

T = TypeVar("T")

_META_KEY = "lmcache.option"
_MISSING: Any = dataclasses.MISSING
_SEQUENCES = ("words", "repeat")
_REDACTED = "***"


# --------------------------------------------------------------------------------------------------
# Accepted ranges
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Requirement:
    """What a value must satisfy, with the words that say so.

    ``text`` completes the phrase that starts with the value's kind ("a finite number", "an
    integer", or ``noun`` when given): ``"> 0 and <= 1"`` reads "a finite number > 0 and <= 1".
    ``check`` receives a value already of the option's type and returns whether it is accepted.
    ``hint``, when given, may return a few words on why a particular rejected value is wrong; they
    end its error message.
    """

    text: str
    check: Callable[[Any], bool]
    noun: str | None = None
    hint: Callable[[Any], str | None] | None = None

    def __call__(self, value: Any) -> bool:
        return self.check(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def number_range(
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Requirement:
    """A numeric interval; give at most one lower (``gt``/``ge``) and one upper (``lt``/``le``) bound."""
    if gt is not None and ge is not None:
        raise TypeError("give gt or ge, not both")
    if lt is not None and le is not None:
        raise TypeError("give lt or le, not both")
    parts: list[str] = []
    if gt is not None:
        parts.append(f"> {_num(gt)}")
    if ge is not None:
        parts.append(f">= {_num(ge)}")
    if lt is not None:
        parts.append(f"< {_num(lt)}")
    if le is not None:
        parts.append(f"<= {_num(le)}")

    def check(v: float) -> bool:
        return (
            (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (lt is None or v < lt)
            and (le is None or v <= le)
        )

    return Requirement(" and ".join(parts), check)


def power_of_two(lo: int, hi: int) -> Requirement:
    """An integer power of two in ``[lo, hi]``."""

    def check(v: int) -> bool:
        return lo <= v <= hi and v & (v - 1) == 0

    return Requirement(f"that is a power of two from {lo} to {hi}", check)


# --------------------------------------------------------------------------------------------------
# Declaring options
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """Everything :func:`option` records about a field, except its default (kept by dataclasses)."""

    flag: str
    help: str
    choices: tuple[str, ...] | None = None
    negatable: bool = False
    parse: Callable[[str], Any] | None = None
    validate: Requirement | None = None
    metavar: str | None = None
    default_text: str | None = None
    inherits: str | None = None
    sequence: Literal["words", "repeat"] | None = None
    json_object: bool = False
    secret: bool = False


def option(
    flag: str,
    help: str,
    default: Any = _MISSING,
    *,
    choices: tuple[str, ...] | list[str] | None = None,
    required: bool = False,
    negatable: bool = False,
    parse: Callable[[str], Any] | None = None,
    validate: Requirement | None = None,
    metavar: str | None = None,
    default_factory: Callable[[], Any] | None = None,
    default_text: str | None = None,
    inherits: str | None = None,
    sequence: Literal["words", "repeat"] | None = None,
    json_object: bool = False,
    secret: bool = False,
) -> Any:
    """Declare a configuration field (use as the right-hand side of a dataclass field).

    Args:
        flag: the command-line flag, e.g. ``"--l1-size-gb"``.
        help: what the option means, in a sentence or two. The accepted range and the default
            are appended automatically; do not repeat them here.
        default: the default value. Omit it for a required option (``required=True``).
        choices: the accepted strings of a ``str`` option (case-sensitive).
        required: the option has no default and must be given.
        negatable: a ``bool`` option that also gets a ``--no-...`` form.
        parse: converts the raw command-line string (raise ``ValueError`` to reject it); for
            types other than int/float/str/bool, which are parsed strictly by default.
        validate: the accepted range of the (parsed) value; of each item for a sequence.
        metavar: the placeholder shown in ``--help``.
        default_factory: computes the default each time an instance is made without the option
            (instead of ``default``); needs ``default_text``.
        default_text: how the default is shown in help and docs, when not the value itself.
        inherits: the name of a sibling option of the same class whose value this option takes
            while unset; the field is ``X | None`` with the default None.
        sequence: ``"words"`` (``--flag A B ...``, zero or more values) or ``"repeat"``
            (``--flag A --flag B``) for a ``tuple[X, ...]`` field whose default is a tuple.
        json_object: the (``str``) value is the text of a JSON object.
        secret: never echo the value in errors, nor in ``to_dict(effective=True)``.
    """
    if not flag.startswith("--"):
        raise TypeError(f"option flag must start with '--': {flag!r}")
    given = [default is not _MISSING, default_factory is not None, required]
    if sum(given) != 1:
        raise TypeError(f"{flag}: give exactly one of a default, a default_factory or required=True")
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"{flag}: mutable default; use a tuple")
    if default_factory is not None and default_text is None:
        raise TypeError(f"{flag}: a default_factory needs a default_text")
    if inherits is not None and default is not None:
        raise TypeError(f"{flag}: an inheriting option defaults to None")
    if sequence is not None and sequence not in _SEQUENCES:
        raise TypeError(f"{flag}: sequence must be one of {_SEQUENCES}")
    if sequence is not None and default is not _MISSING and not isinstance(default, tuple):
        raise TypeError(f"{flag}: the default of a sequence option is a tuple")
    spec = OptionSpec(
        flag=flag,
        help=help,
        choices=tuple(choices) if choices is not None else None,
        negatable=negatable,
        parse=parse,
        validate=validate,
        metavar=metavar,
        default_text=default_text,
        inherits=inherits,
        sequence=sequence,
        json_object=json_object,
        secret=secret,
    )
    metadata = {_META_KEY: spec}
    if required:
        return dataclasses.field(metadata=metadata)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One option of a configuration class, with its resolved type."""

    name: str  # field name; also the argparse dest and the to_dict key
    spec: OptionSpec
    kind: type | None  # int, float, str or bool (of each item, for a sequence); None: custom ``parse``
    optional: bool  # None is an accepted value
    default: Any  # dataclasses.MISSING when required or computed
    owner: type
    default_factory: Callable[[], Any] | None = None  # a computed default

    @property
    def flag(self) -> str:
        return self.spec.flag

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.default_factory is None


_SIMPLE_KINDS: tuple[type, ...] = (bool, int, float, str)


def _resolve_type(tp: Any, has_parser: bool, where: str) -> tuple[type | None, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            kind, _ = _resolve_type(rest[0], has_parser, where)
            return kind, True
    elif tp in _SIMPLE_KINDS:
        return typing.cast(type, tp), False
    if has_parser:
        return None, False
    raise TypeError(f"{where}: unsupported option type {tp!r} (give parse=)")


def _sequence_item_type(tp: Any, where: str) -> Any:
    """``X`` of a ``tuple[X, ...]`` annotation."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is not tuple or len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError(f"{where}: a sequence option needs a tuple[X, ...] field, not {tp!r}")
    return args[0]


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _check_spec(info: OptionInfo, siblings: Mapping[str, OptionInfo]) -> None:
    """Declaration errors that need the resolved types (raised as TypeError at first use)."""
    spec, kind = info.spec, info.kind
    if spec.negatable and (kind is not bool or spec.sequence is not None):
        raise TypeError(f"{spec.flag}: negatable=True needs a bool field")
    if spec.choices is not None and kind is not str:
        raise TypeError(f"{spec.flag}: choices= needs a str field")
    if spec.json_object and kind is not str:
        raise TypeError(f"{spec.flag}: json_object=True needs a str field")
    if spec.inherits is not None:
        source = siblings.get(spec.inherits)
        if source is None or source.kind is not kind or not info.optional or source.spec.sequence:
            raise TypeError(f"{spec.flag}: inherits={spec.inherits!r} is not a sibling option of its type")
    if info.default_factory is not None:
        default = info.default_factory()
    elif info.required:
        return
    else:
        default = info.default
    if _value_problem(info, default) is not None:
        raise TypeError(f"{spec.flag}: the default {default!r} is not accepted by the option itself")


@functools.cache
def _layout(cls: type) -> tuple[tuple[OptionInfo, ...], tuple[tuple[str, type], ...]]:
    if not _is_config_class(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    opts: list[OptionInfo] = []
    subs: list[tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_META_KEY)
        tp = hints[f.name]
        where = f"{cls.__name__}.{f.name}"
        if isinstance(spec, OptionSpec):
            if spec.sequence is not None:
                kind, optional = _resolve_type(_sequence_item_type(tp, where), spec.parse is not None, where)
                if optional:
                    raise TypeError(f"{where}: the items of a sequence option cannot be None")
            else:
                kind, optional = _resolve_type(tp, spec.parse is not None, where)
            raw_factory: Any = f.default_factory
            factory: Callable[[], Any] | None = None if raw_factory is _MISSING else raw_factory
            opts.append(OptionInfo(f.name, spec, kind, optional, f.default, cls, factory))
        elif _is_config_class(tp):
            subs.append((f.name, tp))
        else:
            raise TypeError(f"{where}: neither an option() nor a nested config class")
    by_name = {o.name: o for o in opts}
    for info in opts:
        _check_spec(info, by_name)
    return tuple(opts), tuple(subs)


def options(cls: type) -> tuple[OptionInfo, ...]:
    """The options declared directly in ``cls`` (not in nested classes), in declaration order."""
    return _layout(cls)[0]


def sub_configs(cls: type) -> tuple[tuple[str, type], ...]:
    """``(field name, class)`` of each nested configuration class of ``cls``."""
    return _layout(cls)[1]


@functools.cache
def all_options(cls: type) -> tuple[OptionInfo, ...]:
    """Every option of ``cls`` and its nested classes; raises TypeError on a repeated name or flag."""
    out = list(options(cls))
    for _, sub in sub_configs(cls):
        out.extend(all_options(sub))
    names = [o.name for o in out]
    flags = [o.flag for o in out]
    for seen in (names, flags):
        dup = {x for x in seen if seen.count(x) > 1}
        if dup:
            raise TypeError(f"{cls.__name__}: repeated option(s) {sorted(dup)}")
    return tuple(out)


def flag(cls: type, name: str) -> str:
    """The flag of option ``name`` of ``cls`` (for messages that mention another option)."""
    for o in all_options(cls):
        if o.name == name:
            return o.flag
    raise KeyError(name)


def title(cls: type) -> str:
    """Group title of a configuration class: its ``TITLE`` attribute, else its docstring's first line."""
    explicit = getattr(cls, "TITLE", None)
    if isinstance(explicit, str):
        return explicit
    first_line = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    return first_line.split(". ")[0].rstrip(".")


# --------------------------------------------------------------------------------------------------
# Help text
# --------------------------------------------------------------------------------------------------


def format_default(opt: OptionInfo) -> str:
    """The default as shown in help: numbers as written, ``on``/``off`` for flags, ``unset`` for None.

    A ``default_text`` wins; an inheriting option shows ``inherits --other``; an empty string
    shows as ``""`` and an empty sequence as ``none``.
    """
    if opt.spec.default_text is not None:
        return opt.spec.default_text
    if opt.spec.inherits is not None:
        return f"inherits {flag(opt.owner, opt.spec.inherits)}"
    if opt.required:
        return "required"
    value = opt.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) if value else "none"
    if value == "":
        return '""'
    return str(value)


_NOUNS: dict[type, str] = {int: "an integer", float: "a finite number", str: "a string", bool: "on or off"}


def _describe_item(opt: OptionInfo) -> str:
    """What one value (one item, for a sequence) of ``opt`` must be."""
    spec = opt.spec
    if spec.choices is not None:
        return "one of " + ", ".join(spec.choices)
    req = spec.validate
    noun = req.noun if req is not None else None
    if noun is None:
        noun = "a JSON object" if spec.json_object else _NOUNS.get(opt.kind or object, "a valid value")
    return f"{noun} {req.text}" if req is not None and req.text else noun


def describe_accepted(opt: OptionInfo) -> str:
    """What ``opt`` accepts, as the end of "must be ...": e.g. ``a finite number > 0 and <= 1``."""
    text = _describe_item(opt)
    if opt.spec.sequence == "words":
        return f"zero or more values, each {text}"
    if opt.spec.sequence == "repeat":
        return f"{text} (the flag may be repeated)"
    if opt.optional:
        text += " (or unset)"
    return text


def _help_text(opt: OptionInfo) -> str:
    parts = [opt.spec.help.strip()]
    spec = opt.spec
    if (spec.validate is not None or spec.json_object or spec.sequence) and opt.kind is not bool:
        parts.append(f"Accepted: {describe_accepted(opt)}.")
    parts.append("Required." if opt.required else f"Default: {format_default(opt)}.")
    return " ".join(parts).replace("%", "%%")  # argparse %-formats help strings


class _ChoicesCompleter:
    """argcomplete completer for a choices option (argparse itself does not check our choices)."""

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def __call__(self, **_: object) -> list[str]:
        return list(self.choices)


# --------------------------------------------------------------------------------------------------
# argparse
# --------------------------------------------------------------------------------------------------


def add_arguments(target: argparse._ActionsContainer, cls: type) -> None:
    """Add the flags of ``cls`` (and its nested classes) to a parser or argument group.

    Given a parser, each configuration class gets its own argument group titled by :func:`title`;
    given a group, every flag goes into that group. Values stay raw strings (``None`` when the
    flag is absent); :func:`from_namespace` converts and checks them.
    """
    all_options(cls)  # reject repeated names/flags before touching the parser
    own = options(cls)
    if own:
        container: argparse._ActionsContainer = target
        if isinstance(target, argparse.ArgumentParser):
            container = target.add_argument_group(title(cls))
        for opt in own:
            _add_one(container, opt)
    for _, sub in sub_configs(cls):
        add_arguments(target, sub)


def _add_one(container: argparse._ActionsContainer, opt: OptionInfo) -> None:
    spec = opt.spec
    help_text = _help_text(opt)
    if opt.kind is bool and not opt.optional:
        if spec.negatable:
            container.add_argument(
                spec.flag, dest=opt.name, default=None, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            container.add_argument(
                spec.flag, dest=opt.name, default=None, action="store_const", const=True, help=help_text
            )
        return
    metavar = spec.metavar
    if metavar is None:
        metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else opt.name.upper()
    extra: dict[str, Any] = {}
    if spec.sequence == "words":
        extra["nargs"] = "*"
    elif spec.sequence == "repeat":
        extra["action"] = "append"
    action = container.add_argument(
        spec.flag, dest=opt.name, default=None, metavar=metavar, help=help_text, **extra
    )
    if spec.choices is not None:
        # argcomplete reads this attribute, which argparse does not declare.
        action.completer = _ChoicesCompleter(spec.choices)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------------
# Parsing and checking values
# --------------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_PLAIN_RE = re.compile(r"[A-Za-z0-9_.+\-/:]+")


def show_value(value: Any) -> str:
    """A value as quoted in an error message: plain tokens as typed, anything odd in repr()."""
    if isinstance(value, str):
        return value if _PLAIN_RE.fullmatch(value) else repr(value)
    if isinstance(value, float):
        return _num(value) if math.isfinite(value) else str(value)
    return repr(value)


def _shown(opt: OptionInfo, value: Any) -> str:
    return "a value not shown (secret)" if opt.spec.secret and value is not None else show_value(value)


def _hint(opt: OptionInfo, value: Any) -> str:
    req = opt.spec.validate
    if req is None or req.hint is None:
        return ""
    text = req.hint(value)
    return f" ({text})" if text else ""


def _problem(opt: OptionInfo, value: Any) -> str:
    return f"{opt.flag}: got {_shown(opt, value)}; must be {describe_accepted(opt)}{_hint(opt, value)}"


def _item_problem(opt: OptionInfo, item: Any) -> str:
    return f"{opt.flag}: got {_shown(opt, item)}; must be {_describe_item(opt)}{_hint(opt, item)}"


def decode_json_object(text: str) -> dict[str, Any] | None:
    """The object that ``text`` encodes in JSON, or None when it is not the text of a JSON object.

    Strict JSON: NaN and Infinity are refused, and so are repeated keys.
    """

    def _no_constants(name: str) -> Any:
        raise ValueError(name)

    def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("repeated key")
        return out

    try:
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_pairs)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _parse_text(opt: OptionInfo, raw: str) -> Any:
    """Convert a raw string to the option's type; raises ValueError when it is not one."""
    if opt.spec.parse is not None:
        return opt.spec.parse(raw)
    kind = opt.kind
    if kind is str:
        return raw
    text = raw.strip()
    if kind is int:
        if not _INT_RE.fullmatch(text):
            raise ValueError(raw)
        return int(text)
    if kind is float:
        if not _FLOAT_RE.fullmatch(text):
            raise ValueError(raw)  # also rejects nan, inf, 1_000 and hex
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(raw)  # 1e999 overflows to inf
        return value
    if kind is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(raw)
    raise TypeError(f"{opt.flag}: no parser for {kind!r}")


def _coerce(opt: OptionInfo, value: Any) -> Any:
    """Strings are parsed as on the command line; ints widen to float for float options.

    A JSON-object option also takes the decoded mapping, encoded back to JSON text here.
    """
    if isinstance(value, str) and (opt.kind is not str or opt.spec.parse is not None):
        return _parse_text(opt, value)
    if opt.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if opt.spec.json_object and isinstance(value, Mapping):
        try:
            return json.dumps(dict(value), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(value) from exc
    return value


def _value_problem(opt: OptionInfo, value: Any) -> str | None:
    """Type, choices and range check of an already-converted value; None when it is accepted."""
    if opt.spec.sequence is not None:
        if not isinstance(value, tuple):
            return _problem(opt, value)
        for item in value:
            if not _item_ok(opt, item):
                return _item_problem(opt, item)
        return None
    if value is None:
        return None if opt.optional else _problem(opt, value)
    return None if _item_ok(opt, value) else _problem(opt, value)


def _item_ok(opt: OptionInfo, value: Any) -> bool:
    """Whether one non-None value (one item, for a sequence) has the option's type and range."""
    if value is None:
        return False
    kind = opt.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if ok and opt.spec.json_object:
        ok = decode_json_object(value) is not None
    if ok and opt.spec.choices is not None:
        ok = value in opt.spec.choices
    if ok and opt.spec.validate is not None:
        ok = bool(opt.spec.validate(value))
    return ok


def _build(cls: type[T], values: Mapping[str, Any], problems: list[str], *, nested: bool) -> T | None:
    """Make an instance of ``cls`` from ``values``; record every problem; None if any.

    ``nested``: nested classes read their own sub-mapping (``values[field]``) rather than sharing
    one flat mapping (as an argparse namespace does).
    """
    kwargs: dict[str, Any] = {}
    failed = False
    for opt in options(cls):
        raw = values.get(opt.name)
        if raw is None:
            if opt.required:
                problems.append(f"{opt.flag}: required, not given; must be {describe_accepted(opt)}")
                failed = True
            continue  # dataclass default
        if opt.spec.sequence is not None:
            items = _build_sequence(opt, raw, problems)
            if items is None:
                failed = True
            else:
                kwargs[opt.name] = items
            continue
        try:
            value = _coerce(opt, raw)
        except ValueError:
            problems.append(_problem(opt, raw))
            failed = True
            continue
        if _value_problem(opt, value) is not None:
            problems.append(_problem(opt, raw))  # quote the value as it was given
            failed = True
            continue
        kwargs[opt.name] = value
    for name, sub in sub_configs(cls):
        if nested:
            sub_values = values.get(name)
            if sub_values is None:
                sub_values = {}
            if not isinstance(sub_values, Mapping):
                shown = show_value(sub_values)
                problems.append(f"{name}: got {shown}; must be a mapping of {title(sub)} options")
                failed = True
                continue
        else:
            sub_values = values
        inst = _build(sub, sub_values, problems, nested=nested)
        if inst is None:
            failed = True
        else:
            kwargs[name] = inst
    if failed:
        return None
    return cls(**kwargs)


def _build_sequence(opt: OptionInfo, raw: Any, problems: list[str]) -> tuple[Any, ...] | None:
    """The items of a sequence option, each converted and checked; None (problems recorded) if any fails."""
    if not isinstance(raw, (list, tuple)):
        problems.append(_problem(opt, raw))
        return None
    items: list[Any] = []
    ok = True
    for item in raw:
        try:
            value = _coerce(opt, item)
        except ValueError:
            value = None
        if not _item_ok(opt, value):
            problems.append(_item_problem(opt, item))
            ok = False
            continue
        items.append(value)
    return tuple(items) if ok else None


def _finish(inst: T | None, problems: list[str]) -> T:
    if inst is None or problems:
        raise ConfigError("\n".join(problems))
    validate(inst)
    return inst


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build and validate an instance from flags added by :func:`add_arguments`.

    Raises ConfigError with one line per bad or missing value.
    """
    problems: list[str] = []
    inst = _build(cls, vars(ns), problems, nested=False)
    return _finish(inst, problems)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build and validate an instance from a mapping shaped like :func:`to_dict` output.

    Values may be typed or strings (parsed as on the command line). Unknown keys are rejected.
    """
    problems: list[str] = []
    _unknown_keys(cls, data, "", problems)
    inst = _build(cls, data, problems, nested=True)
    return _finish(inst, problems)


def _unknown_keys(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str]) -> None:
    known = {o.name for o in options(cls)}
    subs = dict(sub_configs(cls))
    for key, value in data.items():
        if key in subs:
            if isinstance(value, Mapping):
                _unknown_keys(subs[key], value, f"{prefix}{key}.", problems)
        elif key not in known:
            problems.append(f"{prefix}{key}: unknown configuration key")


def _walk_problems(inst: Any) -> Iterator[str]:
    cls = type(inst)
    for opt in options(cls):
        problem = _value_problem(opt, getattr(inst, opt.name))
        if problem is not None:
            yield problem
    for name, _ in sub_configs(cls):
        yield from _walk_problems(getattr(inst, name))


def _cross_problems(inst: Any) -> Iterator[str]:
    for name, _ in sub_configs(type(inst)):
        yield from _cross_problems(getattr(inst, name))
    hook = getattr(inst, "cross_check", None)
    if callable(hook):
        yield from hook()


def validate(inst: Any) -> None:
    """Check every value of ``inst`` (nested classes included), then the ``cross_check`` hooks.

    A configuration class may define ``cross_check(self) -> list[str]`` for checks that involve
    several options or the machine; it runs only when every single value is in range, and returns
    one message line per problem. Raises ConfigError listing every problem, one per line.
    """
    problems = list(_walk_problems(inst))
    if not problems:
        problems = list(_cross_problems(inst))
    if problems:
        raise ConfigError("\n".join(problems))


def effective_value(inst: Any, opt: OptionInfo) -> Any:
    """The value ``opt`` has in ``inst``, an unset inheriting option resolved to its source's value."""
    value = getattr(inst, opt.name)
    if value is None and opt.spec.inherits is not None:
        return getattr(inst, opt.spec.inherits)
    return value


def to_dict(inst: Any, *, effective: bool = False) -> dict[str, Any]:
    """``{option name: value}``, with each nested class as a nested dict under its field name.

    ``effective=True`` gives the view to show people (``GET /config``, ``lmcache config check``):
    inherited options resolved (:func:`effective_value`) and secrets that are set replaced by
    ``"***"``. Without it the values are exactly the instance's, and round-trip through
    :func:`from_dict`.
    """
    cls = type(inst)
    out: dict[str, Any] = {}
    for opt in options(cls):
        if not effective:
            out[opt.name] = getattr(inst, opt.name)
            continue
        value = effective_value(inst, opt)
        out[opt.name] = _REDACTED if opt.spec.secret and value is not None else value
    for name, _ in sub_configs(cls):
        out[name] = to_dict(getattr(inst, name), effective=effective)
    return out
