#!/bin/sh
# PID 1 of a kernel matrix VM (tests/kernel-matrix/matrix.sh packs it as /init).
# Mounts what egressd and its tests need, loads the modules the kernel has as
# modules, runs probe.sh (egressd check and the hook probes) and the kernel
# tests, and powers off. Everything goes to the serial console between
# "@@matrix" markers, which tests/kernel-matrix/report.py reads on the host.
export PATH=/usr/sbin:/usr/bin:/usr/libexec/egressd-matrix/bb
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /tmp /sys/fs/cgroup /sys/fs/bpf
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
# Only emergencies from the kernel from here on: its messages would break
# the markers' lines.
dmesg -n 1
hostname egressd-matrix

set -a  # probe.sh and the tests read these
. /etc/egressd-matrix/env
set +a
echo "@@matrix boot $(uname -r) t=$(cut -d' ' -f1 /proc/uptime)"
echo "@@matrix mounts $(awk '{printf "%s:%s ", $2, $3}' /proc/mounts)"

if [ -s /etc/egressd-matrix/modules ]; then
  echo "@@matrix begin modules t=$(cut -d' ' -f1 /proc/uptime)"
  failed=0
  while read -r module; do
    if out=$(insmod "$module" 2>&1); then
      echo "module ${module##*/} ok"
    else
      echo "module ${module##*/} FAIL $out"
      failed=1
    fi
  done </etc/egressd-matrix/modules
  echo "@@matrix end modules rc=$failed t=$(cut -d' ' -f1 /proc/uptime)"
fi
ip link set lo up

# The tests check the agent's log with tests/support/validate_events.py: make
# sure the packed python3 and jsonschema run (the sample has errors on purpose).
echo "@@matrix begin python t=$(cut -d' ' -f1 /proc/uptime)"
$VALIDATE /etc/egressd-matrix/sample-events.json >/tmp/python-check.txt 2>&1
rc=$?
tail -n 5 /tmp/python-check.txt
echo "@@matrix end python rc=$rc t=$(cut -d' ' -f1 /proc/uptime)"

# --kernel-config: a forced kernel section for egressd check and the tests'
# agents (tests/support/harness.cpp reads EGRESSD_TEST_KERNEL).
if [ -n "$KERNEL_CONFIG" ]; then
  { echo "kernel:"; echo "$KERNEL_CONFIG" | sed 's/^/  /'; } >/tmp/kernel-config.yaml
  export EGRESSD_CHECK_CONFIG=/tmp/kernel-config.yaml
  export EGRESSD_TEST_KERNEL="$KERNEL_CONFIG"
fi

sh /usr/libexec/egressd-matrix/probe.sh

if [ -n "$TEST_FILTER" ]; then
  echo "@@matrix begin tests t=$(cut -d' ' -f1 /proc/uptime)"
  cd /tmp || exit 1
  { EGRESSD_REQUIRE_BPF=1 timeout -s KILL "$TEST_TIMEOUT" "$KERNEL_TESTS" \
      --gtest_filter="$TEST_FILTER" --gtest_color=no 2>&1; echo $? >/tmp/tests.rc; } | tee /tmp/tests.out
  rc=$(cat /tmp/tests.rc)
  echo "@@matrix end tests rc=$rc t=$(cut -d' ' -f1 /proc/uptime)"
  # Under emulation a test now and then misses a deadline: the failed ones
  # run once more. report.py names them as flaky when they pass then, and the
  # kernel fails when they fail again.
  failed=$(sed -n 's/^\[  FAILED  \] \([A-Za-z][^ ,]*\).*/\1/p' /tmp/tests.out | sort -u | tr '\n' ':' | sed 's/:$//')
  if [ "$rc" != 0 ] && [ -n "$failed" ]; then
    echo "@@matrix begin retry t=$(cut -d' ' -f1 /proc/uptime)"
    EGRESSD_REQUIRE_BPF=1 timeout -s KILL "$TEST_TIMEOUT" "$KERNEL_TESTS" \
      --gtest_filter="$failed" --gtest_color=no 2>&1
    echo "@@matrix end retry rc=$? t=$(cut -d' ' -f1 /proc/uptime)"
  fi
fi

echo "@@matrix done t=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
sleep 2
reboot -f
