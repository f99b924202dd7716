#!/usr/bin/env bash
# fs L2 benchmarks: our `lmcache bench l2` next to LMCache 0.5.6's, and the machine's limit for
# the same workload, on one directory's filesystem, in one run.
#
# 1. builds build/bench/bench_fs (plain write()+close of new files, warm read());
# 2. creates the LMCache 0.5.6 venv if needed (scripts/lmcache-venv.sh);
# 3. runs ROUNDS rounds under DIR (default /var/tmp/lmcache-l2-bench: ext4 on this machine; the
#    script prints the filesystem); in each (who goes first alternates between rounds):
#      limit     bench_fs DIR 128 256 5 1 and ... 2: 128 new files x 256 KiB written with one
#                write() each + close (no fsync) from a page-aligned buffer, then read back warm
#                with one read() each into a page-aligned buffer; median of 5 reps, 1 and 2 threads;
#      ours      python -m lmcache bench l2 --l2-adapter '{"type":"fs_native","base_path":...}'
#                --num-keys 128 --in-flight 1 --data-size-kb 256 --rounds R --warmup-rounds 1
#                --lookup-max-hit-rate 1, then --only lookup --lookup-max-hit-rate 0 (absent keys);
#      lmcache   the same with 0.5.6's `lmcache bench l2` (its venv, no PYTHONPATH,
#                LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1);
#    every run gets a fresh base_path; DIR is emptied before the first and after the last round
#    (deleting files between runs would slow the next runs' file creation on ext4);
# 4. appends one JSON line per measurement to bench-results/l2-<stamp>.jsonl and prints the
#    medians, ratios and the issue-4 targets (also as a Markdown table, in the .log).
#
# Knobs (environment): ROUNDS=3 RUN_ROUNDS=5 DIR=/var/tmp/lmcache-l2-bench
# LMCACHE_VENV=/opt/lmcache-0.5.6-venv SKIP_BUILD=0; LMCACHE_NATIVE_DIR selects our _native build.
# About 2 minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
RUN_ROUNDS="${RUN_ROUNDS:-5}"
DIR="${DIR:-/var/tmp/lmcache-l2-bench}"
LMCACHE_VENV="${LMCACHE_VENV:-/opt/lmcache-0.5.6-venv}"
BUILD="${BUILD:-$ROOT/build/bench}"
PY_SYS="$(command -v python3)"
HELPER="$ROOT/benchmarks/python/bench_l2.py"
export PYTHONPATH="$ROOT/python"

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  echo "== building bench_fs ($BUILD)"
  cmake -S . -B "$BUILD" -G Ninja -DLMCACHE_BUILD_PYTHON=OFF -DLMCACHE_BUILD_BENCHMARKS=ON \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" --target bench_fs -j2 | tail -n 1
fi
[ -x "$BUILD/bench_fs" ] || { echo "missing $BUILD/bench_fs" >&2; exit 1; }
"$PY_SYS" -c "import lmcache._native" 2>/dev/null || { echo "our _native extension is not built" >&2; exit 1; }

echo "== LMCache 0.5.6 venv ($LMCACHE_VENV)"
env -u PYTHONPATH bash "$ROOT/scripts/lmcache-venv.sh" "$LMCACHE_VENV"

# Files of earlier runs go first; nothing is deleted during the run (see bench_fs.cc on ext4).
rm -rf "${DIR:?}"
mkdir -p "$DIR" "$ROOT/bench-results"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$ROOT/bench-results/l2-$STAMP.jsonl"
LOG="$ROOT/bench-results/l2-$STAMP.log"
: >"$OUT"
{
  echo "# L2 benchmarks $STAMP on $(hostname), $(nproc) cores, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "# ROUNDS=$ROUNDS RUN_ROUNDS=$RUN_ROUNDS DIR=$DIR ($(df -T "$DIR" | awk 'NR==2 {print $2 " on " $1 ", mounted at " $7}'))"
  echo "# load at start: $(cat /proc/loadavg)"
  echo "== results: $OUT"
} | tee -a "$LOG"

T0=$SECONDS
for ((i = 1; i <= ROUNDS; i++)); do
  echo "== round $i/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"
  if ((i % 2)); then order=(ours lmcache); else order=(lmcache ours); fi
  for threads in 1 2; do
    "$PY_SYS" "$HELPER" limit --bench-fs "$BUILD/bench_fs" --dir "$DIR" --round "$i" --threads "$threads" \
      --out "$OUT" | tee -a "$LOG"
  done
  for impl in "${order[@]}"; do
    "$PY_SYS" "$HELPER" bench --impl "$impl" --dir "$DIR" --round "$i" --rounds "$RUN_ROUNDS" \
      --lmcache-venv "$LMCACHE_VENV" --out "$OUT" | tee -a "$LOG"
  done
done
echo "== done in $((SECONDS - T0)) s; load at end: $(cat /proc/loadavg)" | tee -a "$LOG"
rm -rf "${DIR:?}"
echo
"$PY_SYS" "$HELPER" summarize "$OUT" | tee -a "$LOG"
echo
"$PY_SYS" "$HELPER" summarize --markdown "$OUT" >>"$LOG"
echo "(Markdown table appended to $LOG)"
