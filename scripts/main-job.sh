#!/usr/bin/env bash
# The main job: build (Release) and run `convergence bench --quick`, which starts an
# embedded server on a free loopback port with a temporary data dir for each
# scenario of the performance page and prints the report. Extra arguments go to
# bench (for example `--duration 10s` without `--quick` is done by calling the
# binary directly: build/src/cmd/convergence bench).
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target convergence
build/src/cmd/convergence bench --quick "$@"
