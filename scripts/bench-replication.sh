#!/usr/bin/env bash
# Write throughput and ACK latency with and without --replicate, in the same run:
# three nats-server processes (one JetStream cluster) on loopback, then RUNS pairs of
# `serve` (local log only / --replicate to the cluster, --replicas 3) each loaded by
# `load --workers 9 --entities 10000` for DURATION, at RATE ops/s in all (0: as fast as
# they can, the throughput figure; a fixed rate gives ACK latency without queueing at
# saturation). Prints every run and the medians.
# Usage: scripts/bench-replication.sh [RUNS (default 3)] [DURATION (default 10s)] [RATE (default 0)]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
rate=${3:-0}
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

# One serve + load; prints "ops_per_sec ack_p50_ms ack_p99_ms".
measure() {
  local name=$1; shift
  rm -rf "$dir/db"
  start_serve serve --data-dir "$dir/db" "$@"
  local spid=$serve_pid addr=$serve_addr
  "$bin" load --server "$addr" --workers 9 --entities 10000 --duration "$duration" --rate "$rate" --quiet --json \
    >"$dir/$name.json"
  kill "$spid"
  wait "$spid" || true
  python3 - "$dir/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['ops_per_sec']:.0f} {r['ack_latency_ms']['p50']} {r['ack_latency_ms']['p99']}")
PY
}

echo "run  local ops/s  ack p50/p99 ms  |  replicated ops/s  ack p50/p99 ms  ratio"
: >"$dir/results"
for r in $(seq "$runs"); do
  read -r lo lp50 lp99 < <(measure "local-$r")
  read -r ro rp50 rp99 < <(measure "repl-$r" --replicate "$urls" --cluster-name "bench$r" --replicas 3)
  ratio=$(python3 -c "print(f'{$ro/$lo:.2f}')")
  printf '%-4s %12s  %6s / %-6s |  %16s  %6s / %-6s  %s\n' "$r" "$lo" "$lp50" "$lp99" "$ro" "$rp50" "$rp99" "$ratio"
  echo "$lo $lp50 $lp99 $ro $rp50 $rp99" >>"$dir/results"
done
python3 - "$dir/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
m = [statistics.median(c) for c in zip(*rows)]
print(f"median: local {m[0]:.0f} ops/s, ACK p50 {m[1]} ms, p99 {m[2]} ms; "
      f"replicated {m[3]:.0f} ops/s, ACK p50 {m[4]} ms, p99 {m[5]} ms; "
      f"replicated/local {m[3]/m[0]:.2f}")
PY
