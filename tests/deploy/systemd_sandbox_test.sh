#!/usr/bin/env bash
# Runs the real `egressd run` the way deploy/systemd/egressd.service confines
# it, without systemd, and checks that it still does its job.
#
# The confinement, read from the unit file:
#   - a non-root user (65534, standing in for DynamicUser=) holding only the
#     unit's AmbientCapabilities= (also its bounding set), with no_new_privs;
#   - a read-only /, /sys (so /sys/kernel/btf) and /sys/fs/cgroup, as
#     ProtectSystem=strict, ProtectKernelTunables= and ProtectControlGroups=
#     make them, with one writable log directory (LogsDirectory=);
#   - under strace: every system call, socket family and memory mapping the
#     agent makes is checked against SystemCallFilter=,
#     RestrictAddressFamilies= and MemoryDenyWriteExecute= (syscall_filter.py).
# With that, egressd must load its programs, attach the cgroup ones at the
# cgroup2 root, count the bytes of a process of another user and of a
# process started before it (whose command line it reads from /proc), serve
# metrics, and exit 0 on SIGTERM.
#
# It also shows, with bpftool and the same BPF object, that the kernel refuses
# the programs when any one of the unit's capabilities is missing, and that
# without CAP_SYS_PTRACE /proc/PID/exe of another user's process cannot be
# opened (what the unit gives up: see docs/DEPLOY.md).
#
# Needs root and a kernel egressd runs on; exits 77 (skipped) otherwise, or
# fails when EGRESSD_REQUIRE_BPF=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
UNIT=$REPO/deploy/systemd/egressd.service
PY=/usr/bin/python3

[[ $EUID -eq 0 ]] || skip "needs root to load BPF programs and change users"
need_pkgs strace bpftool clang python3 util-linux curl
EGRESSD=$(egressd_bin)
if ! "$EGRESSD" check --no-load >/dev/null 2>&1; then
  reason=$("$EGRESSD" check --no-load 2>&1 | tail -1)
  [[ ${EGRESSD_REQUIRE_BPF:-} == 1 ]] && { echo "FAIL egressd cannot run here: $reason"; exit 1; }
  skip "egressd cannot run on this machine: $reason"
fi

cgroup2=$("$EGRESSD" check --no-load 2>/dev/null | sed -n 's/.*cgroup v2 *mounted at //p' | head -1)

