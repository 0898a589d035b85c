#!/usr/bin/env bash
# Write throughput at N entities against Redis at N keys, same run, interleaved:
# convergence `serve --fsync window` and `load --workers 9 --entities N` (the page's
# 70/20/10 mix), then Redis 7 with AOF everysec under the same mix from 9 pipelined
# clients (`peerbench redis-mix -clients 9 -P 64 -keys N`, the peer benchmark the
# side-by-side comparison builds; set PEERBENCH to its path). Prints each run and the
# medians (CONVERGENCE picks another binary). Usage:
#   PEERBENCH=/path/to/peerbench scripts/bench-scale-writes.sh [ENTITIES] [RUNS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-1000000}
runs=${2:-3}
duration=${3:-8s}
bin=${CONVERGENCE:-build/src/cmd/convergence}
pb=${PEERBENCH:-}
[ -x "$bin" ] || { echo "build first: scripts/main-job.sh or cmake --build build" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
[ -n "$pb" ] && [ -x "$pb" ] || { echo "set PEERBENCH to a built peerbench binary (redis-mix)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
secs=$(python3 -c "import sys;s='$duration';print(float(s[:-2])/1000 if s.endswith('ms') else float(s[:-1]))")

conv=() redis=()
for r in $(seq "$runs"); do
  rm -rf "$dir/db"; : >"$dir/out"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/db" --log-level warn >"$dir/out" 2>>"$dir/log" &
  spid=$!
  for _ in $(seq 100); do grep -q '^listening on' "$dir/out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on //p' "$dir/out")
  "$bin" load --server "$addr" --workers 9 --entities "$entities" --duration "$duration" --quiet --json >"$dir/load.json"
  kill "$spid"; wait "$spid" || true
  c=$(python3 -c "import json;print(int(json.load(open('$dir/load.json'))['ops_per_sec']))")

  rp=$(port); rm -rf "$dir/redis"; mkdir -p "$dir/redis"
  redis-server --bind 127.0.0.1 --port "$rp" --save '' --appendonly yes --appendfsync everysec \
    --dir "$dir/redis" --daemonize no >/dev/null 2>&1 &
  rpid=$!
  for _ in $(seq 100); do [ "$(redis-cli -p "$rp" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  # About as many ops as Redis does in the duration (it runs until it has sent them all).
  ops=$(python3 -c "print(int(max(200000, 400000 * $secs)))")
  line=$(GOMAXPROCS=1 timeout 300 "$pb" redis-mix -addr "127.0.0.1:$rp" -clients 9 -P 64 -n "$ops" \
    -keys "$entities" -timeout 280s 2>/dev/null | grep '^RESULT')
  kill "$rpid"; wait "$rpid" || true
  x=$(sed -n 's/.* ops_per_s=\([^ ]*\).*/\1/p' <<<"$line")
  echo "run $r: convergence $c ops/s, Redis AOF everysec ${x} ops/s, $(python3 -c "print(f'{$c/$x:.2f}x')")"
  conv+=("$c"); redis+=("$x")
done
python3 - "${conv[*]}" "${redis[*]}" "$entities" <<'PY'
import statistics, sys
c = [float(v) for v in sys.argv[1].split()]
r = [float(v) for v in sys.argv[2].split()]
mc, mr = statistics.median(c), statistics.median(r)
print(f"{int(sys.argv[3]):,} entities, medians of {len(c)}: convergence {mc:,.0f} ops/s, "
      f"Redis AOF everysec {mr:,.0f} ops/s: {mc / mr:.2f}x")
PY
