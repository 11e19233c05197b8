#!/usr/bin/env bash
# Installs the Debian packages egressd needs to build, run and be tested.
# Idempotent: packages already present are left alone.
set -euo pipefail

BUILD_PKGS=(cmake make g++ clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
  libssl-dev libre2-dev libpsl-dev publicsuffix libcap-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev prometheus-cpp-dev libfmt-dev)
# qemu-system-x86: tests/kernel-matrix/matrix.sh boots Debian's kernels under it.
TEST_PKGS=(libgtest-dev googletest liburing-dev iproute2 python3 python3-jsonschema curl prometheus prometheus-alertmanager dnsmasq tinyproxy openssl clang libclang-rt-14-dev chromium fonts-dejavu-core python3-pil bsdutils
  qemu-system-x86)

want=("${BUILD_PKGS[@]}")
if [[ "${1:-}" == "--with-tests" ]]; then
  want+=("${TEST_PKGS[@]}")
  # The tool tests run an npm-style script with node; any node on PATH does.
  command -v node >/dev/null || want+=(nodejs)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "egressd: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
