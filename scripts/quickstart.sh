#!/usr/bin/env bash
# Installs what is missing, builds egressd and runs the agent with its
# defaults: JSON events on stdout, metrics on http://127.0.0.1:8789/metrics.
# Extra arguments go to `egressd run` (e.g. --log-file /var/log/egressd.json).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || { echo "egressd: run as root (sudo $0)" >&2; exit 1; }
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSD_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target egressd >/dev/null
build/egressd check >&2 || true
exec build/egressd run "$@"
