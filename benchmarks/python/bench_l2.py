"""L2 (fs) benchmarks of benchmarks/run_l2.sh: our ``lmcache bench l2`` next to LMCache 0.5.6's,
and the machine's limit for the same workload, on one filesystem, in one run.

    bench_l2.py limit --bench-fs PATH --dir DIR --round I --out FILE [--threads N]
        the physical limit: build/bench/bench_fs (128 new files x 256 KiB with write()+close, then
        read back warm with read(); median of its reps); appends one JSON line;
    bench_l2.py bench --impl ours|lmcache --dir DIR --round I --out FILE
        ``lmcache bench l2`` on {"type":"fs_native","base_path":DIR/<fresh>} with 128 keys x 256 KiB
        per round (--rounds R --warmup-rounds 1 --lookup-max-hit-rate 1: store, lookup of stored
        keys, load), then ``--only lookup`` with hit rate 0 (lookups of absent keys), both with
        ``--format json --output``; ours runs with the system Python and our package on PYTHONPATH,
        0.5.6 from its venv without PYTHONPATH (LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1); the
        directory is left for run_l2.sh to remove at the end; appends one JSON line;
    bench_l2.py summarize FILE [--markdown]
        medians across rounds (of each run's p50 round), GB/s, ratios ours / 0.5.6 and against
        the limit, and the targets of issue 4.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OURS = "ours"
THEIRS = "lmcache"
KEYS = 128
SIZE_KB = 256
ROUND_BYTES = KEYS * SIZE_KB * 1024
LMC_ENV = {"LMCACHE_TRACK_USAGE": "false", "DO_NOT_TRACK": "1", "LMCACHE_DISABLE_BANNER": "1"}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return ""


def cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return None
    return round(busy / total * (os.cpu_count() or 1), 2)


def append(out: str, rec: dict[str, Any]) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def fs_type(path: str) -> str:
    """The filesystem type of ``path`` (from /proc/mounts, longest matching mount point)."""
    real = os.path.realpath(path)
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1]
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, kind = mnt, f"{parts[2]} ({parts[0]} on {mnt})"
    return kind


# ----------------------------------------------------------------------------------------------
# commands


def cmd_limit(a: argparse.Namespace) -> int:
    before = cpu_ticks()
    load0 = loadavg()
    os.sync()  # every run starts with no dirty pages of earlier runs (writeback throttling)
    proc = subprocess.run(
        [a.bench_fs, a.dir, str(KEYS), str(SIZE_KB), str(a.reps), str(a.threads)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    m = re.search(r"^RESULT_JSON (.*)$", proc.stdout, re.M)
    assert m, proc.stdout
    res = json.loads(m.group(1))
    rec = {
        "kind": "limit",
        "round": a.round,
        "time": now(),
        "threads": a.threads,
        "write_gbps": res["write_gbps"],
        "read_gbps": res["read_gbps"],
        "fs": fs_type(a.dir),
        "load_before": load0,
        "load_after": loadavg(),
        "busy_cores": busy_cores(before, cpu_ticks()),
    }
    append(a.out, rec)
    print(
        f"  limit   {a.threads} thread(s): write {res['write_gbps']:.2f} GB/s, "
        f"warm read {res['read_gbps']:.2f} GB/s  (load {load0.split()[0]})"
    )
    return 0


def _command(
    impl: str, venv: str, spec: str, extra: list[str], output: str
) -> tuple[list[str], dict[str, str]]:
    flags = [
        "bench",
        "l2",
        "--l2-adapter",
        spec,
        "--num-keys",
        str(KEYS),
        "--in-flight",
        "1",
        "--data-size-kb",
        str(SIZE_KB),
        *extra,
        "--format",
        "json",
        "--output",
        output,
        "-q",
    ]
    if impl == OURS:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT / "python")
        return [sys.executable, "-m", "lmcache", *flags], env
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LMCACHE_NATIVE_DIR")}
    env.update(LMC_ENV)
    return [str(Path(venv) / "bin" / "lmcache"), *flags], env


def _run_one(impl: str, venv: str, spec: str, extra: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        output = f.name
    try:
        cmd, env = _command(impl, venv, spec, extra, output)
        os.sync()  # as in cmd_limit
        before = cpu_ticks()
        load0 = loadavg()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{impl} bench l2 exited {proc.returncode}: {proc.stderr[-2000:]}")
        metrics = json.loads(Path(output).read_text())["metrics"]
    finally:
        with_suppress_unlink(output)
    ops: dict[str, Any] = {}
    for key, sec in metrics.items():
        if not key.startswith("op_"):
            continue
        ops[sec["operation"].lower()] = {
            "p50_ms": sec["duration_p50_ms"],
            "avg_ms": sec["duration_avg_ms"],
            "min_ms": sec["duration_min_ms"],
            "max_ms": sec["duration_max_ms"],
            "total_keys": sec["total_keys"],
            "total_success": sec["total_success"],
            "rounds_timed_out": sec["rounds_timed_out"],
        }
    return {
        "ops": ops,
        "wall_s": round(wall, 2),
        "load_before": load0,
        "load_after": loadavg(),
        "busy_cores": busy_cores(before, cpu_ticks()),
    }


def with_suppress_unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def cmd_bench(a: argparse.Namespace) -> int:
    base = Path(a.dir) / f"{a.impl}-r{a.round}-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    # The directory is left in place: run_l2.sh removes DIR at the end. Deleting files between
    # runs would slow down the file creation of the next runs (ext4's inode allocator skips
    # recently deleted inodes, reading inode table blocks to find them).
    spec = json.dumps({"type": "fs_native", "base_path": str(base)}, separators=(",", ":"))
    common = ["--rounds", str(a.rounds), "--warmup-rounds", "1"]
    main = _run_one(a.impl, a.lmcache_venv, spec, [*common, "--lookup-max-hit-rate", "1"])
    miss = _run_one(a.impl, a.lmcache_venv, spec, [*common, "--only", "lookup", "--lookup-max-hit-rate", "0"])
    rec = {
        "kind": "bench",
        "impl": a.impl,
        "round": a.round,
        "time": now(),
        "rounds": a.rounds,
        "fs": fs_type(a.dir),
        "store": main["ops"]["store"],
        "lookup_hit": main["ops"]["lookup"],
        "load": main["ops"]["load"],
        "lookup_miss": miss["ops"]["lookup"],
        "wall_s": main["wall_s"],
        "load_before": main["load_before"],
        "load_after": main["load_after"],
        "busy_cores": main["busy_cores"],
    }
    append(a.out, rec)
    s, lk, ld, lm = rec["store"], rec["lookup_hit"], rec["load"], rec["lookup_miss"]
    print(
        f"  {a.impl:<8} store p50 {s['p50_ms']:.2f} ms ({_gbps(s['p50_ms']):.2f} GB/s), "
        f"load p50 {ld['p50_ms']:.2f} ms ({_gbps(ld['p50_ms']):.2f} GB/s), "
        f"lookup p50 {lk['p50_ms']:.3f} ms hit / {lm['p50_ms']:.3f} ms miss, "
        f"ok {s['total_success']}/{s['total_keys']} {ld['total_success']}/{ld['total_keys']} "
        f"{lk['total_success']}/{lk['total_keys']}  (load {rec['load_before'].split()[0]})"
    )
    return 0


def _gbps(ms: float) -> float:
    return ROUND_BYTES / (ms / 1000.0) / 1e9 if ms > 0 else float("nan")


# ----------------------------------------------------------------------------------------------
# summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(path: str) -> dict[str, Any]:
    recs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    limits = [r for r in recs if r["kind"] == "limit"]
    out: dict[str, Any] = {"fs": next((r["fs"] for r in recs if "fs" in r), "?")}
    for threads in sorted({r["threads"] for r in limits}):
        lim = [r for r in limits if r["threads"] == threads]
        out[f"limit_write_gbps_{threads}t"] = _median([r["write_gbps"] for r in lim])
        out[f"limit_read_gbps_{threads}t"] = _median([r["read_gbps"] for r in lim])
    for impl in (OURS, THEIRS):
        runs = [r for r in recs if r["kind"] == "bench" and r["impl"] == impl]
        out[impl] = {
            "runs": len(runs),
            **{
                f"{op}_p50_ms": _median([r[op]["p50_ms"] for r in runs])
                for op in ("store", "load", "lookup_hit", "lookup_miss")
            },
            **{
                f"{op}_p50_range": _range([r[op]["p50_ms"] for r in runs])
                for op in ("store", "load", "lookup_hit", "lookup_miss")
            },
            "failures": sum(
                r[op]["total_keys"] - r[op]["total_success"]
                for r in runs
                for op in ("store", "load", "lookup_hit")
            ),
        }
    loads = [float(r["load_before"].split()[0]) for r in recs if r.get("load_before")]
    out["loadavg_range"] = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
    return out


def _range(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}" if values else "?"


def cmd_summarize(a: argparse.Namespace) -> int:
    s = summarize(a.file)
    ours, theirs = s[OURS], s[THEIRS]
    wl = s.get("limit_write_gbps_1t", float("nan"))
    rl = s.get("limit_read_gbps_1t", float("nan"))
    rows = []
    for name, op, limit in (("store", "store", wl), ("load", "load", rl)):
        o, t = _gbps(ours[f"{op}_p50_ms"]), _gbps(theirs[f"{op}_p50_ms"])
        rows.append(
            (
                f"{name}, GB/s (p50 round of 128 x 256 KiB)",
                f"{o:.2f} ({ours[f'{op}_p50_ms']:.2f} ms)",
                f"{t:.2f} ({theirs[f'{op}_p50_ms']:.2f} ms)",
                f"{o / t:.2f}x",
                f"{o / limit:.2f} of {limit:.2f} GB/s "
                f"({'write' if op == 'store' else 'warm read'}, 1 thread); 0.5.6: {t / limit:.2f}",
            )
        )
    for name, op in (
        ("lookup of 128 stored keys, ms (p50)", "lookup_hit"),
        ("lookup of 128 absent keys, ms (p50)", "lookup_miss"),
    ):
        o, t = ours[f"{op}_p50_ms"], theirs[f"{op}_p50_ms"]
        rows.append((name, f"{o:.3f}", f"{t:.3f}", f"{t / o:.2f}x faster" if o > 0 else "-", ""))
    if a.markdown:
        print("| metric | ours | LMCache 0.5.6 | ours vs 0.5.6 | vs physical limit |")
        print("|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        for r in rows:
            print(f"{r[0]:<42} ours {r[1]:<20} 0.5.6 {r[2]:<20} {r[3]:<12} {r[4]}")
    print()
    print(f"filesystem: {s['fs']}; load average during the runs: {s['loadavg_range']}")
    for k, v in s.items():
        if k.startswith("limit_"):
            print(f"{k}: {v:.3f}")
    print(
        f"runs: ours {ours['runs']}, 0.5.6 {theirs['runs']}; "
        f"failed keys: ours {ours['failures']}, 0.5.6 {theirs['failures']}"
    )
    print(
        "spread of the per-run p50 (ms): ours "
        + ", ".join(
            f"{op} {ours[op + '_p50_range']}" for op in ("store", "load", "lookup_hit", "lookup_miss")
        )
    )
    print(
        "                                0.5.6 "
        + ", ".join(
            f"{op} {theirs[op + '_p50_range']}" for op in ("store", "load", "lookup_hit", "lookup_miss")
        )
    )
    st, ld = _gbps(ours["store_p50_ms"]), _gbps(ours["load_p50_ms"])
    checks = [
        ("store >= 1.5x 0.5.6", st / _gbps(theirs["store_p50_ms"]) >= 1.5),
        ("load >= 1.5x 0.5.6", ld / _gbps(theirs["load_p50_ms"]) >= 1.5),
        ("store >= 0.7x buffered write", st / wl >= 0.7),
        ("load >= 0.7x warm read", ld / rl >= 0.7),
        ("lookup of 128 keys <= 0.3 ms (hits)", ours["lookup_hit_p50_ms"] <= 0.3),
        ("lookup of 128 keys <= 0.3 ms (misses)", ours["lookup_miss_p50_ms"] <= 0.3),
    ]
    print("targets (issue 4): " + "; ".join(f"{n}: {'met' if ok else 'MISSED'}" for n, ok in checks))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lim = sub.add_parser("limit")
    lim.add_argument("--bench-fs", required=True)
    lim.add_argument("--dir", required=True)
    lim.add_argument("--round", type=int, default=1)
    lim.add_argument("--reps", type=int, default=5)
    lim.add_argument("--threads", type=int, default=1)
    lim.add_argument("--out", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--impl", choices=(OURS, THEIRS), required=True)
    b.add_argument("--dir", required=True)
    b.add_argument("--round", type=int, default=1)
    b.add_argument("--rounds", type=int, default=5, help="measured rounds per invocation")
    b.add_argument("--out", required=True)
    b.add_argument("--lmcache-venv", default="/opt/lmcache-0.5.6-venv")
    z = sub.add_parser("summarize")
    z.add_argument("file")
    z.add_argument("--markdown", action="store_true")
    a = p.parse_args(argv)
    return {"limit": cmd_limit, "bench": cmd_bench, "summarize": cmd_summarize}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
