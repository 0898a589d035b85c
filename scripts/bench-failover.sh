#!/usr/bin/env bash
# Failover time: an owner (`serve --replicate`) and a standby (`serve --follow
# --standby`, --failover-after FAILOVER) on a three-node NATS cluster on loopback; a
# writer writes to the owner until it is killed with SIGKILL, then the time from the
# kill to the first ACK from the new owner (the standby, at the address it prints
# once it took over) is measured. RUNS runs, each on a new cluster name; prints every
# run (also the time to the standby's listening line) and the medians.
# Usage: scripts/bench-failover.sh [RUNS (default 3)] [FAILOVER (default 3s)]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
failover=${2:-3s}
bin=build/src/cmd/convergence
[ -x "$bin" ] || { echo "build first: cmake --build build" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "nats-server is missing: scripts/setup.sh" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=scripts/lib-replication.sh
source scripts/lib-replication.sh

echo "run  kill -> standby listening ms  kill -> first ACK from the new owner ms"
: >"$dir/results"
for r in $(seq "$runs"); do
  name="failover$r"
  start_serve "owner-$r" --data-dir "$dir/owner-$r" --replicate "$urls" --cluster-name "$name"
  owner_pid=$serve_pid owner_addr=$serve_addr
  pids+=("$owner_pid")
  start_serve "standby-$r" --data-dir "$dir/standby-$r" --follow "$urls" --cluster-name "$name" \
    --standby --failover-after "$failover"
  pids+=("$serve_pid")
  standby_out="$dir/standby-$r.out"
  # The writer: writes to the owner until told the kill time, then waits for the
  # standby's second listening line and writes there until an op is acknowledged.
  PYTHONPATH=clients/python python3 - "$owner_addr" "$standby_out" "$dir/killed-$r" \
    >"$dir/result-$r" <<'PY' &
import os, sys, time
from convergence import Client
owner, out, killed_file = sys.argv[1:]
c = Client(owner, source="failover-writer", reconnect=False)
i = 0
while not os.path.exists(killed_file):
    c.assert_("player", f"p-{i % 100}", {"level": i})
    i += 1
    if i % 50 == 0:
        try:
            c.sync()
        except Exception:
            break  # the owner is gone
while True:
    try:
        killed = int(open(killed_file).read().split()[0])
        break
    except (OSError, ValueError, IndexError):
        time.sleep(0.001)
addr = None
while addr is None:
    lines = [l for l in open(out).read().splitlines() if l.startswith("listening on ")]
    if len(lines) >= 2:
        addr = lines[1][len("listening on "):]
    else:
        time.sleep(0.002)
listening = time.time_ns()
while True:
    try:
        n = Client(addr, source="failover-writer-2", reconnect=False, timeout=10)
        n.assert_("player", "p-0", {"level": -1})
        n.sync()
        break
    except Exception:
        time.sleep(0.005)
acked = time.time_ns()
print((listening - killed) / 1e6, (acked - killed) / 1e6)
PY
  writer=$!
  sleep 2
  kill -9 "$owner_pid"
  date +%s%N >"$dir/killed-$r"
  { wait "$owner_pid"; } 2>/dev/null || true
  wait "$writer"
  read -r listening acked <"$dir/result-$r"
  printf '%-4s %30.0f  %38.0f\n' "$r" "$listening" "$acked"
  echo "$listening $acked" >>"$dir/results"
  kill "$serve_pid" 2>/dev/null || true
  { wait "$serve_pid"; } 2>/dev/null || true
done
python3 - "$dir/results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
m = [statistics.median(c) for c in zip(*rows)]
print(f"median: kill -> standby listening {m[0]:.0f} ms, kill -> first ACK from the new owner {m[1]:.0f} ms")
PY
