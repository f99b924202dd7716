"""Writes the op table of docs/protocol.md from python/lmcache/protocol/ops.py (the source of truth).

Only the part between the BEGIN/END markers is generated; the rest of the page is hand-written.
Usage: python scripts/gen_protocol_docs.py [--check]
With --check, exits 1 when the committed table is out of date (the tests run this).
"""

from __future__ import annotations

import sys
import types as pytypes
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from lmcache.protocol.ops import OPS, RESERVED_IDS, RETIRED_IDS, FailureMode, KVHandles, OpSpec

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED OP TABLE (scripts/gen_protocol_docs.py) -->"
END = "<!-- END GENERATED OP TABLE -->"


def type_name(tp: Any) -> str:
    if tp is None or tp is type(None):
        return "None"
    if tp == KVHandles:
        return "list[KV handle (Ext 1)]"
    origin = get_origin(tp)
    if origin in (Union, pytypes.UnionType):
        return " \\| ".join(type_name(a) for a in get_args(tp))
    if origin is not None:
        args = get_args(tp)
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return str(getattr(tp, "__name__", tp))


def value_repr(value: Any) -> str:
    v = msgspec.to_builtins(value, builtin_types=(bytes,))
    if isinstance(v, bytes):
        return 'b""' if not v else f"bin({len(v)})"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {value_repr(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value_repr(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def failure_text(op: OpSpec) -> str:
    if op.failure is FailureMode.SILENT:
        return "no reply"
    if op.failure is FailureMode.STREAM_END:
        return "end of stream `[uid, op]`"
    if op.failure is FailureMode.ERROR_FRAME:
        return "error frame (always)"
    value = op.failure_reply("<message>")
    return "void `[uid, op]`" if value is None else f"`{value_repr(value)}`"


def render_table() -> str:
    rows = [
        "| op | ID | arguments (frame order) | reply | kind | failure, old peers | what it does |",
        "|---|---|---|---|---|---|---|",
    ]
    for op in OPS:
        args = ", ".join(f"`{a.name}: {type_name(a.type)}`" for a in op.args) or "–"
        if op.streaming:
            reply = f"stream of `{type_name(op.reply)}`"
        else:
            reply = "void" if op.reply is None else f"`{type_name(op.reply)}`"
        ident = str(op.legacy_id) if op.legacy_id is not None else "name"
        summary = op.summary.replace("|", "\\|")
        rows.append(
            f"| `{op.name}` | {ident} | {args} | {reply} | {op.kind.value} | {failure_text(op)} | {summary} |"
        )
    retired = ", ".join(f"{i} (`{n}`)" for i, n in RETIRED_IDS.items())
    reserved = ", ".join(f"{i} (`{n}`)" for i, n in RESERVED_IDS.items())
    rows.append("")
    rows.append(f"Retired legacy IDs (rejected, never reused): {retired}.")
    rows.append(f"Reserved legacy IDs (rejected as unknown): {reserved}.")
    return "\n".join(rows)


def render(current: str) -> str:
    if BEGIN not in current or END not in current:
        raise SystemExit(f"{DOC} lacks the generated-table markers")
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render_table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    text = render(current)
    if "--check" in argv:
        if current != text:
            print(f"{DOC} is out of date: run python scripts/gen_protocol_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
