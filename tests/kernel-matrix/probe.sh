#!/bin/sh
# What this kernel offers egressd, printed between markers that
# tests/kernel-matrix/report.py reads: `egressd check` verbatim, the tail of
# `egressd -v check`, which programs load and attach one by one
# (egressd-hook-probe on egressd's object and on hooks.bpf.o), tracefs and LSM
# facts, and a digest of `bpftool feature probe kernel`.
#
# Runs as a child of PID 1 inside each matrix VM (dash, busybox applets) and
# on the host.
# Environment: EGRESSD, EGRESSD_OBJ, HOOK_PROBE, HOOKS_OBJ (required);
# BPFTOOL (empty: skip bpftool); PROBE_TMP (scratch directory, /tmp);
# EGRESSD_CHECK_CONFIG (a config file for egressd check, optional).
set -u

tmp=${PROBE_TMP:-/tmp}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
begin() { echo "@@matrix begin $1 t=$(uptime_s)"; }
end() { echo "@@matrix end $1 rc=$2 t=$(uptime_s)"; }

check_config=
[ -n "${EGRESSD_CHECK_CONFIG:-}" ] && check_config="-c $EGRESSD_CHECK_CONFIG"
begin check
# shellcheck disable=SC2086 # check_config is empty or two words
"$EGRESSD" check $check_config 2>&1
end check $?

begin check-verbose
# libbpf and the verifier write to stderr; their last lines say why a load failed.
# shellcheck disable=SC2086
"$EGRESSD" -v check $check_config >/dev/null 2>"$tmp/check-verbose.txt"
rc=$?
tail -n 25 "$tmp/check-verbose.txt"
end check-verbose $rc

# Cgroup programs attach to the cgroup v2 root, /sys/fs/cgroup if it is one.
cgroup=$(awk '$3 == "cgroup2" { print $2 }' /proc/mounts | sort | head -n 1)
grep -q "^[^ ]* /sys/fs/cgroup cgroup2 " /proc/mounts && cgroup=/sys/fs/cgroup
begin hooks
"$HOOK_PROBE" --cgroup "${cgroup:-/sys/fs/cgroup}" "$HOOKS_OBJ" "$EGRESSD_OBJ" 2>&1
end hooks $?

begin features
echo "feature kernel $(uname -r)"
if [ -e /sys/kernel/btf/vmlinux ]; then echo "feature btf yes"; else echo "feature btf no"; fi
tracing=
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
  [ -e "$d/available_events" ] && { tracing=$d; break; }
done
echo "feature tracefs ${tracing:-none}"
if [ -n "$tracing" ]; then
  if [ -e "$tracing/kprobe_events" ]; then echo "feature kprobe_events yes"; else echo "feature kprobe_events no"; fi
  if [ -d "$tracing/events/sock/sock_send_length" ]; then echo "feature sock_send_length_event yes"
  else echo "feature sock_send_length_event no"; fi
  if grep -qw tcp_sendmsg "$tracing/available_filter_functions" 2>/dev/null; then
    echo "feature ftrace_tcp_sendmsg yes"
  else
    echo "feature ftrace_tcp_sendmsg no"
  fi
fi
if [ -r /sys/kernel/security/lsm ]; then echo "feature lsm $(cat /sys/kernel/security/lsm)"
else echo "feature lsm unknown (securityfs not mounted)"; fi
end features 0

if [ -n "${BPFTOOL:-}" ]; then
  begin bpftool
  "$BPFTOOL" feature probe kernel >"$tmp/bpftool.txt" 2>&1
  rc=$?
  awk '
    /^eBPF program_type / { print; next }
    /^eBPF map_type (sk_storage|task_storage|inode_storage|ringbuf) / { print; next }
    /CONFIG_(BPF_LSM|KPROBES|KPROBE_EVENTS|DEBUG_INFO_BTF|BPF_JIT|HAVE_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) / { print; next }
    /^eBPF helpers supported for program type / { type = $NF; sub(":", "", type); next }
    type ~ /^(tracing|kprobe|lsm|cgroup_skb|cgroup_sock|cgroup_sock_addr)$/ &&
      $2 ~ /^bpf_(loop|sock_from_file|sk_storage_get|task_storage_get|get_current_task_btf|get_socket_cookie|ringbuf_reserve|d_path|skc_to_tcp_sock)$/ {
        print "helper " type " " $2
    }
  ' "$tmp/bpftool.txt"
  end bpftool $rc
fi
