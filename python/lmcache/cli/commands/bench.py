"""``lmcache bench``: benchmarks against a running lmcache server.

Usage::

    lmcache bench server  [--rpc-url tcp://localhost:5555] [--url http://localhost:8080]
        [--mode {gpu,cpu}] [--transfer-mode {auto,engine_driven,lmcache_driven}]
        [--num-tokens 512] [--num-blocks 1024] [--block-size 16] [--start 0] [--end N]
        [--interval 0.5] [--kvcache-shape-spec '(2,1024,16,8,128):float16:32']
        [--format {terminal,json}] [--output PATH] [-q]
    lmcache bench kvcache ...   (the same command under its older name)
    lmcache bench l2 [--l2-adapter JSON | env L2_ADAPTER_JSON] [--num-keys 32] [--in-flight 1]
        [--data-size-kb 256] [--l1-align-bytes 1] [--rounds 1] [--warmup-rounds 1]
        [--lookup-max-hit-rate 0.0] [--skip-verify | --no-skip-verify] [--only {store,lookup,load}]
        [--format {terminal,json}] [--output PATH] [-q]

``bench l2`` drives one L2 adapter directly (see :mod:`lmcache.bench.l2_bench`). Exit status: 0
when every requested operation ran and (with ``--no-skip-verify``) the round trip verified; 1 when
the adapter cannot be created, verification failed, or every measured round of an operation
timed out; 2 for a missing or unparsable spec, an unknown adapter type or field, or a bad flag.
``-q`` prints nothing on stdout (``--output`` is still written), as 0.5.6.

``bench server`` plays a CPU inference worker against the server's multiprocess (ZMQ) port: for
each sequence in ``[--start, --end)`` a cold pass (LOOKUP, expected to miss, then STORE) and a
warm pass (LOOKUP, expected to hit, RETRIEVE into other blocks, per-chunk checksum comparison,
also against the server's ``POST /cache/checksums`` in lmcache_driven mode). Progress lines
(stdout; stderr with ``--format json``, so that stdout is one JSON document)::

    Connecting to LMCache MP Server at tcp://localhost:5555 (mode=cpu) ...
    Server chunk_size = 256
    Resolved KV shape spec: (2,1024,16,8,128):float16:32
    [seq=0] LOOKUP cold:  0/2 chunks hit (1.82 ms)
    [seq=0] STORE:        2 chunks stored (1.74 ms)
    [seq=0] LOOKUP warm:  2/2 chunks hit (1.31 ms)
    [seq=0] RETRIEVE:     2 chunks retrieved (1.48 ms)
    [seq=0] CHECKSUM MATCH OK

then the summary (Configuration, Results, and count/mean/min/max/p50/p99 in ms of Cold Lookup,
Cold Store, Warm Lookup, Warm Retrieve). ``-q`` drops the progress lines only; the summary is
still printed, on stdout, unless ``--output`` sends it to a file. Without ``--end`` the loop
runs until Ctrl-C, which ends it cleanly (summary included).

Exit status: 0 when every sequence passed (a cold-lookup hit is reported, not failed; an
interrupted run counts what completed); 1 on a failed sequence (checksum mismatch, warm miss,
transfer error) or a fatal error (``--mode gpu`` without CUDA, which this build never has; the
server unreachable; registration refused); 2 for an invalid invocation (bad flag value,
malformed ``--kvcache-shape-spec``, a request that does not fit the KV cache).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

from lmcache.bench import l2_bench
from lmcache.bench import server_bench as sb
from lmcache.bench.kv_shape import DEFAULT_SHAPE_SPEC, DTYPES
from lmcache.cli.options import progress
from lmcache.cli.status import ExitStatus, UsageError
from lmcache.client import http as http_client
from lmcache.client import mp as mp_client
from lmcache.errors import InvalidArgumentError, LMCacheError
from lmcache.report import FORMATS, emit

NAME = "bench"
HELP = "Run benchmarks: a running lmcache server (server, kvcache) or an L2 adapter (l2)."

_SERVER_HELP = "End-to-end data-path test and latency benchmark of a running KV-cache server (MP protocol)."
_KVCACHE_HELP = "The same as 'bench server' (its older name)."
_L2_HELP = "Throughput / latency benchmark of one L2 cache adapter (store / lookup / load)."
_L2_SPEC_ENV = "L2_ADAPTER_JSON"


def _rpc_url(text: str) -> str:
    try:
        mp_client.normalize_url(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _http_url(text: str) -> str:
    if not text.strip():
        return ""  # no server-side checksum cross-check
    try:
        return http_client.normalize_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds, got {text!r}")
    return value


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _add_server_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpc-url",
        type=_rpc_url,
        default="tcp://localhost:5555",
        help="ZMQ endpoint of the MP cache server (tcp://host:port; host:port works too). "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--url",
        type=_http_url,
        default="http://localhost:8080",
        help="HTTP base URL of the server's checksum API; with --transfer-mode lmcache_driven the "
        "per-chunk checksums are also cross-checked with POST /cache/checksums. '' turns that off. "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--mode",
        choices=sb.MODES,
        default="gpu",
        help="Run mode. gpu needs CUDA, which this build does not have (it exits with an error); "
        "cpu allocates the KV cache in POSIX shared memory. Default: %(default)s.",
    )
    parser.add_argument(
        "--transfer-mode",
        choices=sb.TRANSFER_MODES,
        default="auto",
        help="How STORE/RETRIEVE move data. lmcache_driven: REGISTER_KV_CACHE with SHM handles, the "
        "server copies (STORE/RETRIEVE). engine_driven: REGISTER_KV_CACHE_ENGINE_DRIVEN_CONTEXT, "
        "this client copies through the server's SHM pool (PREPARE/COMMIT). auto on cpu: what the "
        "server says it serves (engine_driven first), or engine_driven (LMCache 0.5.6's cpu "
        "default) for a server that does not say. Default: %(default)s.",
    )
    parser.add_argument(
        "--num-tokens",
        type=_int_at_least(1),
        default=512,
        metavar="N",
        help="Tokens per synthetic request (the sequence number is prepended as one more token; "
        "only full chunks are stored). Default: %(default)s.",
    )
    parser.add_argument(
        "--num-blocks",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="Paged KV blocks, when the spec's NB is 0 (the spec's value wins). "
        f"Default: {sb.DEFAULT_NUM_BLOCKS}.",
    )
    parser.add_argument(
        "--block-size",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help=f"Tokens per paged block, when the spec's BS is 0 (the spec's value wins). "
        f"Default: {sb.DEFAULT_BLOCK_SIZE}.",
    )
    parser.add_argument(
        "--start", type=_int_at_least(0), default=0, metavar="N", help="First sequence number. Default: 0."
    )
    parser.add_argument(
        "--end",
        type=_int_at_least(0),
        default=None,
        metavar="N",
        help="Exclusive upper bound on sequence numbers. Default: unset (run until Ctrl-C).",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=0.5,
        metavar="SECS",
        help="Delay between successive sub-passes (cold, warm, next sequence). Default: %(default)s.",
    )
    parser.add_argument(
        "--kvcache-shape-spec",
        default=DEFAULT_SHAPE_SPEC,
        metavar="SPEC",
        help="KV cache layout: '(kv_size,NB,BS,NH,HS):dtype:layers[;(...):dtype:layers...]'. "
        "kv_size 2 = K and V, 1 = MLA; NB blocks of BS tokens (0 = --num-blocks/--block-size), NH "
        f"heads of HS elements; dtype one of {', '.join(DTYPES)}. All groups share NB and BS. "
        "Example: '(1,1024,16,1,128):float16:4;(2,1024,16,8,128):float16:28'. Default: %(default)s.",
    )
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help="Format of the final summary on stdout: an aligned table, or one JSON document (progress "
        "then goes to stderr). Default: %(default)s.",
    )
    group.add_argument(
        "--output",
        metavar="PATH",
        default=None,
        help="Also save the summary to PATH (format chosen by --format).",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="Suppress the progress messages. The summary is still printed on stdout, unless --output "
        "writes it to a file instead.",
    )


def _hit_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _add_l2_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--l2-adapter",
        action="append",
        default=None,
        metavar="JSON",
        help='L2 adapter spec as JSON with a "type" field and adapter-specific fields, e.g. '
        '\'{"type":"fs_native","base_path":"/tmp/bench"}\'. May be given several times; only the first '
        f"is benchmarked. If not given, the {_L2_SPEC_ENV} environment variable is used.",
    )
    parser.add_argument(
        "--num-keys",
        type=_int_at_least(1),
        default=32,
        metavar="N",
        help="Keys per submit. Default: %(default)s.",
    )
    parser.add_argument(
        "--in-flight",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="In-flight submits per round. Each round issues this many submits sequentially from a single "
        "producer thread, then waits for all of them. Default: %(default)s.",
    )
    parser.add_argument(
        "--data-size-kb",
        type=_int_at_least(1),
        default=256,
        metavar="N",
        help="Data size per key in KiB. Default: %(default)s.",
    )
    parser.add_argument(
        "--l1-align-bytes",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="Alignment in bytes of the benchmark L1 buffers (they are at least page-aligned anyway). "
        "Use 4096 for O_DIRECT backends. --data-size-kb * 1024 must be a multiple of it. "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="Measurement rounds per operation. Default: %(default)s.",
    )
    parser.add_argument(
        "--warmup-rounds",
        type=_int_at_least(0),
        default=1,
        metavar="N",
        help="Warmup rounds before measurement; their results are discarded. Default: %(default)s.",
    )
    parser.add_argument(
        "--lookup-max-hit-rate",
        type=_hit_rate,
        default=0.0,
        metavar="F",
        help="Upper bound on the lookup hit rate, in [0, 1]: each round looks up floor(N * rate) keys "
        "from the stored range and the rest from a range that is never stored (N = keys per round). "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--skip-verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Skip the store -> load round-trip data check (default). --no-skip-verify compares the load "
        "buffers of the last measured round with the stored byte pattern; a mismatch exits with status 1.",
    )
    parser.add_argument(
        "--only",
        choices=l2_bench.OPERATIONS,
        default=None,
        help="Run only this operation (default: store, lookup, load in that order).",
    )
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help="Format of the final summary on stdout: an aligned table, or one JSON document (progress then "
        "goes to stderr). Default: %(default)s.",
    )
    group.add_argument(
        "--output",
        metavar="PATH",
        default=None,
        help="Also save the summary to PATH (format chosen by --format).",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="Suppress stdout output (exit status only; --output is still written).",
    )


def _run_l2(args: argparse.Namespace) -> int:
    specs = args.l2_adapter or []
    spec = specs[0] if specs else os.environ.get(_L2_SPEC_ENV, "")
    if not spec.strip():
        raise UsageError(f"no L2 adapter spec: pass --l2-adapter JSON or set {_L2_SPEC_ENV}")
    opts = l2_bench.BenchOptions(
        spec_json=spec,
        num_keys=args.num_keys,
        in_flight=args.in_flight,
        data_size_kb=args.data_size_kb,
        l1_align_bytes=args.l1_align_bytes,
        rounds=args.rounds,
        warmup_rounds=args.warmup_rounds,
        lookup_max_hit_rate=args.lookup_max_hit_rate,
        skip_verify=args.skip_verify,
        only=args.only,
    )
    log = progress(args)
    try:
        result = l2_bench.run_l2_bench(opts, log.line)
    except l2_bench.BenchUsageError as exc:
        raise UsageError(str(exc)) from None
    emit(l2_bench.build_report(result), args.format, args.output, args.quiet)
    if result.fatal is not None:
        raise LMCacheError(result.fatal)
    return ExitStatus.SUCCESS if result.ok else ExitStatus.ERROR


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(NAME, help=HELP, description=HELP)
    targets = parser.add_subparsers(dest="bench_target", metavar="TARGET", title="targets")
    for name, help_ in (("server", _SERVER_HELP), ("kvcache", _KVCACHE_HELP)):
        sub = targets.add_parser(name, help=help_, description=_SERVER_HELP)
        _add_server_bench_arguments(sub)
        sub.set_defaults(bench_run=_run_server)
    sub = targets.add_parser("l2", help=_L2_HELP, description=_L2_HELP)
    _add_l2_bench_arguments(sub)
    sub.set_defaults(bench_run=_run_l2)
    parser.set_defaults(func=run, bench_parser=parser)


def _options(args: argparse.Namespace) -> sb.BenchOptions:
    return sb.BenchOptions(
        rpc_url=args.rpc_url,
        url=args.url or None,
        mode=args.mode,
        transfer_mode=args.transfer_mode,
        num_tokens=args.num_tokens,
        num_blocks=args.num_blocks,
        block_size=args.block_size,
        start=args.start,
        end=args.end,
        interval=args.interval,
        kvcache_shape_spec=args.kvcache_shape_spec,
        rpc_timeout=sb.DEFAULT_RPC_TIMEOUT_S,
        hello_timeout=sb.HELLO_TIMEOUT_S,
    )


def _run_server(args: argparse.Namespace) -> int:
    log = progress(args)
    try:
        result = sb.run_server_bench(_options(args), log.line)
    except sb.BenchUsageError as exc:
        raise UsageError(str(exc)) from None
    # -q drops progress only; the summary goes to stdout unless --output takes it.
    emit(sb.build_report(result), args.format, args.output, args.quiet and args.output is not None)
    if result.fatal is not None:
        raise result.fatal
    return ExitStatus.SUCCESS if result.ok else ExitStatus.ERROR


def run(args: argparse.Namespace) -> int:
    bench_run = getattr(args, "bench_run", None)
    if bench_run is None:
        args.bench_parser.print_help(sys.stderr)
        return ExitStatus.USAGE
    return int(bench_run(args))
