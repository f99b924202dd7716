"""Result reports shared by every command: one model, two renderings (terminal table, JSON).

A :class:`Report` is a title and a list of :class:`Section` s; a section is an optional name and
rows of ``(label, value)``. Commands build a report and hand it to :func:`emit`, which honours the
common ``--format``, ``--output`` and ``-q`` options.

Terminal rendering (the layout of LMCache's CLI tables, e.g. ``lmcache ping kvcache``)::

    ======= Ping KV Cache ========
    Status:                     OK
    Round trip time (ms):     3.42
    ==============================

The title is centred in a line of ``=``, each named section starts with its name centred in a line
of ``-``, each row is ``Label:`` on the left and the value right-aligned, and a line of ``=`` ends
the table. The width is ``Report.width`` (48 by default, as LMCache's), widened when a title or
row would not fit, so values always stay aligned. Floats show 2 decimals (3 significant digits
below 0.01) unless a row gives its own format spec; ``None`` shows as ``N/A``.

JSON rendering follows the shape of LMCache's ``--format json`` output (learned from the CLI
reference of LMCache, the seeds of this project, and the public ``lmcache/cli/metrics`` source)::

    {
      "title": "Ping KV Cache",
      "metrics": {
        "status": "OK",
        "round_trip_time_ms": 3.42,
        "l1": {"...": "..."},
        "l2_adapters": [{"...": "..."}, {"...": "..."}]
      }
    }

* Rows of an unnamed section go directly into ``metrics``.
* A named section becomes an object under its key (``Section.key``, else derived from its name).
* Sections that share a ``group`` become a list of objects under that group's key (LMCache's
  ``models`` and ``l2_adapters`` lists in ``describe kvcache``).
* A row's key is ``Row.key``, else derived from its label: lower case, ``%`` as ``pct``, every run
  of other characters as ``_`` (``"Round trip time (ms)"`` gives ``round_trip_time_ms``).
* Values keep their JSON types (no rounding or formatting); tuples become lists, enums their
  values, paths strings; NaN and infinities become ``null`` so the output stays strict JSON.

Output streams: the report goes to stdout (nothing with ``quiet``, which, as LMCache documents for
``-q``, leaves only the exit code); ``--output PATH`` also writes it, in the same format, to PATH
(``quiet`` does not stop that). :class:`Progress` lines go to stdout in terminal mode and to
stderr in JSON mode, so that stdout then holds exactly one JSON document.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from lmcache.errors import StorageIOError

__all__ = [
    "FORMATS",
    "Progress",
    "Report",
    "Row",
    "Section",
    "emit",
    "format_value",
    "label_key",
    "render",
    "render_json",
    "render_terminal",
    "to_json_dict",
]

FORMATS = ("terminal", "json")
DEFAULT_WIDTH = 48


class Row(NamedTuple):
    """A row with an explicit JSON key and/or terminal format spec (e.g. ``".3f"``)."""

    label: str
    value: object
    key: str | None = None
    fmt: str | None = None


@dataclass(frozen=True)
class Section:
    """A group of rows; ``name`` None makes an unnamed section (no header, keys at top level).

    ``key`` is the section's JSON key (default: derived from ``name``); ``group`` puts it in a JSON
    list with the other sections of the same group.
    """

    name: str | None
    rows: Sequence[tuple[str, object] | Row]
    key: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Report:
    """A command's result: a title and its sections, rendered by :func:`render`."""

    title: str
    sections: Sequence[Section]
    width: int = DEFAULT_WIDTH


# --------------------------------------------------------------------------------------------------
# Values and keys
# --------------------------------------------------------------------------------------------------


def _rows(section: Section) -> list[Row]:
    return [row if isinstance(row, Row) else Row(row[0], row[1]) for row in section.rows]


