#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite.
# Kernel and end-to-end tests need root; without it they skip, saying why,
# unless EGRESSD_REQUIRE_BPF=1, which turns a skip into a failure (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -eq 0 ]]; then
  scripts/install-deps.sh --with-tests
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSD_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure --timeout 600 "$@"
