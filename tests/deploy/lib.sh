# Shared by tests/deploy/*.sh: counting, package installation, cleanup.
# Source it after `set -euo pipefail`.

DEPLOY_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$DEPLOY_TESTS/../.." && pwd)
BUILD_DIR=${EGRESSD_DEPLOY_BUILD_DIR:-$REPO/build-deploy}
_passed=0
_failed=0
_cleanups=()

ok() { echo "ok   $*"; _passed=$((_passed + 1)); }
bad() { echo "FAIL $*"; _failed=$((_failed + 1)); }
step() { echo; echo "== $*"; }
# report FILE: counts the "ok   ..." and "FAIL ..." lines a helper printed; other lines are shown.
report() {
  local l
  while IFS= read -r l; do
    case "$l" in
      "ok   "*) ok "${l#ok   }" ;;
      "FAIL "*) bad "${l#FAIL }" ;;
      *) printf '%s\n' "$l" ;;
    esac
  done <"$1"
}
# check DESCRIPTION COMMAND...: runs COMMAND, counts it, shows its output on failure.
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    ok "$what"
  else
    bad "$what"
    printf '%s\n' "$out" | sed 's/^/     | /'
  fi
}

# run_report WHAT COMMAND...: runs a helper that prints "ok   " and "FAIL "
# lines, counts them, and counts a failure if it exits non-zero without one.
run_report() {
  local what=$1 out rc=0
  shift
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  report "$out"
  if [[ $rc -ne 0 ]] && ! grep -q '^FAIL ' "$out"; then bad "$what (exit $rc)"; fi
  rm -f "$out"
  return 0
}

# Cleanups run in reverse order on exit, whatever happens.
on_exit() { _cleanups+=("$1"); }
_run_cleanups() {
  local i
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
}
trap _run_cleanups EXIT

# finish: the closing line, and the exit status.
finish() {
  echo
  echo "$_passed passed, $_failed failed"
  [[ $_failed -eq 0 ]]
}

# skip REASON: exit 77 (ctest's skip), or fail where kernel tests are
# required (CI sets EGRESSD_REQUIRE_BPF=1): a skip there would hide a failure.
skip() {
  if [[ "${EGRESSD_REQUIRE_BPF:-}" == 1 ]]; then
    echo "FAIL (EGRESSD_REQUIRE_BPF=1, not skipped): $*"
    exit 1
  fi
  echo "SKIP: $*"
  exit 77
}

# need_pkgs PACKAGE...: installs the Debian packages that are missing. No
# service of a package installed here is started: a policy-rc.d that refuses
# starts is put in place for the installation (unless the machine has one),
# and on a machine run by systemd the new services are disabled and stopped.
need_pkgs() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || { echo "FAIL missing packages ${missing[*]}, and not root to install them"; exit 1; }
  echo "installing ${missing[*]}"
  local own_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
  if [[ $rc -ne 0 ]]; then
    echo "FAIL apt-get install ${missing[*]} (exit $rc)"
    exit 1
  fi
  if [[ -d /run/systemd/system ]]; then
    for p in "${missing[@]}"; do
      local unit
      for unit in $(dpkg -L "$p" | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.service$' | xargs -r -n1 basename); do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
        echo "disabled and stopped $unit (installed by this test)"
      done
    done
  fi
}

# The egressd binary: EGRESSD_BIN, or build-deploy/egressd, built if needed.
egressd_bin() {
  if [[ -n ${EGRESSD_BIN:-} ]]; then
    echo "$EGRESSD_BIN"
    return
  fi
  if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    cmake -S "$REPO" -B "$BUILD_DIR" -DEGRESSD_BUILD_TESTS=OFF >/dev/null
  fi
  cmake --build "$BUILD_DIR" --target egressd -j"$(nproc)" >/dev/null
  echo "$BUILD_DIR/egressd"
}
