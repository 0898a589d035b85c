#!/usr/bin/env bash
# The main job: build (Release), start a server on a free loopback port with a
# temporary data dir, run the performance page's write scenario against it with
# `convergence load`, read one entity back with `convergence query`, stop the server
# gracefully. Usage: scripts/main-job.sh [extra `load` flags, e.g. --duration 30s]
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target convergence
bin=build/src/cmd/convergence

data=$(mktemp -d)
out="$data/serve.out"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data/db" >"$out" 2>"$data/serve.log" &
server=$!
trap 'kill -INT $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out")
[ -n "$addr" ] || { cat "$data/serve.log"; echo "server did not start" >&2; exit 1; }
echo "server on $addr"

"$bin" load --server "$addr" --workers 9 --entities 10000 --schema player --duration 10s \
  --readers 1 --quiet "$@"
echo
echo "convergence query player p-17 --claims:"
"$bin" query player p-17 --server "$addr" || true
