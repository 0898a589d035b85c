#!/usr/bin/env bash
# Memory per entity against Redis in the same run. convergence: N player entities
# (default 1,000,000) asserted once from one source into a fresh embedded server
# (`bench --scenario scale`), its RSS growth over the started, empty server. Redis:
# N hashes p-N holding 8 of the player's 9 fields (the side-by-side script's HSET;
# `online` left out, in Redis's favour) with values of the same kind as ours, sent
# through `redis-cli --pipe` to `redis-server --save '' --appendonly no`, its RSS and
# used_memory growth. Usage: scripts/bench-memory.sh [ENTITIES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-1000000}
runs=${2:-3}
bin=build/src/cmd/convergence
[ -x "$bin" ] || { echo "build first: scripts/main-job.sh or cmake --build build" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'kill "$(cat "$dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"' EXIT

# The hashes, as RESP, made once: name and team strings, x/y/z floats, three ints.
python3 - "$entities" >"$dir/hset.resp" <<'EOF'
import random, sys
n = int(sys.argv[1])
rng = random.Random(7)
out = sys.stdout
for i in range(n):
    r = rng.randrange(256)
    vals = ["name", f"v{r}-{rng.randrange(1000)}", "team", f"v{r}-{rng.randrange(1000)}",
            "x", f"{rng.randrange(2000000) / 100 - 10000:.2f}",
            "y", f"{rng.randrange(2000000) / 100 - 10000:.2f}",
            "z", f"{rng.randrange(2000000) / 100 - 10000:.2f}",
            "health", str(rng.randrange(100000)), "score", str(rng.randrange(100000)),
            "level", str(rng.randrange(100000))]
    args = ["HSET", f"p-{i}"] + vals
    out.write(f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args))
EOF

redis_mem() { redis-cli -p "$port" info memory | tr -d '\r' | sed -n "s/^$1://p"; }

for run in $(seq "$runs"); do
  json=$("$bin" bench --scenario scale --scale-entities "$entities" --duration 1s --json)
  started=$(grep -o '"rss_started_bytes": *[0-9]*' <<<"$json" | grep -o '[0-9]*$')
  preloaded=$(grep -o '"rss_preloaded_bytes": *[0-9]*' <<<"$json" | grep -o '[0-9]*$')
  ours=$(((preloaded - started) / entities))

  port=$((20000 + RANDOM % 20000))
  redis-server --port "$port" --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  rss0=$(redis_mem used_memory_rss)
  used0=$(redis_mem used_memory)
  redis-cli -p "$port" --pipe <"$dir/hset.resp" >/dev/null
  rss1=$(redis_mem used_memory_rss)
  used1=$(redis_mem used_memory)
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  sleep 0.5
  echo "run $run: convergence $ours B/entity (RSS growth); Redis $(((rss1 - rss0) / entities)) B/key RSS, $(((used1 - used0) / entities)) B/key used_memory"
done
