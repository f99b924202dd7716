"""Collects and summarises the core benchmark results of benchmarks/run_core.sh.

Standard library only (runs with the system Python, outside both venvs).

    core_results.py record --out FILE --impl IMPL --pair NAME --iteration I \\
        --loadavg-before "..." --rc N --cmd "..." < bench-output
        appends one JSON line per "RESULT_JSON {...}" line of the output (or one error line);
    core_results.py summarize FILE
        prints medians across iterations, ours next to LMCache 0.5.6, with ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

OURS = "ours"
THEIRS = "lmcache-0.5.6"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return ""


def record(args: argparse.Namespace) -> int:
    text = sys.stdin.read()
    lines = [ln[len("RESULT_JSON ") :] for ln in text.splitlines() if ln.startswith("RESULT_JSON ")]
    base = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "iteration": args.iteration,
        "impl": args.impl,
        "pair": args.pair,
        "cmd": args.cmd,
        "rc": args.rc,
        "loadavg_before": args.loadavg_before,
        "loadavg_after": loadavg(),
    }
    out: list[dict[str, Any]] = []
    for raw in lines:
        try:
            out.append({**base, "result": json.loads(raw)})
        except json.JSONDecodeError as e:
            out.append({**base, "error": f"bad RESULT_JSON: {e}", "raw": raw})
    if not out:
        out.append({**base, "error": f"no RESULT_JSON line (exit code {args.rc})"})
    with open(args.out, "a") as f:
        for rec in out:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return 0


def _get(d: Any, path: str) -> float | None:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return float(d) if isinstance(d, (int, float)) else None


def _median(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


# (label, unit, pair, ours metric, LMCache metric, higher_is_better, physical-limit metric of ours)
ROWS: list[tuple[str, str, str, str, str, bool, str | None]] = [
    (
        "alloc+free 256 KiB vs AddressManager",
        "M pairs/s",
        "allocator",
        "pair_mpairs_per_s.median",
        "address_manager_pair_mpairs_per_s.median",
        True,
        None,
    ),
    (
        "alloc+free 256 KiB vs MixedMemoryAllocator",
        "M pairs/s",
        "allocator",
        "pair_mpairs_per_s.median",
        "mixed_allocator_pair_mpairs_per_s.median",
        True,
        None,
    ),
    (
        "churn, 1024 live vs AddressManager",
        "M pairs/s",
        "allocator",
        "churn_mpairs_per_s.median",
        "address_manager_churn_mpairs_per_s.median",
        True,
        None,
    ),
    (
        "churn, 1024 live vs MixedMemoryAllocator",
        "M pairs/s",
        "allocator",
        "churn_mpairs_per_s.median",
        "mixed_allocator_churn_mpairs_per_s.median",
        True,
        None,
    ),
    ("frag mixed: failures", "count", "allocator", "frag_mixed.failures", "frag_mixed.failures", False, None),
    (
        "frag mixed: failures w/ enough free",
        "count",
        "allocator",
        "frag_mixed.failures_with_enough_free_bytes",
        "frag_mixed.failures_with_enough_free_bytes",
        False,
        None,
    ),
    (
        "frag mixed: largest/free",
        "ratio",
        "allocator",
        "frag_mixed.largest_over_free",
        "frag_mixed.largest_over_free",
        True,
        None,
    ),
    (
        "frag mixed: free blocks",
        "count",
        "allocator",
        "frag_mixed.num_free_blocks",
        "frag_mixed.num_free_blocks",
        False,
        None,
    ),
    (
        "frag mixed: attempts/s",
        "M/s",
        "allocator",
        "frag_mixed.mops_per_s",
        "frag_mixed.mops_per_s",
        True,
        None,
    ),
    ("frag fixed: failures", "count", "allocator", "frag_fixed.failures", "frag_fixed.failures", False, None),
    *[
        row
        for op in ("reserve_write", "finish_write", "reserve_read", "finish_read")
        for row in (
            (
                f"{op} (1 key/call, 2 threads)",
                "ops/s",
                "index",
                f"{op}.ops_per_s",
                f"{op}.ops_per_s",
                True,
                None,
            ),
            (f"{op} p50", "ns", "index", f"{op}.p50_ns", f"{op}.p50_ns", False, None),
            (f"{op} p99", "ns", "index", f"{op}.p99_ns", f"{op}.p99_ns", False, None),
        )
    ],
    (
        "host bytes per resident object (LRU)",
        "B",
        "metadata",
        "bytes_per_object",
        "bytes_per_object",
        False,
        None,
    ),
    (
        "plain copy 32 MiB (ours memcpy | numpy)",
        "GB/s",
        "copy",
        "memcpy_gbps.median",
        "numpy_copyto_gbps.median",
        True,
        "memcpy_gbps.median",
    ),
    (
        "plain copy 32 MiB (ours memcpy | torch)",
        "GB/s",
        "copy",
        "memcpy_gbps.median",
        "torch_copy_gbps.median",
        True,
        "memcpy_gbps.median",
    ),
    (
        "put 32 MiB: arena put | L1Manager put",
        "GB/s",
        "copy",
        "arena_gbps.median",
        "l1_put_gbps.median",
        True,
        "memcpy_gbps.median",
    ),
    (
        "put 32 MiB: arena put | L1 put, torch 1T",
        "GB/s",
        "copy",
        "arena_gbps.median",
        "l1_put_1t_gbps.median",
        True,
        "memcpy_gbps.median",
    ),
    (
        "put 32 MiB: arena put | allocator put",
        "GB/s",
        "copy",
        "arena_gbps.median",
        "alloc_put_gbps.median",
        True,
        "memcpy_gbps.median",
    ),
]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def summarize(args: argparse.Namespace) -> int:
    recs: list[dict[str, Any]] = []
    with open(args.file) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    errors = []
    loads: list[float] = []
    for r in recs:
        if "error" in r or "error" in r.get("result", {}):
            errors.append(
                f"{r['impl']} {r['pair']} #{r['iteration']}: {r.get('error') or r['result']['error']}"
            )
            continue
        by[(r["pair"], r["impl"])].append(r["result"])
        for key in ("loadavg_before", "loadavg_after"):
            if r.get(key):
                loads.append(float(r[key].split()[0]))
    iters = max((r["iteration"] for r in recs), default=0)
    print(f"Core benchmarks: medians of {iters} alternating runs per side ({args.file})")
    if loads:
        print(f"1-min load average during the runs: {min(loads):.2f} .. {max(loads):.2f} (2 cores)")
    header = ["metric", "unit", "ours", "LMCache", "ours/LMCache", "ours better by", "ours/phys", "LMC/phys"]
    table: list[list[str]] = []
    for label, unit, pair, m_ours, m_theirs, higher, phys in ROWS:
        o = _median(_get(r, m_ours) for r in by[(pair, OURS)])
        t = _median(_get(r, m_theirs) for r in by[(pair, THEIRS)])
        if o is None and t is None:
            continue
        ratio = o / t if (o is not None and t) else None
        better = None
        if o is not None and t is not None and o > 0 and t > 0:
            better = o / t if higher else t / o
        p = _median(_get(r, phys) for r in by[(pair, OURS)]) if phys else None
        table.append(
            [
                label,
                unit,
                _fmt(o),
                _fmt(t),
                _fmt(ratio),
                f"{better:.3g}x" if better is not None else "-",
                _fmt(o / p) if (p and o is not None) else "-",
                _fmt(t / p) if (p and t is not None) else "-",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print(
        "  ".join(
            h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for row in table:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print("ours better by: how many times ours beats LMCache (>1) or loses (<1), direction-aware.")
    print("phys: physical limit = our single-thread memcpy of 32 MiB between pre-faulted buffers, same run.")
    if errors:
        print("errors:")
        for e in errors:
            print("  " + e)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd_name", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("--impl", required=True)
    r.add_argument("--pair", required=True)
    r.add_argument("--iteration", type=int, required=True)
    r.add_argument("--loadavg-before", default="")
    r.add_argument("--rc", type=int, default=0)
    r.add_argument("--cmd", default="")
    s = sub.add_parser("summarize")
    s.add_argument("file")
    args = p.parse_args(argv)
    return record(args) if args.cmd_name == "record" else summarize(args)


if __name__ == "__main__":
    sys.exit(main())
