#!/usr/bin/env bash
# Restart time with N player entities (default 1,000,000) in a checkpoint plus the
# log after it: populate with one writer (one claim per entity), let a checkpoint
# happen while writes go on, kill -9 the server, then time recovery (the server logs
# "recovered ... in N ms"). Usage: scripts/bench-restart.sh [ENTITIES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-1000000}
runs=${2:-3}
bin=build/src/cmd/convergence
[ -x "$bin" ] || { echo "build first: scripts/main-job.sh or cmake --build build" >&2; exit 1; }

dir=$(mktemp -d)
trap 'pkill -9 -f "convergence serve --listen 127.0.0.1:0 --data-dir $dir" 2>/dev/null || true; rm -rf "$dir"' EXIT

start() {
  : >"$dir/out"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/db" --checkpoint-interval "$1" \
    >"$dir/out" 2>>"$dir/log" &
  for _ in $(seq 600); do grep -q '^listening on' "$dir/out" && break; sleep 0.1; done
  sed -n 's/^listening on //p' "$dir/out"
}

addr=$(start 10s)
# Every entity written (ids are drawn at random: run long enough to cover them).
"$bin" load --server "$addr" --workers 1 --entities "$entities" --mix 100/0/0 --duration 25s --quiet \
  | grep -E 'Aggregate|Acknowledged|Errors'
pkill -9 -f "convergence serve --listen 127.0.0.1:0 --data-dir $dir" || true
sleep 0.5
ls -la "$dir/db"
for i in $(seq "$runs"); do
  addr=$(start 0s)
  grep 'recovered' "$dir/log" | tail -1
  pkill -9 -f "convergence serve --listen 127.0.0.1:0 --data-dir $dir" || true
  sleep 0.5
done