def label_key(label: str) -> str:
    """The JSON key derived from a label: ``"Round trip time (ms)"`` -> ``"round_trip_time_ms"``."""
    text = label.lower().replace("%", " pct ")
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def format_value(value: object, fmt: str | None = None) -> str:
    """A value as shown in the terminal table (one line)."""
    if fmt is not None and value is not None:
        try:
            return format(value, fmt)
        except (TypeError, ValueError):
            pass
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 0.01:
            return f"{value:.3g}"
        return f"{value:.2f}"
    if isinstance(value, enum.Enum):
        return format_value(value.value)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(_jsonable(value), separators=(", ", ": "))
    return " ".join(str(value).splitlines())


def _jsonable(value: object) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def render_terminal(report: Report) -> str:
    """The report as an aligned ASCII table (no trailing newline)."""
    body: list[tuple[str | None, list[tuple[str, str]]]] = []
    width = max(report.width, len(report.title) + 4)
    for section in report.sections:
        cells = [(f"{row.label}:", format_value(row.value, row.fmt)) for row in _rows(section)]
        body.append((section.name, cells))
        if section.name is not None:
            width = max(width, len(section.name) + 4)
        for label, value in cells:
            width = max(width, len(label) + 1 + len(value))
    lines = [f" {report.title} ".center(width, "=")]
    for name, cells in body:
        if name is not None:
            lines.append(f" {name} ".center(width, "-"))
        lines.extend(label + value.rjust(width - len(label)) for label, value in cells)
    lines.append("=" * width)
    return "\n".join(lines)


def _put(target: dict[str, Any], key: str, value: Any, where: str) -> None:
    if key in target:
        raise ValueError(f"report {where}: duplicate JSON key {key!r}")
    target[key] = value


def to_json_dict(report: Report) -> dict[str, Any]:
    """The report as ``{"title": ..., "metrics": {...}}`` (see the module docstring)."""
    metrics: dict[str, Any] = {}
    for section in report.sections:
        values: dict[str, Any] = {}
        for i, row in enumerate(_rows(section)):
            key = row.key or label_key(row.label) or f"value_{i}"
            _put(values, key, _jsonable(row.value), repr(report.title))
        if section.group is not None:
            group = metrics.setdefault(section.group, [])
            if not isinstance(group, list):
                raise ValueError(f"report {report.title!r}: {section.group!r} is both a key and a group")
            group.append(values)
            continue
        section_key = section.key or (label_key(section.name) if section.name is not None else None)
        if section_key is None:
            for key, value in values.items():
                _put(metrics, key, value, repr(report.title))
        else:
            _put(metrics, section_key, values, repr(report.title))
    return {"title": report.title, "metrics": metrics}


def render_json(report: Report) -> str:
    """The report as indented JSON (no trailing newline)."""
    return json.dumps(to_json_dict(report), indent=2, allow_nan=False)


def render(report: Report, fmt: str) -> str:
    """Render in ``fmt``, one of :data:`FORMATS`."""
    if fmt == "terminal":
        return render_terminal(report)
    if fmt == "json":
        return render_json(report)
    raise ValueError(f"unknown report format {fmt!r}; must be one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def emit(report: Report, fmt: str, output_path: str | os.PathLike[str] | None, quiet: bool) -> None:
    """Print the report to stdout (unless ``quiet``) and write it to ``output_path`` when given.

    Both get the same format. Raises StorageIOError naming the path when the file cannot be written.
    """
    text = render(report, fmt) + "\n"
    if not quiet:
        sys.stdout.write(text)
        sys.stdout.flush()
    if output_path is not None:
        path = os.fspath(output_path)
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StorageIOError(f"--output {path}: cannot write: {reason}") from exc


class Progress:
    """Progress lines of a running command: stdout in terminal mode, stderr in JSON mode, none if quiet."""

    def __init__(self, fmt: str, quiet: bool) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown report format {fmt!r}")
        self.fmt = fmt
        self.quiet = quiet

    def line(self, text: str) -> None:
        if self.quiet:
            return
        stream = sys.stderr if self.fmt == "json" else sys.stdout
        stream.write(text + "\n")
        stream.flush()
