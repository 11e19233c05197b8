#!/usr/bin/env bash
# Static checks of deploy/systemd/egressd.service:
#   - `systemd-analyze verify` prints nothing. The unit names
#     /usr/sbin/egressd, which exists only once the package is installed, and
#     man:egressd(8), so a copy of the unit with ExecStart= pointed at the
#     built binary is verified, with MANPATH pointing at deploy/egressd.8.
#     Nothing else in the copy differs (checked).
#   - `systemd-analyze security --offline=yes` rates the unit's exposure 3.0 or
#     lower (systemd's scale: 0 is the most confined, 10 the least).
#   - the settings egressd depends on are there: ExecStart, the three
#     capabilities, bpf() allowed, /sys/fs/cgroup and /proc readable.
# tests/deploy/systemd_sandbox_test.sh runs the agent under these settings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
UNIT=$REPO/deploy/systemd/egressd.service
MAX_EXPOSURE=${MAX_EXPOSURE:-3.0}

command -v systemd-analyze >/dev/null || need_pkgs systemd
step "systemd $(systemd-analyze --version | head -1 | awk '{print $2}')"
if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
  ok "systemd-analyze security supports --offline"
else
  bad "systemd-analyze security has no --offline (systemd 252 or later needed)"
  finish
  exit 1
fi

EGRESSD=$(egressd_bin)
tmp=$(mktemp -d)
on_exit "rm -rf $tmp"
mkdir -p "$tmp/man/man8"
cp "$REPO/deploy/egressd.8" "$tmp/man/man8/egressd.8"
sed "s|^ExecStart=/usr/sbin/egressd |ExecStart=$EGRESSD |" "$UNIT" >"$tmp/egressd.service"

step "systemd-analyze verify (ExecStart=$EGRESSD, MANPATH=$tmp/man)"
check "the verified copy differs from the unit in ExecStart= only" \
  test "$(diff "$UNIT" "$tmp/egressd.service" | grep -c '^[<>]')" -eq 2
out=$(cd "$tmp" && MANPATH=$tmp/man systemd-analyze verify "$tmp/egressd.service" 2>&1) && rc=0 || rc=$?
if [[ $rc -eq 0 && -z $out ]]; then
  ok "systemd-analyze verify printed nothing"
else
  bad "systemd-analyze verify (exit $rc):"
  printf '%s\n' "$out" | sed 's/^/     | /'
fi
out=$(cd "$REPO/deploy/systemd" && systemd-analyze verify --man=no egressd.service 2>&1) || true
if [[ $out == *"/usr/sbin/egressd is not executable"* && $(grep -vc 'is not executable' <<<"$out") -eq 0 ]]; then
  ok "the unit as shipped: verify's only complaint is that /usr/sbin/egressd is not installed here"
elif [[ -x /usr/sbin/egressd && -z $out ]]; then
  ok "the unit as shipped: verify printed nothing (/usr/sbin/egressd is installed)"
else
  bad "the unit as shipped: unexpected output from systemd-analyze verify:"
  printf '%s\n' "$out" | sed 's/^/     | /'
fi

step "systemd-analyze security --offline=yes"
out=$(systemd-analyze security --offline=yes --no-pager "$UNIT" 2>&1) || true
score=$(sed -n 's/.*Overall exposure level for egressd.service: \([0-9.]*\).*/\1/p' <<<"$out")
echo "$out" | grep -E '^✗' | sed 's/^/     /' || true
if [[ -n $score ]] && awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(s <= m)}'; then
  ok "exposure level $score (at most $MAX_EXPOSURE)"
else
  bad "exposure level ${score:-unknown}, want at most $MAX_EXPOSURE"
fi
threshold=$(awk -v m="$MAX_EXPOSURE" 'BEGIN {print int(m * 10)}')
check "systemd-analyze security --threshold=$threshold exits 0" \
  systemd-analyze security --offline=yes --no-pager --threshold="$threshold" "$UNIT"

step "settings egressd depends on"
has() { grep -qxE "$1" "$UNIT"; }
check "ExecStart=/usr/sbin/egressd run --config /etc/egressd/egressd.yaml" \
  has 'ExecStart=/usr/sbin/egressd run --config /etc/egressd/egressd.yaml'
check "AmbientCapabilities= and CapabilityBoundingSet= are CAP_BPF CAP_PERFMON CAP_NET_ADMIN" \
  bash -c "grep -qx 'AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN' '$UNIT' && grep -qx 'CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN' '$UNIT'"
check "bpf() is allowed after @privileged is removed" \
  bash -c "grep -n '^SystemCallFilter=' '$UNIT' | tail -1 | grep -q 'SystemCallFilter=bpf'"
check "no PrivateUsers= (capabilities in a user namespace do not reach bpf())" \
  bash -c "! grep -qx 'PrivateUsers=yes' '$UNIT'"
check "no PrivateNetwork= (the metrics listener is on the host's network)" \
  bash -c "! grep -qx 'PrivateNetwork=yes' '$UNIT'"
check "no ProtectProc=invisible (it hides other users' processes)" \
  bash -c "! grep -qx 'ProtectProc=invisible' '$UNIT'"
check "no ProcSubset=pid (/proc/sys/kernel/random/boot_id is read)" \
  bash -c "! grep -qx 'ProcSubset=pid' '$UNIT'"
check "no InaccessiblePaths= over /sys or /proc" \
  bash -c "! grep -qE '^(InaccessiblePaths|TemporaryFileSystem)=.*(/sys|/proc)' '$UNIT'"
check "the log directory is writable (LogsDirectory=egressd) and the config's log.file is in it" \
  bash -c "grep -qx 'LogsDirectory=egressd' '$UNIT' && grep -qE '^  file: \"/var/log/egressd/' '$REPO/deploy/egressd.yaml'"

finish
