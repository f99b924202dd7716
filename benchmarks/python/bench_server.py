"""Server benchmarks of benchmarks/run_server.sh: our server next to the real LMCache 0.5.6, in one run.

Runs with the system Python and our package on ``PYTHONPATH`` (for ``lmcache.client.mp``); every
LMCache 0.5.6 process (its server and its ``lmcache bench server`` client) runs from its own venv
with ``PYTHONPATH`` removed, so it imports the real 0.5.6 and never our package.

    bench_server.py bench --impl ours|lmcache --mode lmcache_driven|engine_driven --round I --out FILE
        starts a FRESH server (ours: --port 0, ports read from its "ready" log line; 0.5.6: free
        ports, --supported-transfer-mode auto, and for engine_driven an explicit --shm-name),
        waits for GET /healthcheck, runs 0.5.6's ``lmcache bench server --mode cpu`` against it
        (``--client ours``: our own ``python -m lmcache bench server``, a leaner client, to
        separate server time from client time), stops the server, removes the /dev/shm
        segments this run left (only those of the processes it started), and appends one JSON
        line; it also records the server's CPU time and page faults while the client ran
        (/proc/<pid>/stat) and the client's (wait4 rusage, start-up included);
    bench_server.py startup --impl ours|lmcache --round I --out FILE
        launches a server with --l1-size-gb 2 on free ports, polls ZMQ ``noop`` (MPClient) until
        the first answer, then samples the server's RSS (its process tree, /proc/<pid>/status)
        a few seconds later; appends one JSON line;
    bench_server.py memcpy --bench-copy PATH --round I --out FILE
        the physical floor of a 64 MiB copy: build/bench/bench_copy (glibc memcpy, pre-faulted
        buffers, one thread) and numpy ``copyto`` of 64 MiB, same run; appends one JSON line;
    bench_server.py summarize FILE [--markdown]
        medians across rounds, ratios ours / LMCache, store and retrieve against the floor,
        and the targets of issue 3;
    bench_server.py shm-clean
        removes ``lmcache_kv_<pid>_*`` / ``lmcache_l1_pool_<pid>_*`` segments of dead pids.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OURS = "ours"
THEIRS = "lmcache"
MiB = 1 << 20
FLOOR_BYTES = 64 * MiB  # one bench request: 512 tokens = 2 chunks of 32 MiB
SHM = Path("/dev/shm")
LMC_ENV = {"LMCACHE_TRACK_USAGE": "false", "DO_NOT_TRACK": "1", "LMCACHE_DISABLE_BANNER": "1"}
READY_RE = re.compile(r"ZMQ tcp://127\.0\.0\.1:(\d+), HTTP http://127\.0\.0\.1:(\d+)")

# ----------------------------------------------------------------------------------------------
# small helpers


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return ""


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Average number of busy cores between two cpu_ticks() samples (all processes, ours too)."""
    dt = after[1] - before[1]
    if dt <= 0:
        return None
    return round((after[0] - before[0]) / dt * (os.cpu_count() or 1), 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (walks /proc/*/stat)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parent[int(d.name)] = ppid
    out: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def proc_counters(pid: int) -> dict[str, float]:
    """CPU seconds (all threads) and page faults of one process so far, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return {}
    f = stat[stat.rindex(")") + 2 :].split()
    hz = os.sysconf("SC_CLK_TCK")
    # fields after the command: state(0) ppid(1) ... minflt(7) cminflt(8) majflt(9) cmajflt(10)
    # utime(11) stime(12)
    return {"cpu_s": (int(f[11]) + int(f[12])) / hz, "minflt": int(f[7]), "majflt": int(f[9])}


def counters_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 3) for k in before if k in after}


def status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def tree_rss(pid: int) -> dict[str, Any]:
    """VmRSS (and its parts) of ``pid`` plus its descendants, in bytes."""
    pids = [pid, *children_of(pid)]
    total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    threads = 0
    per_pid = {}
    for p in pids:
        st = status_kb(p)
        if not st:
            continue
        per_pid[str(p)] = st.get("VmRSS", 0) * 1024
        threads += st.get("Threads", 0)
        for k in total:
            total[k] += st.get(k, 0) * 1024
    return {
        "rss_bytes": total["VmRSS"],
        "rss_anon_bytes": total["RssAnon"],
        "rss_file_bytes": total["RssFile"],
        "rss_shmem_bytes": total["RssShmem"],
        "threads": threads,
        "processes": len(per_pid),
        "rss_per_pid": per_pid,
    }


def list_shm() -> set[str]:
    try:
        return {p.name for p in SHM.iterdir()}
    except OSError:
        return set()


SEG_RE = re.compile(r"^lmcache_(?:kv|l1_pool)_(\d+)_")


def shm_clean_dead() -> list[str]:
    """Remove lmcache_kv_<pid>_* and lmcache_l1_pool_<pid>_* whose pid is gone."""
    removed = []
    for name in sorted(list_shm()):
        m = SEG_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                (SHM / name).unlink()
                removed.append(name)
    return removed


def append(out: str, rec: dict[str, Any]) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def lmc_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(LMC_ENV)
    return env


def ours_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "python")
    return env


# ----------------------------------------------------------------------------------------------
# servers


class Server:
    """A server process we started, in its own session (so its whole group can be signalled)."""

    def __init__(
        self,
        impl: str,
        venv: Path,
        l1_gb: float,
        workdir: Path,
        *,
        port: int = 0,
        http_port: int = 0,
        shm_name: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.impl = impl
        self.log_path = workdir / f"server-{impl}.log"
        if impl == OURS:
            cmd = [sys.executable, "-m", "lmcache", "server"]
            env = ours_env()
        else:
            cmd = [str(venv / "bin" / "lmcache"), "server"]
            env = lmc_env()
            port = port or free_port()
            http_port = http_port or free_port()
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--http-host", "127.0.0.1"]
        cmd += ["--http-port", str(http_port), "--l1-size-gb", f"{l1_gb:g}", "--eviction-policy", "LRU"]
        if impl == THEIRS:
            cmd += ["--supported-transfer-mode", "auto"]
        if shm_name:
            cmd += ["--shm-name", shm_name]
        cmd += extra or []
        self.cmd = cmd
        self.port = port
        self.http_port = http_port
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.t_launch = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True
        )
        self.pid = self.proc.pid
        self.ready_s: float | None = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Ports known (ours: from the ready line) and GET /healthcheck answered 200."""
        deadline = self.t_launch + timeout
        while self.port == 0 or self.http_port == 0:
            m = READY_RE.search(self.log_text())
            if m:
                self.port, self.http_port = int(m.group(1)), int(m.group(2))
                break
            self.check(deadline)
            time.sleep(0.01)
        url = f"http://127.0.0.1:{self.http_port}/healthcheck"
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
            self.check(deadline)
            time.sleep(0.05)
        self.ready_s = time.monotonic() - self.t_launch
        return self.ready_s

    def check(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.impl} server exited ({self.proc.returncode}): {self.log_text()[-2000:]}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{self.impl} server not ready in time: {self.log_text()[-2000:]}")

    def stop(self) -> dict[str, Any]:
        """SIGINT to the group, then SIGTERM, then SIGKILL; every descendant checked by pid."""
        pids = [self.pid, *children_of(self.pid)]
        t0 = time.monotonic()
        how = "already exited"
        for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            how = sig.name
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        for p in pids[1:]:
            if pid_alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        self._log.close()
        return {
            "stopped_by": how,
            "stop_s": round(time.monotonic() - t0, 3),
            "returncode": self.proc.returncode,
        }


def cleanup_segments(before: set[str], mine: Iterable[re.Pattern[str]]) -> dict[str, list[str]]:
    """Segments that appeared during the run: remove those of our processes, report the rest."""
    removed, foreign = [], []
    pats = list(mine)
    for name in sorted(list_shm() - before):
        if any(p.match(name) for p in pats):
            with contextlib.suppress(OSError):
                (SHM / name).unlink()
            removed.append(name)
        else:
            foreign.append(name)
    return {"shm_removed": removed, "shm_foreign": foreign}


# ----------------------------------------------------------------------------------------------
# bench


BENCH_KEYS = {
    "cold_lookup_p50_ms": ("cold_lookup", "cold_lookup_p50"),
    "store_p50_ms": ("cold_store", "cold_store_p50"),
    "warm_lookup_p50_ms": ("warm_lookup", "warm_lookup_p50"),
    "retrieve_p50_ms": ("warm_retrieve", "warm_retrieve_p50"),
    "store_p99_ms": ("cold_store", "cold_store_p99"),
    "retrieve_p99_ms": ("warm_retrieve", "warm_retrieve_p99"),
}


def wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, dict[str, float]]:
    """Wait for ``proc`` (its group is killed after ``timeout``); returns (rc, its rusage)."""

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    rc = 124 if proc.returncode == -signal.SIGKILL else proc.returncode
    usage = {"cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "minflt": ru.ru_minflt, "majflt": ru.ru_majflt}
    return rc, usage


def cmd_bench(a: argparse.Namespace) -> int:
    venv = Path(a.lmcache_venv)
    workdir = Path(tempfile.mkdtemp(prefix="lmc-srvbench-"))
    shm_before = list_shm()
    rec: dict[str, Any] = {
        "ts": now(),
        "kind": "bench",
        "impl": a.impl,
        "mode": a.mode,
        "client": a.client,
        "round": a.round,
        "loadavg_before": loadavg(),
    }
    shm_name = None
    if a.impl == THEIRS and a.mode == "engine_driven":
        shm_name = f"srvbench_{os.getpid()}_{a.round}"
    pats = [re.compile(r"^lmcache_l1_pool_srvbench_" + str(os.getpid()) + "_")]
    server: Server | None = None
    t_start = time.monotonic()
    ticks0 = cpu_ticks()
    try:
        server = Server(
            a.impl, venv, a.l1_size_gb, workdir, shm_name=shm_name, extra=shlex.split(a.server_args)
        )
        pats.append(re.compile(rf"^lmcache_l1_pool_{server.pid}_"))
        rec["server_cmd"] = " ".join(server.cmd)
        rec["server_ready_s"] = round(server.wait_ready(), 3)
        out_json = workdir / "bench.json"
        if a.client == THEIRS:
            cmd, client_env = [str(venv / "bin" / "lmcache")], lmc_env()
        else:
            cmd, client_env = [sys.executable, "-m", "lmcache"], ours_env()
        cmd += ["bench", "server", "--mode", "cpu"]
        cmd += ["--transfer-mode", a.mode, "--rpc-url", f"tcp://127.0.0.1:{server.port}"]
        cmd += ["--url", f"http://127.0.0.1:{server.http_port}", "--start", str(a.start), "--end", str(a.end)]
        cmd += ["--interval", f"{a.interval:g}", "--format", "json", "--output", str(out_json)]
        rec["bench_cmd"] = " ".join(cmd)
        rec["loadavg_bench_start"] = loadavg()
        ticks1 = cpu_ticks()
        srv0 = proc_counters(server.pid)
        t_bench = time.monotonic()
        with open(workdir / "bench.log", "wb") as log:
            client = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=client_env, cwd=workdir, start_new_session=True
            )
            pats.append(re.compile(rf"^lmcache_kv_{client.pid}_"))
            rec["rc"], rec["client_rusage"] = wait_with_rusage(client, a.timeout)
        rec["bench_wall_s"] = round(time.monotonic() - t_bench, 2)
        rec["server_during_bench"] = counters_delta(srv0, proc_counters(server.pid))
        rec["busy_cores_during_bench"] = busy_cores(ticks1, cpu_ticks())
        rec["loadavg_bench_end"] = loadavg()
        rec["server_after_bench"] = tree_rss(server.pid)
        log_text = server.log_text()
        rec["server_pickle_fallback"] = "pickle" in log_text.lower()
        try:
            metrics = json.loads(out_json.read_text())["metrics"]
            res = {"pass_rate": metrics["results"]["pass_rate"]}
            for k, (sect, key) in BENCH_KEYS.items():
                res[k] = metrics.get(sect, {}).get(key)
            rec["result"] = res
            rec["metrics"] = metrics
        except (OSError, KeyError, ValueError) as e:
            rec["error"] = f"no bench result: {e}"
            rec["bench_tail"] = (workdir / "bench.log").read_text(errors="replace")[-3000:]
    except Exception as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        if server is not None:
            rec["stop"] = server.stop()
            rec["server_log_tail"] = server.log_text()[-1500:]
        rec.update(cleanup_segments(shm_before, pats))
        rec["wall_s"] = round(time.monotonic() - t_start, 2)
        rec["busy_cores_total"] = busy_cores(ticks0, cpu_ticks())
        rec["loadavg_after"] = loadavg()
        append(a.out, rec)
        if a.keep_logs:
            dst = Path(a.keep_logs) / f"r{a.round}-{a.impl}-{a.mode}-client-{a.client}"
            shutil.copytree(workdir, dst, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    r = rec.get("result", {})
    print(
        f"  [{a.round}] bench {a.impl:7s} {a.mode:14s} client {a.client:7s} rc={rec.get('rc')} "
        f"pass={r.get('pass_rate')} "
        f"lookup={r.get('cold_lookup_p50_ms')}/{r.get('warm_lookup_p50_ms')} ms "
        f"store={r.get('store_p50_ms')} "
        f"retrieve={r.get('retrieve_p50_ms')} ms  {rec['wall_s']:.0f}s load {rec['loadavg_after'].split()[0]}"
        + (f"  ERROR {rec['error']}" if "error" in rec else "")
    )
    return 0


# ----------------------------------------------------------------------------------------------
# start-up and idle RSS


def cmd_startup(a: argparse.Namespace) -> int:
    import zmq

    from lmcache.client.mp import MPClient
    from lmcache.protocol import framing

    venv = Path(a.lmcache_venv)
    workdir = Path(tempfile.mkdtemp(prefix="lmc-srvstart-"))
    shm_before = list_shm()
    port, http_port = free_port(), free_port()
    while http_port == port:
        http_port = free_port()
    rec: dict[str, Any] = {
        "ts": now(),
        "kind": "startup",
        "impl": a.impl,
        "round": a.round,
        "l1_size_gb": a.l1_size_gb,
        "loadavg_before": loadavg(),
    }
    ctx = zmq.Context()
    ctx.setsockopt(zmq.RECONNECT_IVL, 5)  # default for new sockets: retry the connect every 5 ms
    client = MPClient(f"tcp://127.0.0.1:{port}", context=ctx, timeout=0.05)
    pats: list[re.Pattern[str]] = []
    server: Server | None = None
    ticks0 = cpu_ticks()
    try:
        server = Server(a.impl, venv, a.l1_size_gb, workdir, port=port, http_port=http_port)
        pats.append(re.compile(rf"^lmcache_l1_pool_{server.pid}_"))
        rec["server_cmd"] = " ".join(server.cmd)
        uid = 0
        first: float | None = None
        while first is None:
            uid += 1
            client.send_raw(framing.encode_request(uid, "noop", []))
            frames = client.recv_raw(0.02)
            if frames is not None:
                reply = framing.decode_reply(frames, "noop")
                first = time.monotonic() - server.t_launch
                rec["noop_reply"] = repr(getattr(reply, "value", reply))
                break
            server.check(server.t_launch + 180)
        rec["first_noop_s"] = round(first, 4)
        rec["healthcheck_s"] = round(server.wait_ready(), 4)
        samples = {}
        for after in a.rss_after:
            delay = server.t_launch + first + after - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            samples[f"{after:g}"] = tree_rss(server.pid)
        rec["rss"] = samples
        main = samples[f"{a.rss_after[len(a.rss_after) // 2]:g}"]
        rec["result"] = {
            "first_noop_s": rec["first_noop_s"],
            "idle_rss_bytes": main["rss_bytes"],
            "idle_rss_processes": main["processes"],
        }
    except Exception as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        client.close()
        ctx.term()
        if server is not None:
            rec["stop"] = server.stop()
            rec["server_log_tail"] = server.log_text()[-1500:]
        rec.update(cleanup_segments(shm_before, pats))
        rec["busy_cores_total"] = busy_cores(ticks0, cpu_ticks())
        rec["loadavg_after"] = loadavg()
        append(a.out, rec)
        shutil.rmtree(workdir, ignore_errors=True)
    r = rec.get("result", {})
    rss = r.get("idle_rss_bytes")
    print(
        f"  [{a.round}] start-up {a.impl:7s} first noop {r.get('first_noop_s')} s, /healthcheck "
        f"{rec.get('healthcheck_s')} s, idle RSS {rss / 1e9 if rss else float('nan'):.3f} GB "
        f"({r.get('idle_rss_processes')} proc)  load {rec['loadavg_after'].split()[0]}"
        + (f"  ERROR {rec['error']}" if "error" in rec else "")
    )
    return 0


# ----------------------------------------------------------------------------------------------
# memcpy floor


def cmd_memcpy(a: argparse.Namespace) -> int:
    import numpy as np

    rec: dict[str, Any] = {"ts": now(), "kind": "memcpy", "round": a.round, "loadavg_before": loadavg()}
    mib = FLOOR_BYTES // MiB
    cmd = [a.bench_copy, str(a.reps), str(mib)]
    rec["cmd"] = " ".join(cmd)
    res: dict[str, Any] = {}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        rec["rc"] = out.returncode
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT_JSON "))
        rj = json.loads(line[len("RESULT_JSON ") :])
        rec["bench_copy"] = rj
        res["memcpy_gbps"] = rj["memcpy_gbps"]["median"]
    except (OSError, StopIteration, ValueError, subprocess.TimeoutExpired) as e:
        rec["error"] = f"bench_copy: {e}"
    # numpy copyto between pre-faulted 64 MiB arrays, same run
    src = np.full(FLOOR_BYTES, 0x5A, dtype=np.uint8)
    dst = np.zeros(FLOOR_BYTES, dtype=np.uint8)
    times = []
    for i in range(5 + a.reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        t1 = time.perf_counter()
        if i >= 5:
            times.append(t1 - t0)
    res["numpy_copyto_gbps"] = round(FLOOR_BYTES / statistics.median(times) / 1e9, 3)
    floor_gbps = res.get("memcpy_gbps") or res["numpy_copyto_gbps"]
    res["floor_ms"] = round(FLOOR_BYTES / floor_gbps / 1e6, 3)
    rec["result"] = res
    rec["loadavg_after"] = loadavg()
    append(a.out, rec)
    print(
        f"  [{a.round}] memcpy 64 MiB: {res.get('memcpy_gbps')} GB/s "
        f"(numpy copyto {res['numpy_copyto_gbps']}) "
        f"= {res['floor_ms']} ms  load {rec['loadavg_after'].split()[0]}"
    )
    return 0


# ----------------------------------------------------------------------------------------------
# summary


def _median(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def _fmt(x: float | None, nd: int = 2) -> str:
    return "–" if x is None else f"{x:,.{nd}f}"


def _range(values: list[float]) -> str:
    return f"{min(values):.3g}–{max(values):.3g}" if values else ""


def summarize(path: str) -> dict[str, Any]:
    recs = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
    out: dict[str, Any] = {"records": len(recs), "errors": [r for r in recs if "error" in r]}
    loads = [float(r[k].split()[0]) for r in recs for k in ("loadavg_before", "loadavg_after") if r.get(k)]
    out["load_min"], out["load_max"] = (min(loads), max(loads)) if loads else (None, None)
    busy = [r["busy_cores_during_bench"] for r in recs if r.get("busy_cores_during_bench") is not None]
    out["busy_min"], out["busy_max"] = (min(busy), max(busy)) if busy else (None, None)
    floors = [r["result"]["floor_ms"] for r in recs if r["kind"] == "memcpy" and "result" in r]
    gbps = [r["result"].get("memcpy_gbps") for r in recs if r["kind"] == "memcpy" and "result" in r]
    npg = [r["result"].get("numpy_copyto_gbps") for r in recs if r["kind"] == "memcpy" and "result" in r]
    out["floor_ms"] = _median(floors)
    out["floor_ms_all"] = floors
    out["memcpy_gbps"] = _median(gbps)
    out["numpy_gbps"] = _median(npg)
    bench: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in recs:
        if r["kind"] != "bench" or "result" not in r:
            continue
        d = bench.setdefault((r["impl"], r["mode"], r.get("client", THEIRS)), {})
        for k, v in r["result"].items():
            if v is not None:
                d.setdefault(k, []).append(float(v))
        d.setdefault("pickle", []).append(1.0 if r.get("server_pickle_fallback") else 0.0)
        n = (r.get("metrics") or {}).get("results", {}).get("total_requests")
        srv = r.get("server_during_bench") or {}
        if n and "cpu_s" in srv:
            d.setdefault("server_cpu_ms_per_seq", []).append(srv["cpu_s"] * 1000 / n)
            d.setdefault("server_minflt_per_seq", []).append(srv["minflt"] / n)
    out["bench"] = bench
    start: dict[str, dict[str, list[float]]] = {}
    for r in recs:
        if r["kind"] != "startup" or "result" not in r:
            continue
        d = start.setdefault(r["impl"], {})
        d.setdefault("first_noop_s", []).append(r["result"]["first_noop_s"])
        d.setdefault("idle_rss_gb", []).append(r["result"]["idle_rss_bytes"] / 1e9)
        d.setdefault("processes", []).append(r["result"]["idle_rss_processes"])
        if r.get("healthcheck_s") is not None:
            d.setdefault("healthcheck_s", []).append(r["healthcheck_s"])
    out["startup"] = start
    return out


METRICS = [
    ("cold lookup p50, ms", "cold_lookup_p50_ms", False),
    ("store p50, ms", "store_p50_ms", True),
    ("warm lookup p50, ms", "warm_lookup_p50_ms", False),
    ("retrieve p50, ms", "retrieve_p50_ms", True),
    ("pass rate, %", "pass_rate", False),
    ("server CPU per sequence, ms", "server_cpu_ms_per_seq", False),
    ("server minor faults per sequence", "server_minflt_per_seq", False),
]
INFO_ONLY = ("pass_rate", "server_cpu_ms_per_seq", "server_minflt_per_seq")
CLIENT_TITLE = {THEIRS: "LMCache 0.5.6 bench client", OURS: "our bench client (diagnosis)"}


def cmd_summarize(a: argparse.Namespace) -> int:
    s = summarize(a.file)
    floor = s["floor_ms"]
    md = a.markdown
    lines: list[str] = []
    if md:
        lines.append(
            "| mode | metric | ours | LMCache 0.5.6 | ours ÷ LMCache | ÷ memcpy floor (ours / LMCache) |"
        )
        lines.append("|---|---|---|---|---|---|")
    else:
        lines.append(
            f"{'mode':15s} {'metric':22s} {'ours':>22s} {'LMCache 0.5.6':>22s} {'ratio':>7s} {'floor x':>13s}"
        )
    verdicts: list[str] = []
    clients = [c for c in (THEIRS, OURS) if any(k[2] == c for k in s["bench"])]
    for client, mode in ((c, m) for c in clients for m in ("lmcache_driven", "engine_driven")):
        o = s["bench"].get((OURS, mode, client), {})
        t = s["bench"].get((THEIRS, mode, client), {})
        if not o and not t:
            continue
        if client != THEIRS:
            mode = f"{mode} ({CLIENT_TITLE[client]})"
        for label, key, vs_floor in METRICS:
            ov, tv = o.get(key, []), t.get(key, [])
            if not ov and not tv:
                continue
            om, tm = _median(ov), _median(tv)
            ratio = om / tm if om is not None and tm else None
            fl = ""
            if vs_floor and floor:
                fl = f"{_fmt(om / floor if om else None)}× / {_fmt(tm / floor if tm else None)}×"
            ocell = f"{_fmt(om)} ({_range(ov)})"
            tcell = f"{_fmt(tm)} ({_range(tv)})"
            rcell = "" if key in INFO_ONLY else f"{_fmt(ratio)}"
            if md:
                lines.append(f"| {mode} | {label} | {ocell} | {tcell} | {rcell} | {fl} |")
            else:
                lines.append(f"{mode:15s} {label:22s} {ocell:>22s} {tcell:>22s} {rcell:>7s} {fl:>13s}")
            if key in INFO_ONLY or client != THEIRS:
                continue
            if ratio is not None:
                ok = ratio <= 0.5
                verdicts.append(
                    f"{mode} {label}: ours/LMCache {ratio:.2f} (target ≤ 0.5) {'MET' if ok else 'MISSED'}"
                )
            if vs_floor and floor and om is not None:
                ok = om / floor <= 1.5
                verdicts.append(
                    f"{mode} {label}: {om / floor:.2f}× the {floor:.2f} ms memcpy floor (target ≤ 1.5) "
                    f"{'MET' if ok else 'MISSED'}"
                )
    st = s["startup"]
    startup_rows = (
        ("first answered noop, s", "first_noop_s", 3),
        ("/healthcheck 200, s", "healthcheck_s", 3),
        ("idle RSS, --l1-size-gb 2, GB", "idle_rss_gb", 3),
    )
    for label, key, nd in startup_rows if st else ():
        ov, tv = st.get(OURS, {}).get(key, []), st.get(THEIRS, {}).get(key, [])
        om, tm = _median(ov), _median(tv)
        ratio = om / tm if om is not None and tm else None
        ocell = f"{_fmt(om, nd)} ({_range(ov)})"
        tcell = f"{_fmt(tm, nd)} ({_range(tv)})"
        if md:
            lines.append(f"| start-up | {label} | {ocell} | {tcell} | {_fmt(ratio)} | |")
        else:
            lines.append(f"{'start-up':15s} {label:22s} {ocell:>22s} {tcell:>22s} {_fmt(ratio):>7s}")
    fo = _median(st.get(OURS, {}).get("first_noop_s", []))
    ro = _median(st.get(OURS, {}).get("idle_rss_gb", []))
    if fo is not None:
        verdicts.append(f"first noop {fo:.3f} s (target ≤ 1 s) {'MET' if fo <= 1 else 'MISSED'}")
    if ro is not None:
        verdicts.append(f"idle RSS {ro:.3f} GB (target < 0.2 GB) {'MET' if ro < 0.2 else 'MISSED'}")
    print("\n".join(lines))
    print()
    print(
        f"memcpy floor, 64 MiB, 1 thread, pre-faulted: {_fmt(s['memcpy_gbps'])} GB/s (bench_copy) = "
        f"{_fmt(floor)} ms (per round {s['floor_ms_all']}); numpy copyto {_fmt(s['numpy_gbps'])} GB/s"
    )
    print(
        f"load average (1 min) during the run: {s['load_min']}–{s['load_max']}; busy cores during the "
        f"bench clients (all processes): {s['busy_min']}–{s['busy_max']} of {os.cpu_count()}"
    )
    pick = [f"{k[0]}/{k[1]}" for k, d in s["bench"].items() if any(d.get("pickle", []))]
    if pick:
        print(f"NOTE: 'pickle' appeared in the server log of: {', '.join(pick)}")
    if s["errors"]:
        print(f"ERRORS in {len(s['errors'])} record(s):")
        for r in s["errors"]:
            print(f"  {r['kind']} {r.get('impl', '')} {r.get('mode', '')} round {r['round']}: {r['error']}")
    print()
    print("targets:")
    for v in verdicts:
        print("  " + v)
    return 0


def cmd_shm_clean(a: argparse.Namespace) -> int:
    removed = shm_clean_dead()
    print(f"removed {len(removed)} stale segment(s)" + (": " + ", ".join(removed) if removed else ""))
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--impl", choices=[OURS, THEIRS], required=True)
        sp.add_argument("--round", type=int, default=1)
        sp.add_argument("--out", required=True)
        sp.add_argument("--lmcache-venv", default="/opt/lmcache-0.5.6-venv")

    b = sub.add_parser("bench")
    common(b)
    b.add_argument("--mode", choices=["lmcache_driven", "engine_driven"], required=True)
    b.add_argument("--client", choices=[THEIRS, OURS], default=THEIRS, help="whose bench client")
    b.add_argument("--l1-size-gb", type=float, default=4)
    b.add_argument("--start", type=int, default=0)
    b.add_argument("--end", type=int, default=20)
    b.add_argument("--interval", type=float, default=0.2)
    b.add_argument("--timeout", type=float, default=300)
    b.add_argument("--server-args", default="", help="extra server flags (diagnosis runs)")
    b.add_argument("--keep-logs", default="", help="copy server and bench logs into this folder")
    b.set_defaults(fn=cmd_bench)

    s = sub.add_parser("startup")
    common(s)
    s.add_argument("--l1-size-gb", type=float, default=2)
    s.add_argument(
        "--rss-after",
        type=float,
        nargs="+",
        default=[2.0, 5.0, 10.0],
        help="seconds after the first noop to sample RSS (the middle one is reported)",
    )
    s.set_defaults(fn=cmd_startup)

    m = sub.add_parser("memcpy")
    m.add_argument("--round", type=int, default=1)
    m.add_argument("--out", required=True)
    m.add_argument("--bench-copy", default=str(ROOT / "build" / "bench" / "bench_copy"))
    m.add_argument("--reps", type=int, default=20)
    m.set_defaults(fn=cmd_memcpy)

    z = sub.add_parser("summarize")
    z.add_argument("file")
    z.add_argument("--markdown", action="store_true")
    z.set_defaults(fn=cmd_summarize)

    c = sub.add_parser("shm-clean")
    c.set_defaults(fn=cmd_shm_clean)

    a = p.parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every server started here is stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    return int(a.fn(a))


if __name__ == "__main__":
    sys.exit(main())
