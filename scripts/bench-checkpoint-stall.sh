#!/usr/bin/env bash
# Do checkpoints of a large state stall acknowledgements? N player entities (default
# 10,000,000) written once (one source, ASSERTs, `serve --checkpoint-interval 0s`),
# then, on that data dir, one writer at a fixed rate (default 100,000 ops/s) for a
# duration (default 40s), the server started with `--checkpoint-interval 0s` (none)
# and with `--checkpoint-interval 10s` (whole-state checkpoints while it writes), runs
# interleaved. Prints the ACK latency p50 / p99 / p999 / max of each run (op generated
# -> its ACK received), and the checkpoints written (records, time).
# The state holds about 95% of the N ids (drawn at random while it is written).
# Usage: scripts/bench-checkpoint-stall.sh [ENTITIES] [RUNS] [RATE] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-10000000}
runs=${2:-3}
rate=${3:-100000}
duration=${4:-40s}
bin=${CONVERGENCE:-build/src/cmd/convergence}
[ -x "$bin" ] || { echo "build first: scripts/main-job.sh or cmake --build build" >&2; exit 1; }

dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT

start() {  # checkpoint interval; sets $addr and $spid
  : >"$dir/out"
  : >"$dir/log"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/db" --log-level info \
    --checkpoint-interval "$1" >"$dir/out" 2>"$dir/log" &
  spid=$!
  for _ in $(seq 1200); do grep -q '^listening on' "$dir/out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on //p' "$dir/out")
}
stop() { kill "$spid"; wait "$spid" || true; }

start 0s
# Ids are drawn at random: run long enough to draw about 95% of them.
fill=$((entities * 3 / 400000 + 5))s
"$bin" load --server "$addr" --workers 1 --entities "$entities" --mix 100/0/0 \
  --duration "$fill" --quiet >/dev/null
stop

for r in $(seq "$runs"); do
  for interval in 0s 10s; do
    start "$interval"
    "$bin" load --server "$addr" --workers 1 --rate "$rate" --entities "$entities" \
      --duration "$duration" --quiet --json >"$dir/load.json"
    stop
    python3 - "$dir/load.json" "$dir/log" "$r" "$interval" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
a = d["ack_latency_ms"]
cps = re.findall(r"checkpoint at window \d+: (\d+) records, \d+ bytes in (\d+) ms", open(sys.argv[2]).read())
took = ", ".join(f"{int(ms):,} ms ({int(n):,} records)" for n, ms in cps) or "none"
print(f"run {sys.argv[3]}, --checkpoint-interval {sys.argv[4]:>3}: {d['ops_per_sec']:,.0f} ops/s, "
      f"ACK p50 {a['p50']:.1f} / p99 {a['p99']:.1f} / p999 {a['p999']:.1f} / max {a['max']:.1f} ms; "
      f"checkpoints: {took}")
PY
  done
done
