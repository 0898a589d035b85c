#!/usr/bin/env bash
# The long run of the takeover cycles test (tests/repl/takeover_test.cc): CYCLES
# times, the owner is killed with SIGKILL under pipelined writes from two sources, the
# standby takes over, the killed one comes back as the next standby; after each
# takeover every acknowledged op must be on the new owner, and in the end its state
# must be every op exactly once. About 3 s per cycle (--failover-after 2s).
# Usage: scripts/takeover-cycles.sh [CYCLES (default 200)] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-200}
tests=build/tests/convergence_tests
[ -x "$tests" ] || { echo "build first: cmake --build build" >&2; exit 1; }
export CONV_TAKEOVER_CYCLES=$cycles
[ $# -ge 2 ] && export CONV_TAKEOVER_SEED=$2
"$tests" -tc='cluster: takeover cycles*' 2>&1 | grep -E 'takeover cycles|Status|ERROR'
