#!/usr/bin/env bash
# Installs what convergence needs to build and test on Debian 12 (run as root, or
# with sudo available). Safe to run again: apt-get skips what is installed.
set -euo pipefail

packages=(
  cmake g++ ninja-build git
  libcli11-dev libasio-dev libconcurrentqueue-dev libmimalloc-dev libfmt-dev doctest-dev
  # TLS (OpenSSL); the tests make certificates with the openssl command.
  libssl-dev openssl
  # Replication (serve --replicate, docs/replication.md): the NATS C client, and the
  # server the `cluster` tests run three of.
  libnats-dev nats-server
  # The replicated stream's chunks are compressed with zstd.
  libzstd-dev
  # The docs tests: man pages rendered with groff and man, completions run in each shell.
  groff-base man-db bash zsh fish
  # The Python client's tests (standard library only).
  python3
  # The console's browser tests (tests/browser): headless Chromium, driven from Node.js.
  chromium
  # The fuzz targets (scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes.
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all build dependencies are installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
