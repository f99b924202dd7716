"""Lookup round trips against an in-process server: socket-thread (inline) vs pool dispatch.

Starts a server on free loopback ports (64 MiB L1, no HTTP) and times ``lookup`` +
``query_prefetch_status`` pairs of 512 tokens (two chunks, all misses) with our lean
``MPClient``, back to back and after an idle pause, alternating a server that answers the
lookup ops on its socket thread (the default) with one that sends them to the normal pool.
Prints the median per pair of each run.

    PYTHONPATH=python python3 benchmarks/python/bench_lookup_rtt.py [--rounds 3] [--pairs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))

from lmcache.client.mp import MPClient
from lmcache.protocol.types import IPCCacheServerKey
from lmcache.server.app import Server
from lmcache.server.core import ServerCore
from server_util import local_config

DEFAULT_INLINE = ServerCore.INLINE_OPS


def _key(request_id: str) -> IPCCacheServerKey:
    return IPCCacheServerKey(
        model_name="bench",
        world_size=1,
        worker_id=None,
        token_ids=list(range(512)),
        start=0,
        end=512,
        request_id=request_id,
        num_kv_readers=1,
    )


def run(inline: bool, pairs: int, pause: float) -> float:
    ServerCore.INLINE_OPS = DEFAULT_INLINE if inline else frozenset()
    srv = Server(local_config())
    srv.startup(with_http=False)
    times: list[float] = []
    try:
        with MPClient(f"tcp://127.0.0.1:{srv.zmq_port}", timeout=5) as c:
            for i in range(pairs):
                if pause:
                    time.sleep(pause)
                t = time.perf_counter()
                c.call("lookup", _key(f"r{i}"), 1)
                c.call("query_prefetch_status", f"r{i}")
                times.append(time.perf_counter() - t)
                c.call("end_session", f"r{i}")
    finally:
        srv.shutdown()
        ServerCore.INLINE_OPS = DEFAULT_INLINE
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=200)
    args = ap.parse_args()
    for pause in (0.0, 0.05):
        res: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for inline in (False, True):
                res[inline].append(run(inline, args.pairs if pause == 0 else max(20, args.pairs // 3), pause))
        print(
            f"pause {pause * 1e3:.0f} ms: lookup+query p50, ms: pool "
            f"{[round(x, 3) for x in res[False]]}  inline {[round(x, 3) for x in res[True]]}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
