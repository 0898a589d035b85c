#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang in build-fuzz and runs each
# for SECONDS (default 30) from the committed seed corpus, one at a time. Fails if
# any target crashes, trips a sanitizer, breaks a property, runs out of memory or
# hangs; the input that did it is saved in build-fuzz/fuzz-artifacts/TARGET/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: frames record wal_block
#        recovery schema_file http; default all)
# FUZZ_SEED=N runs with seed N (default: a new seed, printed; rerun with it to
# repeat a run's sequence of inputs).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number of seconds, got '$seconds'" >&2; exit 2 ;;
esac
all=(frames record wal_block recovery schema_file http)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
  [ -d "tests/fuzz/corpus/$t" ] || { echo "fuzz.sh: unknown target '$t' (known: ${all[*]})" >&2; exit 2; }
done
seed=${FUZZ_SEED:-$(( $(date +%s) % 1000000007 ))}

# Other compilers running: build with one job.
jobs=$(nproc)
if [ "$(pgrep -c cc1plus || true)" -ge 2 ]; then jobs=1; fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCONV_FUZZ=ON -DCONV_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzz_targets

echo "fuzz.sh: ${seconds}s per target, seed ${seed} (FUZZ_SEED=${seed} scripts/fuzz.sh ${seconds} to repeat)"
failed=()
for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the committed seeds are only read.
  work=build-fuzz/fuzz-corpus/$t
  artifacts=build-fuzz/fuzz-artifacts/$t
  log=build-fuzz/fuzz-$t.log
  mkdir -p "$work" "$artifacts"
  status=0
  build-fuzz/tests/fuzz/fuzz_$t "$work" "tests/fuzz/corpus/$t" -seed="$seed" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p' <<<"$done_line")
  if [ "$status" -eq 0 ]; then
    echo "fuzz $t: ok, ${execs:-?} executions, ${cov:-no coverage line}"
  else
    echo "fuzz $t: FAILED (exit $status); reproducer in $artifacts/, log in $log:"
    grep -E 'ERROR|property failed|SUMMARY|^  |Test unit written' "$log" | head -20
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: ${failed[*]} failed (seed ${seed})"
  exit 1
fi
