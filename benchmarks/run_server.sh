#!/usr/bin/env bash
# Server benchmarks, our server next to the real LMCache 0.5.6 server, measured in one run.
#
# 1. builds build/bench/bench_copy (the memcpy floor);
# 2. creates the LMCache 0.5.6 venv if needed (scripts/lmcache-venv.sh);
# 3. runs ROUNDS rounds; in each (who goes first alternates between rounds, so drift in machine
#    load hits both sides):
#      memcpy floor      bench_copy 20 64: glibc memcpy of 64 MiB (one bench request), 1 thread,
#                        pre-faulted buffers, plus numpy copyto of 64 MiB;
#      start-up          a server with --l1-size-gb 2: time from launch to the first answered
#                        ZMQ noop, and its idle RSS (process tree) 5 s after that;
#      bench x 2 modes   0.5.6's `lmcache bench server --mode cpu --transfer-mode M --start 0
#                        --end 20 --interval 0.2` (shape (2,1024,16,8,128):float16:32, 512 tokens
#                        = 2 chunks of 32 MiB = 64 MiB per request) against a FRESH server
#                        (--l1-size-gb 4 --eviction-policy LRU; 0.5.6 also gets
#                        --supported-transfer-mode auto, and --shm-name for engine_driven),
#                        for M = lmcache_driven and engine_driven;
#    with CLIENTS="lmcache ours" the bench also runs with our own, leaner `python -m lmcache
#    bench server` client (same flags), to tell server time from client time;
#    every server is stopped (SIGINT to its process group) after its run, and the /dev/shm
#    segments of the processes the run started are removed;
# 4. appends one JSON line per measurement (with /proc/loadavg before and after, and the busy
#    cores of the whole machine during the bench client) to bench-results/server-<stamp>.jsonl,
#    keeps the server and client logs in bench-results/server-<stamp>-logs/, and prints medians
#    with ratios ours / LMCache and against the memcpy floor (also as a Markdown table).
#
# Knobs (environment): ROUNDS=3 L1_GB=4 START=0 END=20 INTERVAL=0.2 STARTUP_L1_GB=2
# LMCACHE_VENV=/opt/lmcache-0.5.6-venv SKIP_BUILD=0 MODES="lmcache_driven engine_driven"
# CLIENTS=lmcache SKIP_STARTUP=0.
# About 15 minutes on a busy 2-core machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
L1_GB="${L1_GB:-4}"
START="${START:-0}"
END="${END:-20}"
INTERVAL="${INTERVAL:-0.2}"
STARTUP_L1_GB="${STARTUP_L1_GB:-2}"
MODES="${MODES:-lmcache_driven engine_driven}"
CLIENTS="${CLIENTS:-lmcache}"
LMCACHE_VENV="${LMCACHE_VENV:-/opt/lmcache-0.5.6-venv}"
BUILD="$ROOT/build/bench"
PY_SYS="$(command -v python3)"
HELPER="$ROOT/benchmarks/python/bench_server.py"
export PYTHONPATH="$ROOT/python"

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  echo "== building bench_copy ($BUILD)"
  cmake -S . -B "$BUILD" -G Ninja -DLMCACHE_BUILD_PYTHON=OFF -DLMCACHE_BUILD_BENCHMARKS=ON \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" --target bench_copy -j2 | tail -n 1
fi
[ -x "$BUILD/bench_copy" ] || { echo "missing $BUILD/bench_copy" >&2; exit 1; }
ls python/lmcache/_native*.so >/dev/null 2>&1 || { echo "our _native extension is not built" >&2; exit 1; }

echo "== LMCache 0.5.6 venv ($LMCACHE_VENV)"
env -u PYTHONPATH bash "$ROOT/scripts/lmcache-venv.sh" "$LMCACHE_VENV"

mkdir -p "$ROOT/bench-results"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$ROOT/bench-results/server-$STAMP.jsonl"
LOG="$ROOT/bench-results/server-$STAMP.log"
LOGS="$ROOT/bench-results/server-$STAMP-logs"
mkdir -p "$LOGS"
: >"$OUT"
echo "== results: $OUT (log: $LOG, server/client logs: $LOGS)"
{
  echo "# server benchmarks $STAMP on $(hostname), $(nproc) cores, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "# ROUNDS=$ROUNDS L1_GB=$L1_GB START=$START END=$END INTERVAL=$INTERVAL STARTUP_L1_GB=$STARTUP_L1_GB MODES=$MODES CLIENTS=$CLIENTS"
  echo "# load at start: $(cat /proc/loadavg)"
} | tee -a "$LOG"

echo "== /dev/shm: stale segments of dead pids" | tee -a "$LOG"
"$PY_SYS" "$HELPER" shm-clean | tee -a "$LOG"

common=(--out "$OUT" --lmcache-venv "$LMCACHE_VENV")
bench() { # impl mode round client
  "$PY_SYS" "$HELPER" bench --impl "$1" --mode "$2" --round "$3" --client "$4" --l1-size-gb "$L1_GB" \
    --start "$START" --end "$END" --interval "$INTERVAL" --keep-logs "$LOGS" "${common[@]}" | tee -a "$LOG"
}
startup() { # impl round
  "$PY_SYS" "$HELPER" startup --impl "$1" --round "$2" --l1-size-gb "$STARTUP_L1_GB" "${common[@]}" | tee -a "$LOG"
}

T0=$SECONDS
for ((i = 1; i <= ROUNDS; i++)); do
  echo "== round $i/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"
  if ((i % 2)); then order=(ours lmcache); else order=(lmcache ours); fi
  "$PY_SYS" "$HELPER" memcpy --round "$i" --out "$OUT" --bench-copy "$BUILD/bench_copy" | tee -a "$LOG"
  if [ "${SKIP_STARTUP:-0}" != "1" ]; then
    for impl in "${order[@]}"; do startup "$impl" "$i"; done
  fi
  for mode in $MODES; do
    for client in $CLIENTS; do
      for impl in "${order[@]}"; do bench "$impl" "$mode" "$i" "$client"; done
    done
  done
done
echo "== done in $((SECONDS - T0)) s; load at end: $(cat /proc/loadavg)" | tee -a "$LOG"
echo
"$PY_SYS" "$HELPER" summarize "$OUT" | tee -a "$LOG"
echo
"$PY_SYS" "$HELPER" summarize --markdown "$OUT" >>"$LOG"
echo "(Markdown table appended to $LOG)"
echo "== /dev/shm after the run (segments of live processes are not ours to remove):"
ls /dev/shm | sed 's/^/  /'
