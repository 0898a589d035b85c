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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cports=() rports=()
for i in 0 1 2; do cports+=("$(free_port)"); rports+=("$(free_port)"); done
routes="nats-route://127.0.0.1:${rports[0]}, nats-route://127.0.0.1:${rports[1]}, nats-route://127.0.0.1:${rports[2]}"
urls="nats://127.0.0.1:${cports[0]},nats://127.0.0.1:${cports[1]},nats://127.0.0.1:${cports[2]}"
for i in 0 1 2; do
  cat >"$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${cports[$i]}
jetstream { store_dir: "$dir/store-n$i" }
cluster { name: bench, listen: 127.0.0.1:${rports[$i]}, routes: [$routes] }
CONF
  nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 300); do grep -q 'metadata leader' "$dir"/n*.log && break; sleep 0.1; done

# One serve + load; prints "ops_per_sec ack_p50_ms ack_p99_ms".
measure() {
  local name=$1; shift
  rm -rf "$dir/db"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/db" --log-level warn "$@" \
    >"$dir/serve.out" 2>>"$dir/serve.log" &
  local spid=$!
  for _ in $(seq 300); do grep -q '^listening on' "$dir/serve.out" && break; sleep 0.1; done
  local addr
  addr=$(sed -n 's/^listening on //p' "$dir/serve.out")
  if [ -z "$addr" ]; then
    echo "serve $* did not start:" >&2
    cat "$dir/serve.log" >&2
    exit 1
  fi
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
