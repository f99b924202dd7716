#!/usr/bin/env bash
# The `resp` L2 adapter against a local redis-server, next to redis-benchmark's own SET/GET
# throughput for the same value size, in one run on one machine.
#
# 1. starts redis-server on a free 127.0.0.1 port (no persistence, in a temp dir);
# 2. redis-benchmark -t set,get -d 262144 -n 2000 with -P 1 and -P 16 (requests/s -> MiB/s);
# 3. FLUSHALL, then `lmcache bench l2` on {"type":"resp",...}: 128 x 256 KiB per round
#    (one task of 128 keys in flight), store / lookup / load;
# 4. prints both; the server is killed on exit.
#
# Needs redis-server, redis-benchmark, redis-cli (Debian: redis-server, redis-tools) and the
# lmcache package with a native module built with hiredis (LMCACHE_NATIVE_DIR is honoured).
# Knobs (environment): NUM_KEYS=128 DATA_KB=256 ROUNDS=5 WARMUP=1 IN_FLIGHT=1 CONNECTIONS=8
# PIPELINE_DEPTH=64 REQUESTS=2000.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NUM_KEYS="${NUM_KEYS:-128}"
DATA_KB="${DATA_KB:-256}"
ROUNDS="${ROUNDS:-5}"
WARMUP="${WARMUP:-1}"
IN_FLIGHT="${IN_FLIGHT:-1}"
CONNECTIONS="${CONNECTIONS:-8}"
PIPELINE_DEPTH="${PIPELINE_DEPTH:-64}"
REQUESTS="${REQUESTS:-2000}"

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install redis-server redis-tools)" >&2; exit 2; }
done

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lmcache-resp-bench.XXXXXX")"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --loglevel warning --logfile "$WORK/redis.log" &
REDIS_PID=$!
cleanup() {
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$PORT" ping >/dev/null

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3)"
echo "== redis-benchmark: SET/GET of $((DATA_KB * 1024))-byte values, $REQUESTS requests, port $PORT"
for P in 1 16; do
  out="$(redis-benchmark -p "$PORT" -t set,get -d $((DATA_KB * 1024)) -n "$REQUESTS" -P "$P" -q 2>/dev/null | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second')"
  echo "$out" | awk -v p="$P" -v kb="$DATA_KB" '{
      rps = $2; printf "  -P %-3s %s %10.1f req/s = %8.1f MiB/s\n", p, $1, rps, rps * kb / 1024 }'
done
redis-cli -p "$PORT" flushall >/dev/null

SPEC="{\"type\":\"resp\",\"host\":\"127.0.0.1\",\"port\":$PORT,\"num_connections\":$CONNECTIONS,\"pipeline_depth\":$PIPELINE_DEPTH,\"key_prefix\":\"bench:\"}"
echo "== lmcache bench l2: $NUM_KEYS x $DATA_KB KiB per round, in-flight $IN_FLIGHT, $ROUNDS rounds (+$WARMUP warmup)"
echo "   spec: $SPEC"
cd /tmp
PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}" python3 -m lmcache bench l2 \
  --l2-adapter "$SPEC" --num-keys "$NUM_KEYS" --data-size-kb "$DATA_KB" --in-flight "$IN_FLIGHT" \
  --rounds "$ROUNDS" --warmup-rounds "$WARMUP" --lookup-max-hit-rate 1.0 --no-skip-verify
