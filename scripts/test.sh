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
(cd build && ctest --output-on-failure --timeout 600 "$@")
# The whole suite (no arguments) also runs the unit and kernel suites on an
# ASan + UBSan build of the agent and the tests (build-asan); the fuzzers are
# sanitized already (tests/fuzz/run.sh). EGRESSD_SANITIZERS=0 skips it.
if [[ $# -eq 0 && ${EGRESSD_SANITIZERS:-1} != 0 ]]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSD_BUILD_TESTS=ON -DEGRESSD_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$(nproc)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure --timeout 900 -L '^(unit|kernel)$')
fi
