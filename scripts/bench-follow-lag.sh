#!/usr/bin/env bash
# A read replica's notification lag behind the owner: three nats-server processes (one
# JetStream cluster) on loopback, an owner (`serve --replicate`) and a replica (`serve
# --follow`), subscribers on both (scripts/follow_lag.py, the Python client) while
# `load --workers 4 --entities 10000` writes RATE ops/s to the owner for DURATION
# seconds. Prints, per run, the replica's lag in windows and in ms (p50 p99 max),
# and the medians over RUNS runs.
# Usage: scripts/bench-follow-lag.sh [RUNS (default 3)] [DURATION s (default 10)] [RATE (default 20000)] [WINDOW (default 10ms)]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10}
rate=${3:-20000}
window=${4:-10ms}
bin=build/src/cmd/convergence
[ -x "$bin" ] || { echo "build first: cmake --build build" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "nats-server is missing: scripts/setup.sh" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
# shellcheck source=scripts/lib-replication.sh
source scripts/lib-replication.sh

: >"$dir/results"
for r in $(seq "$runs"); do
  start_serve "owner-$r" --data-dir "$dir/db-$r" --replicate "$urls" --cluster-name "lag$r" --window "$window"
  owner_pid=$serve_pid owner=$serve_addr
  pids+=("$owner_pid")
  start_serve "replica-$r" --follow "$urls" --cluster-name "lag$r" --window "$window"
  replica_pid=$serve_pid replica=$serve_addr
  pids+=("$replica_pid")
  python3 scripts/follow_lag.py "$owner" "$replica" "$((duration + 2))" >"$dir/lag-$r.out" &
  lag_pid=$!
  for _ in $(seq 600); do grep -q '^ready' "$dir/lag-$r.out" && break; sleep 0.1; done
  "$bin" load --server "$owner" --workers 4 --entities 10000 --duration "${duration}s" --rate "$rate" \
    --quiet --json >"$dir/load-$r.json"
  wait "$lag_pid"
  line=$(tail -1 "$dir/lag-$r.out")
  echo "run $r: $line"
  echo "$line" | sed -E 's/.*windows p50\/p99\/max ([^;]+); ms p50\/p99\/max (.*)/\1 \2/' >>"$dir/results"
  kill "$owner_pid" "$replica_pid"
  wait "$owner_pid" "$replica_pid" || true
done
python3 - "$dir/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
m = [statistics.median(c) for c in zip(*rows)]
print(f"median: lag in windows p50 {m[0]:.0f}, p99 {m[1]:.0f}, max {m[2]:.0f}; "
      f"in ms p50 {m[3]:.1f}, p99 {m[4]:.1f}, max {m[5]:.1f}")
PY
