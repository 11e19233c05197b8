#!/usr/bin/env bash
# Builds the parser fuzzers (libFuzzer with ASan and UBSan) straight from the
# sources and runs each from its seed corpus for a bounded time.
# Usage: tests/fuzz/run.sh [seconds per fuzzer, default 30]
# Exits non-zero if any fuzzer finds a crash, leak, timeout or broken promise;
# the input that did it is kept in $FUZZ_ARTIFACT_DIR (default build-fuzz/).
set -euo pipefail
seconds="${1:-30}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "usage: $0 [seconds]" >&2; exit 2; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
artifacts="${FUZZ_ARTIFACT_DIR:-$root/build-fuzz}"

# The fuzzer runtime comes with clang's compiler-rt, a package of its own.
missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "fuzz: needs ${missing[*]}: apt-get install them as root" >&2
    exit 1
  fi
  echo "fuzz: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

for parser in dns tls http; do
  clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$root/agent/protocols" "$root/tests/fuzz/${parser}_fuzz.cpp" "$root/agent/protocols/${parser}_parser.cpp" \
    -o "$work/${parser}_fuzz"
done

failed=()
for parser in dns tls http; do
  echo "fuzz: $parser for ${seconds}s" >&2
  # New inputs go to a scratch corpus; the seeds in the tree stay as they are.
  mkdir -p "$work/corpus_$parser"
  if ! "$work/${parser}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$artifacts/${parser}-" "$work/corpus_$parser" "$root/tests/fuzz/corpus/$parser" \
       > "$work/$parser.log" 2>&1; then
    tail -n 60 "$work/$parser.log" >&2
    failed+=("$parser")
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$work/$parser.log" | sed "s/^/fuzz: $parser /" >&2
done

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $artifacts)" >&2
  exit 1
fi
echo "fuzz: dns tls http passed ${seconds}s each" >&2
