#!/usr/bin/env bash
# Core benchmarks, ours next to the real LMCache 0.5.6, measured in one run on one machine.
#
# 1. builds our C++ benchmarks (build/bench);
# 2. creates the LMCache 0.5.6 venv if needed (scripts/lmcache-venv.sh);
# 3. runs ITERATIONS times each pair, alternating ours and LMCache's (who goes first alternates
#    too, so drift in machine load hits both sides):
#      bench_allocator  <-> bench_lmcache_core.py --bench allocator  (AddressManager / MixedMemoryAllocator)
#      bench_index      <-> bench_lmcache_core.py --bench index      (L1Manager, 2 threads)
#      bench_metadata   <-> bench_lmcache_core.py --bench metadata   (L1Manager + LRU listener)
#      bench_copy       <-> bench_lmcache_core.py --bench copy       (32 MiB put into L1)
# 4. appends every RESULT_JSON line, with /proc/loadavg before and after, to
#    bench-results/core-<timestamp>.jsonl (the readable output goes to the .log beside it),
#    and prints medians with ratios.
#
# Knobs (environment): ITERATIONS=3 KEYS=100000 OBJECTS=100000 FRAG_OPS=50000 PAIRS=10000
# REPS=40 LMCACHE_VENV=/opt/lmcache-0.5.6-venv SKIP_BUILD=0 TIMEOUT_S=300.
# KEYS / OBJECTS / FRAG_OPS are passed to BOTH sides (same parameters); ours default to 1 M,
# lowered here because Python LMCache needs 5 to 100 us per call. About 4 minutes on an idle
# 2-core machine; 9 to 10 under a load average near 10.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ITERATIONS="${ITERATIONS:-3}"
KEYS="${KEYS:-100000}"
OBJECTS="${OBJECTS:-100000}"
FRAG_OPS="${FRAG_OPS:-50000}"
PAIRS="${PAIRS:-10000}"
REPS="${REPS:-40}"
LMCACHE_VENV="${LMCACHE_VENV:-/opt/lmcache-0.5.6-venv}"
TIMEOUT_S="${TIMEOUT_S:-300}"
BUILD="$ROOT/build/bench"
PY_SYS="$(command -v python3)"
RESULTS="$ROOT/benchmarks/python/core_results.py"
LMC_BENCH="$ROOT/benchmarks/python/bench_lmcache_core.py"

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  echo "== building our C++ benchmarks ($BUILD)"
  cmake -S . -B "$BUILD" -G Ninja -DLMCACHE_BUILD_PYTHON=OFF -DLMCACHE_BUILD_BENCHMARKS=ON \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 | tail -n 1
fi
for b in bench_allocator bench_index bench_metadata bench_copy; do
  [ -x "$BUILD/$b" ] || { echo "missing $BUILD/$b" >&2; exit 1; }
done

echo "== LMCache 0.5.6 venv ($LMCACHE_VENV)"
bash "$ROOT/scripts/lmcache-venv.sh" "$LMCACHE_VENV"
LMC_ENV=(env LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1 LMCACHE_DISABLE_BANNER=1 LMCACHE_LOG_LEVEL=ERROR)
LMC_PY="$LMCACHE_VENV/bin/python"

mkdir -p "$ROOT/bench-results"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$ROOT/bench-results/core-$STAMP.jsonl"
LOG="$ROOT/bench-results/core-$STAMP.log"
: >"$OUT"
echo "== results: $OUT (log: $LOG)"
{
  echo "# core benchmarks $STAMP on $(hostname), $(nproc) cores, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "# ITERATIONS=$ITERATIONS KEYS=$KEYS OBJECTS=$OBJECTS FRAG_OPS=$FRAG_OPS PAIRS=$PAIRS REPS=$REPS"
} >>"$LOG"

# run IMPL PAIR ITERATION CMD...: runs one benchmark, logs it, records its RESULT_JSON lines.
run() {
  local impl="$1" pair="$2" iter="$3"
  shift 3
  local before rc tmp start
  tmp="$(mktemp)"
  before="$(cat /proc/loadavg)"
  start=$SECONDS
  rc=0
  timeout "$TIMEOUT_S" "$@" >"$tmp" 2>&1 || rc=$?
  {
    echo "---- [$iter] $impl $pair: $* (rc=$rc, $((SECONDS - start)) s, load before: $before, after: $(cat /proc/loadavg))"
    cat "$tmp"
  } >>"$LOG"
  printf '  [%s] %-14s %-9s rc=%d %3ds  load %s\n' "$iter" "$impl" "$pair" "$rc" "$((SECONDS - start))" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  "$PY_SYS" "$RESULTS" record --out "$OUT" --impl "$impl" --pair "$pair" --iteration "$iter" \
    --loadavg-before "$before" --rc "$rc" --cmd "$*" <"$tmp"
  rm -f "$tmp"
}

ours() {
  local pair="$1" iter="$2"
  case "$pair" in
    allocator) run ours allocator "$iter" "$BUILD/bench_allocator" "$FRAG_OPS" ;;
    index) run ours index "$iter" "$BUILD/bench_index" "$KEYS" 2 ;;
    metadata) run ours metadata "$iter" "$BUILD/bench_metadata" "$OBJECTS" LRU ;;
    copy) run ours copy "$iter" "$BUILD/bench_copy" "$REPS" ;;
  esac
}

theirs() {
  local pair="$1" iter="$2"
  run lmcache-0.5.6 "$pair" "$iter" "${LMC_ENV[@]}" "$LMC_PY" "$LMC_BENCH" --bench "$pair" \
    --keys "$KEYS" --threads 2 --objects "$OBJECTS" --frag-ops "$FRAG_OPS" --pairs "$PAIRS" --reps "$REPS"
}

T0=$SECONDS
for ((i = 1; i <= ITERATIONS; i++)); do
  for pair in allocator index metadata copy; do
    if ((i % 2)); then
      ours "$pair" "$i"
      theirs "$pair" "$i"
    else
      theirs "$pair" "$i"
      ours "$pair" "$i"
    fi
  done
done
echo "== done in $((SECONDS - T0)) s"
echo
"$PY_SYS" "$RESULTS" summarize "$OUT" | tee -a "$LOG"
