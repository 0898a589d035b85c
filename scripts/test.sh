#!/usr/bin/env bash
# Builds and runs the whole test suite: a Release build and the Python client's
# suite, then the C++ suite under AddressSanitizer and UndefinedBehaviorSanitizer.
# Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300

# The Python client (standard library only): conformance vectors, codec, and
# end-to-end against the Release binary just built.
CONVERGENCE_BIN="$PWD/build/src/cmd/convergence" timeout 600 python3 clients/python/tests/run.py

if [ "${1:-}" != "--no-sanitize" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCONV_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs" --target convergence_tests convergence
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 600
fi
