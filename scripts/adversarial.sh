#!/usr/bin/env bash
# The adversarial suite (tests/adversarial/, ctest label `adversarial`): builds the
# Release binary and tests, runs every attack against a real `convergence serve` RUNS
# times (default 3) and prints a Markdown table of each attack's medians: the server's
# RSS before, at its peak during and after the attack, a healthy reader's QUERY round
# trip (p50/p99) idle and during the attack, and the acknowledged ops lost (missing
# after a restart).
# Exit code 1 when a run fails (its output is printed).
# Usage: scripts/adversarial.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target convergence_tests convergence >/dev/null

out=$(mktemp)
trap 'rm -f "$out" "$out.run"' EXIT
for run in $(seq "$runs"); do
  if ! build/tests/convergence_tests -tc='adversarial: *' >"$out.run" 2>&1; then
    cat "$out.run"
    echo "adversarial.sh: run $run of $runs failed" >&2
    exit 1
  fi
  grep -o 'adversarial figures: .*' "$out.run" >>"$out"
  echo "run $run of $runs: passed" >&2
done

python3 - "$out" "$runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split(":", 1)[1].split())
    rows.setdefault(kv.pop("attack"), []).append({k: float(v) for k, v in kv.items()})
def med(runs, key):
    return statistics.median(r[key] for r in runs)
print(f"Medians of {sys.argv[2]} runs (Release, loopback); failed QUERYs and lost ops: the most of any run.\n")
print("| attack | RSS before → peak → after (MiB) | peak growth (MiB) | QUERY p50 / p99 idle (ms) "
      "| QUERY p50 / p99 under attack (ms) | QUERYs (failed) | acked ops | lost |")
print("|---|---|---|---|---|---|---|---|")
for attack, runs in rows.items():
    print(f"| {attack} | {med(runs, 'rss_before_mib'):.1f} → {med(runs, 'rss_peak_mib'):.1f} → "
          f"{med(runs, 'rss_after_mib'):.1f} | "
          f"{statistics.median(r['rss_peak_mib'] - r['rss_before_mib'] for r in runs):.1f} | "
          f"{med(runs, 'idle_p50_ms'):.2f} / {med(runs, 'idle_p99_ms'):.2f} | "
          f"{med(runs, 'attack_p50_ms'):.2f} / {med(runs, 'attack_p99_ms'):.2f} | "
          f"{med(runs, 'attack_queries'):.0f} ({max(r['failed_queries'] for r in runs):.0f}) | "
          f"{med(runs, 'acked_ops'):.0f} | {max(r['lost_ops'] for r in runs):.0f} |")
PY