# --- the unit's capabilities --------------------------------------------------------
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tr '\n' ' '; }
ambient=$(unit_value AmbientCapabilities)
bounding=$(unit_value CapabilityBoundingSet)
caps=$(for c in $ambient; do c=${c#CAP_}; echo "+${c,,}"; done | sort | paste -sd, -)
step "capabilities in the unit: $ambient"
check "CapabilityBoundingSet= and AmbientCapabilities= name the same capabilities" \
  test "$(tr ' ' '\n' <<<"$ambient" | sort | xargs)" = "$(tr ' ' '\n' <<<"$bounding" | sort | xargs)"
grep -q '^NoNewPrivileges=yes' "$UNIT" && grep -q '^DynamicUser=yes' "$UNIT" &&
  ok "the unit runs as a transient non-root user with no_new_privs" || bad "DynamicUser=yes and NoNewPrivileges=yes expected"

# --- the kernel needs each of them ----------------------------------------------------
step "the kernel refuses egressd's BPF programs without any one of them (bpftool prog loadall)"
# The programs egressd loads here: its object without the fexit and kprobe fallbacks,
# which it loads only on kernels without tp_btf/sock_send_length (and which
# this kernel refuses anyway), and without the live-counter iterators, which
# this VM's build refuses whatever the capabilities (egressd then reads the
# hash store instead: docs/KERNELS.md).
SRC=$(cd "$(dirname "$0")/../.." && pwd)
GEN=$(dirname "$EGRESSD")/bpf
OBJ=$(mktemp -d /tmp/egressd-obj.XXXXXX)/egressd-tracepoint.bpf.o
on_exit "rm -rf $(dirname "$OBJ")"
if ! clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -DEGRESSD_NO_BYTES_FALLBACKS -DEGRESSD_NO_LIVE_ITERATORS -I"$GEN" -I"$SRC/bpf" \
  -c "$SRC/bpf/egressd.bpf.c" -o "$OBJ" 2>/tmp/egressd-clang-$$.log; then
  bad "cannot build the BPF object from $SRC/bpf with $GEN/vmlinux.h: $(head -3 /tmp/egressd-clang-$$.log)"
else
  # bpftool pins what it loads; without CAP_SYS_ADMIN it cannot mount bpffs
  # itself, so it is mounted here first (egressd itself pins nothing).
  if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf
    on_exit "umount /sys/fs/bpf"
  fi
  pin=/sys/fs/bpf/egressd-deploy-test-$$
  on_exit "rm -rf $pin"
  load_with() {
    setpriv --inh-caps=-all,$1 --ambient-caps=-all,$1 --bounding-set=-all,$1 \
      bpftool prog loadall "$OBJ" "$pin" >/tmp/egressd-loadall-$$.log 2>&1
    local rc=$?
    rm -rf "$pin"
    return $rc
  }
  on_exit "rm -f /tmp/egressd-loadall-$$.log"
  if load_with "$caps"; then ok "loads with $caps"; else bad "does not load with $caps: $(grep -m1 -i 'failed\|error' /tmp/egressd-loadall-$$.log)"; fi
  for c in ${caps//,/ }; do
    rest=$(tr ',' '\n' <<<"$caps" | grep -vx -- "$c" | paste -sd, -)
    if load_with "$rest"; then
      bad "still loads without ${c#+}: the unit grants a capability egressd does not need"
    else
      ok "refused without ${c#+}: $(grep -m1 -oE "prog '[a-z_0-9]+': BPF program load failed: [A-Za-z ]+|Couldn't load trivial BPF program" /tmp/egressd-loadall-$$.log || echo refused)"
    fi
  done
fi

# --- the agent in the sandbox ------------------------------------------------------------
step "egressd run as uid 65534 with $caps, no_new_privs, read-only file systems, under strace"
work=$(mktemp -d /tmp/egressd-sandbox.XXXXXX)
chmod 755 "$work"
on_exit "rm -rf $work"
pids=()
on_exit 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null'
as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
cp "$DEPLOY_TESTS/sandbox_traffic.py" "$work/traffic.py"
chmod 755 "$work/traffic.py"
cat >"$work/egressd.yaml" <<'EOF'
flows:
  update_interval_seconds: 60
EOF
"$PY" "$work/traffic.py" sink "$work/port" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
port=$(cat "$work/port")
tok=$$$RANDOM
# Started before the agent: one of another user, one of root with every capability.
"${as_nobody[@]}" "$PY" "$work/traffic.py" client "$port" 100 "$work/go" 200 "pre-nobody-$tok" &
pids+=($!)
"$PY" "$work/traffic.py" client "$port" 101 "$work/go" 201 "pre-root-$tok" &
pids+=($!)
sleep 0.3

# In a private mount namespace: everything read-only but the log directory.
sandbox() {
  unshare -m --propagation private bash -c '
    set -e
    work=$1; shift
    mount --bind "$work" "$work"
    for top in / /sys /proc/sys; do
      mount --rbind "$top" "$top" 2>/dev/null || true
    done
    awk "{print \$5}" /proc/self/mountinfo | sort -u | while read -r m; do
      case "$m" in
        /proc|/proc/[0-9]*|/dev|/dev/*|/run|/run/*|/tmp|"$work"|"$work"/*) continue ;;
      esac
      mount -o remount,bind,ro "$m" 2>/dev/null || true
    done
    exec "$@"' sandbox "$work" "$@"
}
# descendant PID NAME: the pid of the process called NAME under PID (itself included).
descendant() {
  ps -e -o pid=,ppid=,comm= | awk -v root="$1" -v name="$2" '
    { parent[$1] = $2; comm[$1] = $3 }
    END {
      for (p in comm) {
        if (comm[p] != name) continue
        for (q = p; q != "" && q != 0 && q != 1; q = parent[q])
          if (q == root) { print p; exit }
      }
    }'
}
# start_agent NAME [WRAPPER...]: runs egressd in the sandbox, as the unit's
# user and capabilities; sets $agent (egressd's pid) and $launcher.
start_agent() {
  local name=$1
  shift
  mkdir -p "$work/$name"
  chown 65534:65534 "$work/$name"
  sandbox "$@" "${as_nobody[@]}" --no-new-privs --inh-caps=-all,$caps --ambient-caps=-all,$caps \
    --bounding-set=-all,$caps \
    "$EGRESSD" run --config "$work/egressd.yaml" --log-file "$work/$name/events.json" --metrics-addr 127.0.0.1:0 \
    2>"$work/$name/stderr" &
  launcher=$!
  pids+=($launcher)
  agent=
  local i
  for i in $(seq 1200); do
    grep -q agent-started "$work/$name/events.json" 2>/dev/null && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  agent=$(descendant "$launcher" egressd)
  [[ -n $agent ]] && agent_pids+=($agent)
  grep -q agent-started "$work/$name/events.json" 2>/dev/null && [[ -n $agent ]]
}
# stop_agent: SIGTERM, and the exit code of the launcher (egressd's own, also under strace).
stop_agent() {
  kill -TERM "$agent"
  local rc=0
  wait "$launcher" || rc=$?
  return $rc
}
agent_pids=()
on_exit 'for p in "${agent_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done'

if ! start_agent run; then
  bad "the agent did not start: $(cat "$work/run/stderr")"
  finish
  exit 1
fi
status=$(grep -E '^(Uid|CapEff|CapAmb|NoNewPrivs)' "/proc/$agent/status" | tr -s '\t ' ' ' | paste -sd';' -)
ok "agent started: $status"
# statvfs() reports the flags of the mount that path resolution reaches,
# from the agent's mount namespace and root directory.
mounts=$(nsenter -t "$agent" -m -r -w "$PY" -c '
import os, sys
for p in sys.argv[1:]:
    print(p, "ro" if os.statvfs(p).f_flag & os.ST_RDONLY else "rw")' \
  / /usr /etc /sys/kernel/btf "$cgroup2" \
  /proc/sys "$work/run" | paste -sd, -)
if [[ $mounts == *"$work/run rw" ]] && ! grep -qE ' rw,' <<<"$mounts"; then
  ok "read-only for the agent, but its log directory: $mounts"
else
  bad "the sandbox is not as the unit makes it: $mounts"
fi
touch "$work/go"
"${as_nobody[@]}" "$PY" "$work/traffic.py" client "$port" 300 - 3 "post-nobody-$tok"
wait "${pids[1]}" "${pids[2]}" || true
sleep 2.5  # one poll interval: the counters of the closed sockets are read
addr=$(sed -n 's/.*"metrics":{"address":"\([^"]*\)".*/\1/p' "$work/run/events.json" | head -1)
metrics=$(curl -sf "http://$addr/metrics" || true)
if grep -q "^egressd_sent_bytes_total{.*port=\"$port\"" <<<"$metrics"; then
  ok "metrics served at $addr: $(grep -c "^egressd_sent_bytes_total{.*port=\"$port\"" <<<"$metrics") egressd_sent_bytes_total series for the test's port"
else
  bad "no egressd_sent_bytes_total series for port $port at http://$addr/metrics"
fi
rc=0
stop_agent || rc=$?
[[ $rc -eq 0 ]] && ok "SIGTERM: exit code 0" || bad "SIGTERM: exit code $rc; stderr: $(cat "$work/run/stderr")"

step "what egressd logged"
run_report "sandbox_traffic.py check" "$PY" "$work/traffic.py" check "$work/run/events.json" "$port" "$tok"

step "the same under strace: system calls, socket families and mappings against the unit (syscall_filter.py)"
# A second, short run: start, one connection, one poll, SIGTERM. strace slows
# the agent down, so it is kept out of the run above.
if start_agent traced strace -f -qq -o "$work/strace.out"; then
  "$PY" "$work/traffic.py" client "$port" 50 - 50 "traced-$tok"
  sleep 3
  rc=0
  stop_agent || rc=$?
  [[ $rc -eq 0 ]] && ok "under strace: started, counted, exit code 0 on SIGTERM" || bad "under strace: exit code $rc"
  run_report "syscall_filter.py" "$PY" "$DEPLOY_TESTS/syscall_filter.py" "$UNIT" "$work/strace.out" "$(readlink -f "$EGRESSD")"
else
  bad "the agent did not start under strace: $(cat "$work/traced/stderr")"
fi

step "what the unit gives up without CAP_SYS_PTRACE"
sleep 30 &
root_proc=$!
pids+=($root_proc)
if setpriv "${as_nobody[@]:1}" --inh-caps=-all,$caps --ambient-caps=-all,$caps --bounding-set=-all,$caps \
  cat "/proc/$root_proc/exe" >/dev/null 2>&1; then
  bad "/proc/PID/exe of root's process opened without CAP_SYS_PTRACE: reconsider docs/DEPLOY.md"
else
  ok "without CAP_SYS_PTRACE, /proc/PID/exe of root's process cannot be opened (only match.sha256 tool matchers and the /proc fallback need it)"
fi
if setpriv "${as_nobody[@]:1}" --inh-caps=-all,$caps,+sys_ptrace --ambient-caps=-all,$caps,+sys_ptrace \
  --bounding-set=-all,$caps,+sys_ptrace cat "/proc/$root_proc/exe" >/dev/null 2>&1; then
  ok "with CAP_SYS_PTRACE added (the drop-in in docs/DEPLOY.md) it can"
else
  bad "/proc/PID/exe still unreadable with CAP_SYS_PTRACE"
fi
kill "$root_proc" 2>/dev/null || true

finish
