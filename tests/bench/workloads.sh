#!/usr/bin/env bash
# egressd workloads benchmark (a command, not a test): what the agent, and
# the tools one would use instead of it, cost workloads that look like real
# use, side by side in one run.
#
#   sudo tests/bench/workloads.sh > report.md
#
# Workloads (WORKLOADS), client pinned to CLIENT_CPU, server to SERVER_CPU:
#   veth    a sink in the network namespace egb-sink, behind the veth pair
#           egb-h (10.213.0.1/30, here) -- egb-n (10.213.0.2/30, there), the
#           path traffic takes to a NIC. tests/bench/loadgen.cpp sends to it
#           (--dst) and `loadgen sink` runs there (ip netns exec):
#             veth-send     64-byte TCP sends per second on one connection
#             veth-connect  short TCP connections per second (connect, send
#                           64 bytes, abortive close)
#   iperf3  bulk TCP throughput, one stream, Gbit/s at the receiver:
#             iperf3-veth   server in the namespace, client here
#             iperf3-lo     both on 127.0.0.1
#   http    nginx (one worker, its config in a temp dir, run as a process of
#           this script) serving a FILE_BYTES static file on 10.213.0.2:8080
#           in the namespace; wrk here, one thread, WRK_CONNS connections:
#             http-keepalive  requests/s on kept-alive connections
#             http-close      requests/s with `Connection: close` (a new
#                             connection per request)
#
# Configurations (CONFIGS; baseline is always run):
#   baseline          no BPF program
#   egressd           `egressd run --metrics-addr 127.0.0.1:0 --log-file FILE`
#                     (as run.sh starts it: its defaults, plus log.max_files
#                     1000 so that this script can count the lines it logged)
#   empty             one empty program on tp_btf/sock_send_length
#                     (empty.bpf.c, attach_empty.c)
#   bpftrace-tcplife  tests/bench/tcplife.bt: bpftrace's equivalent of bcc's
#                     tcplife, one printed line per TCP connection when it
#                     closes (pid, comm, addresses, ports, tx/rx bytes,
#                     duration), on tracepoint:sock:inet_sock_set_state keyed
#                     by the sock pointer; output to a file
#   bpftrace-bytes    the one-liner run.sh uses:
#                     tracepoint:sock:sock_send_length { @bytes[pid] = sum(args->ret); }
#   nethogs           `nethogs -t -a -d 1 egb-h lo` (trace mode, the veth's host
#                     end and loopback), output to a file
#
# In ROUNDS rounds every configuration runs once, in the order of CONFIGS in
# odd rounds and the reverse in even ones, with a baseline run before the
# first and after each. In each of these runs one process of the
# configuration stays up while every workload runs once, SECS seconds each.
# A configuration's figure is divided by the mean of the baseline runs just
# before and just after it (this VM's speed drifts from minute to minute).
# Reported per workload and configuration: the median, the spread, and the
# median (and range) of those ratios. Also, for the short-connection
# workloads, how many connections egressd and the tcplife script logged.
# Markdown report on stdout; progress on stderr.
#
# As in run.sh, the script waits (up to QUIET_WAIT s) until the machine is
# quiet -- before the first measured run of each configuration run, before
# a repeat, and after a run the configuration's process was still busy from
# -- and repeats a run (MAX_ATTEMPTS tries in all) during which anything but
# this script's processes used more than OTHER_MAX of a CPU, or (veth-send)
# the sink fell behind. After each run it waits until the configuration's
# process has been idle for 0.2 s (at most 5 s), and reports the CPU time
# it used then. Other sessions' BPF programs on the measured paths are
# waited for, or noted.
#
# Needs root, 2+ CPUs, iproute2, g++, cc, clang, bpftool, libbpf-dev, jq,
# curl, and the Debian packages iperf3, nginx-light, wrk, bpftrace, nethogs
# (apt-get install iperf3 nginx-light wrk bpftrace nethogs); it stops at
# once, naming the package, when one is missing. It uses the egressd binary
# in EGRESSD_BENCH_BUILD (copied at the start, so that a rebuild during the
# run does not change it) and builds nothing there.
#
# Traffic goes only to 127.0.0.1 and to the veth pair's 10.213.0.1/30 and
# 10.213.0.2/30, which it creates (it stops if anything already uses
# 10.213.0.0/30, or if the route to 10.213.0.2 is not the veth); loadgen
# refuses destinations outside 127.0.0.0/8 and 10.213.0.0/16.
# On exit it stops every process it started (by pid) and deletes the
# namespace and the veth pair.
#
# Environment: ROUNDS (3), SECS (3, per workload run), WORKLOADS ("veth
# iperf3 http"), CONFIGS ("egressd empty bpftrace-tcplife bpftrace-bytes
# nethogs"), CLIENT_CPU (0), SERVER_CPU (1), WRK_CONNS (16), FILE_BYTES
# (1024), OTHER_MAX (0.15 CPU), QUIET_WAIT (10 s), MAX_ATTEMPTS (2), RAW_DIR
# (keep the raw results there), EGRESSD_BENCH_BUILD (the build directory
# with egressd; default this checkout's build/).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_SRC=$ROOT/tests/bench
BUILD=${EGRESSD_BENCH_BUILD:-$ROOT/build}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
read -r -a WORKLOADS <<<"${WORKLOADS:-veth iperf3 http}"
read -r -a CONFIGS <<<"${CONFIGS:-egressd empty bpftrace-tcplife bpftrace-bytes nethogs}"
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
WRK_CONNS=${WRK_CONNS:-16}
FILE_BYTES=${FILE_BYTES:-1024}
OTHER_MAX=${OTHER_MAX:-0.15}
QUIET_WAIT=${QUIET_WAIT:-10}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-2}
RAW_DIR=${RAW_DIR:-}

NS=egb-sink
VETH_HOST=egb-h
VETH_NS=egb-n
HOST_ADDR=10.213.0.1
NS_ADDR=10.213.0.2
SINK_CONNECT_PORT=9000 # the epoll sink, for veth-connect
SINK_SEND_PORT=9001    # the spinning sink, for veth-send (one per run)
IPERF_VETH_PORT=5201
IPERF_LO_PORT=5202
HTTP_PORT=8080
BPFTRACE_BYTES_PROG='tracepoint:sock:sock_send_length { @bytes[pid] = sum(args->ret); }'

T_START=$(date +%s)
log() { printf '[workloads %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- checks --------------------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "needs root (BPF programs, network namespaces): sudo $0"
(($(nproc) >= 2)) || die "needs at least 2 CPUs"
need() { command -v "$1" >/dev/null || die "missing $1 (apt-get install $2)"; }
need ip iproute2
need g++ g++
need cc gcc
need clang clang
need bpftool bpftool
need jq jq
need curl curl
need taskset util-linux
[[ -f /usr/include/bpf/libbpf.h ]] || die "missing libbpf headers (apt-get install libbpf-dev)"
for w in "${WORKLOADS[@]}"; do
  case $w in
    veth) ;;
    iperf3) need iperf3 iperf3 ;;
    http)
      need nginx nginx-light
      need wrk wrk
      ;;
    *) die "unknown workload $w (veth, iperf3, http)" ;;
  esac
done
for c in "${CONFIGS[@]}"; do
  case $c in
    egressd | empty) ;;
    bpftrace-tcplife | bpftrace-bytes) need bpftrace bpftrace ;;
    nethogs) need nethogs nethogs ;;
    baseline) die "baseline is always run; leave it out of CONFIGS" ;;
    *) die "unknown configuration $c (egressd, empty, bpftrace-tcplife, bpftrace-bytes, nethogs)" ;;
  esac
done
[[ -x $BUILD/egressd ]] || die "no egressd binary in $BUILD (set EGRESSD_BENCH_BUILD)"
CLK_TCK=$(getconf CLK_TCK)
has_workload() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }
has_config() { [[ " ${CONFIGS[*]} " == *" $1 "* ]]; }

# The measurements, in the order each configuration run makes them.
# The two with a connection per operation come last: a configuration that
# logs or looks up connections may be busy for a while after them.
MEASUREMENTS=()
has_workload veth && MEASUREMENTS+=(veth-send)
has_workload iperf3 && MEASUREMENTS+=(iperf3-veth iperf3-lo)
has_workload http && MEASUREMENTS+=(http-keepalive)
has_workload veth && MEASUREMENTS+=(veth-connect)
has_workload http && MEASUREMENTS+=(http-close)
unit_of() {
  case $1 in
    veth-send) echo "sends/s" ;;
    veth-connect) echo "conn/s" ;;
    iperf3-*) echo "Gbit/s" ;;
    http-*) echo "req/s" ;;
  esac
}
title_of() {
  case $1 in
    veth-send) echo "64-byte TCP sends per second over the veth (one connection, TCP_NODELAY)" ;;
    veth-connect) echo "Short TCP connections per second over the veth (connect, send 64 bytes, abortive close)" ;;
    iperf3-veth) echo "iperf3 bulk throughput over the veth (one stream)" ;;
    iperf3-lo) echo "iperf3 bulk throughput over loopback (one stream)" ;;
    http-keepalive) echo "HTTP requests per second, kept-alive connections (nginx in the namespace, wrk -t1 -c$WRK_CONNS)" ;;
    http-close) echo "HTTP requests per second, a new connection per request (wrk -H 'Connection: close', -t1 -c$WRK_CONNS)" ;;
  esac
}

# --- state and cleanup -----------------------------------------------------------------
WORK=$(mktemp -d /tmp/egressd-workloads.XXXXXX)
chmod 755 "$WORK" # nginx's worker (www-data) reads the file under it
# One line per kept run:
#  1 config 2 round 3 measurement 4 value 5 other_cpu 6 attempts 7 slot
#  8 config_cpu_pct (the configuration's process during the run, % of one CPU)
#  9 extra 10 config_tail_s (its CPU seconds after the run, until it was idle)
RESULTS=$WORK/results.tsv
# One line per configuration run and short-connection measurement:
#  1 config 2 round 3 measurement 4 connections 5 logged 6 note
LOGGED_RESULTS=$WORK/logged.tsv
: >"$RESULTS"
: >"$LOGGED_RESULTS"
STARTED_PID=""   # the configuration's process, if any
STARTED_SIG=TERM # what stops it (bpftrace ignores SIGTERM)
SERVER_PIDS=()   # long-lived servers: sinks, iperf3 -s, nginx master
SEND_SINK_PID="" # the spinning sink of the current veth-send run
CLIENT_PID=""    # the client running now
MOUNTED_TRACEFS=0
MADE_NS=0
MADE_VETH=0

stop_pid() { # PID [SIGNAL]: signal it, wait up to 5 s, then SIGKILL; reaps it if it is our child
  local pid=$1 sig=${2:-TERM} i
  [[ -n $pid ]] || return 0
  kill -"$sig" "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  for ((i = 0; i < 50; i++)); do
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == [ZX] || ! -e /proc/$pid ]] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  trap - EXIT INT TERM
  [[ -n $CLIENT_PID ]] && stop_pid "$CLIENT_PID"
  [[ -n $STARTED_PID ]] && stop_pid "$STARTED_PID" "$STARTED_SIG"
  [[ -n $SEND_SINK_PID ]] && stop_pid "$SEND_SINK_PID"
  for p in "${SERVER_PIDS[@]}"; do stop_pid "$p"; done
  # nginx's worker, should it outlive its master (its pid was recorded).
  [[ -f $WORK/nginx-worker.pid ]] && stop_pid "$(<"$WORK/nginx-worker.pid")"
  if ((MADE_NS)); then ip netns del "$NS" 2>/dev/null || log "warning: could not delete netns $NS"; fi
  if ((MADE_VETH)) && ip link show "$VETH_HOST" >/dev/null 2>&1; then
    ip link del "$VETH_HOST" 2>/dev/null || log "warning: could not delete $VETH_HOST"
  fi
  if ((MOUNTED_TRACEFS)); then umount /sys/kernel/tracing 2>/dev/null || true; fi
  if [[ -n $RAW_DIR ]]; then
    { mkdir -p "$RAW_DIR" && cp "$RESULTS" "$LOGGED_RESULTS" "$RAW_DIR"/ && cp "$WORK"/*.out "$WORK"/*.err "$RAW_DIR"/; } 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A command that fails where set -e stops the script: say which.
trap 'rc=$?; log "error: line $LINENO: $BASH_COMMAND (exit $rc)"' ERR

# --- build the helpers (in the temp dir) --------------------------------------------------
BIN=$WORK/bin
mkdir -p "$BIN"
log "building the load generator and the empty program in $BIN"
g++ -O2 -std=c++20 -pthread -Wall -Wextra -o "$BIN/loadgen" "$BENCH_SRC/loadgen.cpp"
if has_config empty; then
  cc -O2 -Wall -o "$BIN/attach_empty" "$BENCH_SRC/attach_empty.c" -lbpf
  clang -O2 -g -target bpf -I/usr/include/"$(gcc -print-multiarch)" \
    -c "$BENCH_SRC/empty.bpf.c" -o "$BIN/empty.bpf.o"
fi
EGRESSD=$BIN/egressd
cp "$BUILD/egressd" "$EGRESSD"
EGRESSD_SHA=$(sha256sum "$EGRESSD" | cut -c1-12)
EGRESSD_MTIME=$(date -u -r "$BUILD/egressd" '+%Y-%m-%d %H:%M UTC')

# --- the namespace and the veth pair --------------------------------------------------------
if ip netns list | grep -qw "$NS"; then die "netns $NS exists already (a run that was killed?): ip netns del $NS"; fi
if ip link show "$VETH_HOST" >/dev/null 2>&1; then die "$VETH_HOST exists already: ip link del $VETH_HOST"; fi
if ip -4 -o addr show | grep -q ' 10\.213\.0\.'; then die "an interface here has a 10.213.0.x address already"; fi
if ip -4 route show | grep -q '^10\.213\.'; then die "a route to 10.213.x.x exists already: $(ip -4 route show | grep '^10\.213\.')"; fi
log "creating netns $NS and the veth pair $VETH_HOST ($HOST_ADDR/30) -- $VETH_NS ($NS_ADDR/30)"
ip netns add "$NS"
MADE_NS=1
ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$NS"
MADE_VETH=1
# No IPv6 on the pair: no router solicitations or DAD in the captures.
sysctl -qw "net.ipv6.conf.$VETH_HOST.disable_ipv6=1" 2>/dev/null || true
ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$VETH_NS.disable_ipv6=1" 2>/dev/null || true
ip addr add "$HOST_ADDR/30" dev "$VETH_HOST"
ip link set "$VETH_HOST" up
ip -n "$NS" addr add "$NS_ADDR/30" dev "$VETH_NS"
ip -n "$NS" link set "$VETH_NS" up
ip -n "$NS" link set lo up
# Nothing is sent to the namespace's address until the route to it is the veth.
route_dev=$(ip -4 -o route get "$NS_ADDR" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
[[ $route_dev == "$VETH_HOST" ]] || die "the route to $NS_ADDR goes through '${route_dev}', not $VETH_HOST"
for ((i = 0; i < 50; i++)); do
  [[ $(cat "/sys/class/net/$VETH_HOST/operstate") == up ]] && break
  sleep 0.1
done
# (Only for commands run in the foreground: a function run in the background
# would be a subshell, and $! its pid, not the command's.)
in_ns() { ip netns exec "$NS" "$@"; }

# --- tracefs (bpftrace reads tracepoint formats there) ---------------------------------------
if has_config bpftrace-tcplife || has_config bpftrace-bytes; then
  if [[ ! -d /sys/kernel/tracing/events ]]; then
    mount -t tracefs tracefs /sys/kernel/tracing && MOUNTED_TRACEFS=1
  fi
fi

# --- helpers ------------------------------------------------------------------------------
cpu_ticks() { # utime+stime of a process (all its threads), in clock ticks; 0 if gone
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  awk '{print $12 + $13}' <<<"$stat"
}
child_ticks() { # cutime+cstime of this shell: the CPU of the children it reaped
  local stat
  stat=$(<"/proc/$$/stat")
  stat=${stat##*) }
  awk '{print $14 + $15}' <<<"$stat"
}
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; } # all CPUs
now_ns() { date +%s%N; }
fmt_val() { # value unit
  awk -v x="$1" -v u="$2" 'BEGIN {if (x == "NA" || x == "") print "NA"; else if (u == "Gbit/s") printf "%.2f", x; else printf "%d", x + 0.5}'
}
# Numbers on stdin -> "median min max n" (NA if none).
summary() {
  sort -g | awk '{v[NR] = $1}
    function q(p,  h, l) {h = 1 + (NR - 1) * p; l = int(h); return l >= NR ? v[NR] : v[l] + (h - l) * (v[l + 1] - v[l])}
    END {if (NR == 0) {print "NA NA NA 0"; exit}
      print q(0.5), v[1], v[NR], NR}'
}

wait_for_line() { # FILE SECONDS PATTERN [PID that must stay alive]
  local file=$1 secs=$2 pattern=$3 pid=${4:-} i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}

# Our processes whose CPU does not count as other work: the configuration's,
# the servers (with nginx's worker), the send sink, and the kernel's
# softirq threads (the network stack's deferred work for our traffic).
# Clients are reaped by this shell and counted through child_ticks.
KSOFTIRQD_PIDS=$(pgrep -x 'ksoftirqd/[0-9]+' | tr '\n' ' ' || true)
our_pids() {
  echo "$STARTED_PID ${SERVER_PIDS[*]} $SEND_SINK_PID $KSOFTIRQD_PIDS"
  [[ -f $WORK/nginx-worker.pid ]] && cat "$WORK/nginx-worker.pid"
  true
}
our_ticks() {
  local p sum=0
  for p in $(our_pids); do sum=$((sum + $(cpu_ticks "$p"))); done
  echo "$sum"
}

# Waits (up to QUIET_WAIT s) until the machine uses less than OTHER_MAX of a
# CPU over QUIET_WINDOW s (everything counts, our servers and the
# configuration's process included: egressd may still be logging).
QUIET_WINDOW=0.2
NOISY_WAITS=0
quiet_wait() {
  local b0 b1 i w0 w1 until=$(($(date +%s) + QUIET_WAIT))
  for ((i = 0; $(date +%s) < until; i++)); do
    b0=$(busy_ticks)
    w0=$(now_ns)
    sleep "$QUIET_WINDOW"
    b1=$(busy_ticks)
    w1=$(now_ns)
    awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v max="$OTHER_MAX" -v ns=$((w1 - w0)) 'BEGIN {exit !(d / hz / (ns / 1e9) < max)}' && return 0
    ((i % 20 == 19)) && log "  waiting for the machine to go quiet ($(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) 'BEGIN {printf "%.2f", d / hz / (ns / 1e9)}') CPUs busy)"
  done
  NOISY_WAITS=$((NOISY_WAITS + 1))
  log "  the machine stayed busy for ${QUIET_WAIT}s; measuring anyway"
}

# As in run.sh: BPF programs of others on the measured paths.
hooked_progs() {
  bpftool prog show -j 2>/dev/null | jq -r '.[] | select(.type | IN("tracing", "raw_tracepoint", "tracepoint",
    "kprobe", "perf_event", "cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "sock_ops", "sk_msg", "lsm"))
    | "\(.type) \(.name // "-")"' | sort
}
FOREIGN_NOTES=()
ALLOWED_PROGS=""
check_foreign_progs() {
  local now i
  for ((i = 0; i < QUIET_WAIT * 10; i++)); do
    now=$(hooked_progs)
    [[ -z $(comm -13 <(echo "$ALLOWED_PROGS") <(echo "$now")) ]] && return 0
    ((i == 20)) && log "  BPF programs loaded by someone else ($(tr '\n' ' ' <<<"$now")); waiting up to ${QUIET_WAIT}s for them to go"
    sleep 0.1
  done
  FOREIGN_NOTES+=("$1: $(comm -13 <(echo "$ALLOWED_PROGS") <(echo "$now") | tr '\n' ',' | sed 's/,$//; s/,/, /g')")
  log "  warning: someone else's BPF programs stay loaded; measuring with them: $(tr '\n' ' ' <<<"$now")"
  ALLOWED_PROGS=$(sort -u <(echo "$ALLOWED_PROGS") <(echo "$now") | sed '/^$/d')
}

# --- configurations -------------------------------------------------------------------------
EGRESSD_LOG=$WORK/egressd.log
EGRESSD_CONFIG=$WORK/egressd.yaml
# state.pin: false: a stopped agent's pinned programs would keep running under the next phases.
printf 'log:\n  max_files: 1000\nstate:\n  pin: false\n' >"$EGRESSD_CONFIG"
start_egressd() {
  rm -f "$EGRESSD_LOG" "$EGRESSD_LOG".[0-9]*
  "$EGRESSD" run -c "$EGRESSD_CONFIG" --log-file "$EGRESSD_LOG" --metrics-addr 127.0.0.1:0 2>"$WORK/egressd.err" &
  STARTED_PID=$!
  wait_for_line "$EGRESSD_LOG" 30 '"action":"agent-started"' "$STARTED_PID" ||
    { cat "$WORK/egressd.err" >&2; die "egressd did not start"; }
}
start_empty() {
  : >"$WORK/empty.out"
  "$BIN/attach_empty" "$BIN/empty.bpf.o" >"$WORK/empty.out" 2>&1 &
  STARTED_PID=$!
  wait_for_line "$WORK/empty.out" 10 '^attached' "$STARTED_PID" || { cat "$WORK/empty.out" >&2; die "empty program did not attach"; }
}
# bpftrace prints "Attaching N probes..." before it attaches (run.sh waits a
# second more; attaching one to three probes takes milliseconds).
start_bpftrace() { # OUTPUT-FILE ARGS...
  local out=$1
  shift
  : >"$out"
  BPFTRACE_MAP_KEYS_MAX=65536 bpftrace "$@" >"$out" 2>&1 &
  STARTED_PID=$!
  STARTED_SIG=INT
  wait_for_line "$out" 30 '^Attaching' "$STARTED_PID" || return 1
  sleep 0.5
  kill -0 "$STARTED_PID" 2>/dev/null
}
start_nethogs() {
  local devs=("$VETH_HOST" lo)
  : >"$WORK/nethogs.out"
  nethogs -t -a -d 1 "${devs[@]}" >"$WORK/nethogs.out" 2>"$WORK/nethogs.err" &
  STARTED_PID=$!
  # It opens its captures, then prints its first refresh after a second.
  wait_for_line "$WORK/nethogs.out" 10 '^Refreshing:' "$STARTED_PID" || return 1
}
start_config() {
  case $1 in
    baseline) ;;
    egressd) start_egressd ;;
    empty) start_empty ;;
    bpftrace-tcplife) start_bpftrace "$WORK/tcplife.out" "$BENCH_SRC/tcplife.bt" ||
      die "bpftrace (tcplife.bt) did not start: $(grep -v RLIMIT_MEMLOCK "$WORK/tcplife.out" | head -3)" ;;
    bpftrace-bytes) start_bpftrace "$WORK/bytes.out" -e "$BPFTRACE_BYTES_PROG" ||
      die "bpftrace (bytes) did not start: $(grep -v RLIMIT_MEMLOCK "$WORK/bytes.out" | head -3)" ;;
    nethogs) start_nethogs || die "nethogs did not start: $(head -3 "$WORK/nethogs.err")" ;;
  esac
}
# As run.sh's stop_config: the signal is repeated (a background job starts
# with SIGINT ignored, and bpftrace installs its handler only once
# attached); SIGKILL after 30 s.
stop_config() {
  local i
  [[ -n $STARTED_PID ]] || return 0
  for ((i = 0; i < 60; i++)); do
    kill -"$STARTED_SIG" "$STARTED_PID" 2>/dev/null || break
    sleep 0.2
    [[ $(awk '{print $3}' "/proc/$STARTED_PID/stat" 2>/dev/null) == [ZX] ]] && break
    sleep 0.3
  done
  kill -KILL "$STARTED_PID" 2>/dev/null || true
  wait "$STARTED_PID" || true
  STARTED_PID=""
  STARTED_SIG=TERM
}

# --- servers --------------------------------------------------------------------------------
start_server() { # NAME READY-PATTERN|"" COMMAND...: in the background (an external command, so that $! is its pid); sets LAST_PID
  local name=$1 pattern=$2
  shift 2
  : >"$WORK/$name.out"
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  LAST_PID=$!
  SERVER_PIDS+=("$LAST_PID")
  if [[ -n $pattern ]]; then
    wait_for_line "$WORK/$name.out" 10 "$pattern" "$LAST_PID" ||
      die "$name did not start: $(cat "$WORK/$name.err" "$WORK/$name.out" | head -5)"
  fi
}
wait_listening() { # NETNS|"" ADDR PORT NAME PID
  local i
  for ((i = 0; i < 100; i++)); do
    if [[ -n $1 ]]; then in_ns ss -Hltn "src $2:$3" | grep -q . && return 0; else ss -Hltn "src $2:$3" | grep -q . && return 0; fi
    kill -0 "$5" 2>/dev/null || break
    sleep 0.1
  done
  die "$4 does not listen on $2:$3: $(head -5 "$WORK/$4.err" 2>/dev/null)"
}
start_servers() {
  if has_workload veth; then
    start_server sink-connect '"listening"' ip netns exec "$NS" taskset -c "$SERVER_CPU" \
      "$BIN/loadgen" --sink-cpu "$SERVER_CPU" --listen "$NS_ADDR:$SINK_CONNECT_PORT" sink epoll
  fi
  if has_workload iperf3; then
    start_server iperf3-veth "" ip netns exec "$NS" taskset -c "$SERVER_CPU" iperf3 -s -B "$NS_ADDR" -p "$IPERF_VETH_PORT"
    wait_listening "$NS" "$NS_ADDR" "$IPERF_VETH_PORT" iperf3-veth "$LAST_PID"
    start_server iperf3-lo "" taskset -c "$SERVER_CPU" iperf3 -s -B 127.0.0.1 -p "$IPERF_LO_PORT"
    wait_listening "" 127.0.0.1 "$IPERF_LO_PORT" iperf3-lo "$LAST_PID"
  fi
  if has_workload http; then
    local n mask="1"
    mkdir -p "$WORK/www" "$WORK/nginx-tmp"
    head -c "$FILE_BYTES" /dev/zero | tr '\0' 'x' >"$WORK/www/file.html"
    chmod 755 "$WORK/www"
    chmod 644 "$WORK/www/file.html"
    for ((n = 0; n < SERVER_CPU; n++)); do mask+="0"; done
    cat >"$WORK/nginx.conf" <<EOF
# tests/bench/workloads.sh: one worker on CPU $SERVER_CPU, a static file, no logs.
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $mask;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 60s;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/nginx-tmp/body;
  proxy_temp_path $WORK/nginx-tmp/proxy;
  fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
  scgi_temp_path $WORK/nginx-tmp/scgi;
  default_type text/html;
  server {
    listen $NS_ADDR:$HTTP_PORT backlog=4096;
    root $WORK/www;
  }
}
EOF
    in_ns nginx -t -q -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" 2>"$WORK/nginx-test.err" ||
      die "nginx rejects its config: $(cat "$WORK/nginx-test.err" "$WORK/nginx-error.log" 2>/dev/null | head -5)"
    start_server nginx "" ip netns exec "$NS" taskset -c "$SERVER_CPU" nginx -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf"
    NGINX_PID=$LAST_PID
    wait_listening "$NS" "$NS_ADDR" "$HTTP_PORT" nginx "$NGINX_PID"
    local w=""
    for ((n = 0; n < 50; n++)); do
      w=$(pgrep -P "$NGINX_PID" | head -1 || true)
      [[ -n $w ]] && break
      sleep 0.1
    done
    [[ -n $w ]] || die "nginx started no worker"
    echo "$w" >"$WORK/nginx-worker.pid"
  fi
}

# --- one measured run -------------------------------------------------------------------------
field() { jq -r ".$1" "$WORK/last.json"; }
# Runs a client in the background (so that a signal stops it at once) and
# waits for it; its stdout goes to $WORK/last.out. Sets CLIENT_LAST_PID.
CLIENT_LAST_PID=""
client() {
  "$@" >"$WORK/last.out" 2>"$WORK/last.err" &
  CLIENT_PID=$!
  CLIENT_LAST_PID=$CLIENT_PID
  local rc=0
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  return "$rc"
}
SINK_BPR_REF=""
# Runs measurement $1 once. Sets VALUE, EXTRA (a note for the raw results),
# LAGGED (veth-send: the sink read more than 1.25 times the warm-up's bytes
# per recv()), and for the short-connection measurements CONNS (connections
# the client made) and CLIENT_PROC (its pid).
prepare_measurement() {
  VALUE=NA
  EXTRA=""
  LAGGED=0
  CONNS=""
  CLIENT_PROC=""
  case $1 in
    veth-send)
      : >"$WORK/sink-send.out" # here, not in the child: wait_for_line must not see the last run's line
      ip netns exec "$NS" taskset -c "$SERVER_CPU" "$BIN/loadgen" --sink-cpu "$SERVER_CPU" --listen "$NS_ADDR:$SINK_SEND_PORT" sink spin \
        >"$WORK/sink-send.out" 2>"$WORK/sink-send.err" &
      SEND_SINK_PID=$!
      wait_for_line "$WORK/sink-send.out" 10 '"listening"' "$SEND_SINK_PID" ||
        die "the send sink did not start: $(cat "$WORK/sink-send.err")"
      ;;
  esac
}
measure_once() { # MEASUREMENT [SECONDS]: the client part, between the CPU snapshots
  local secs=${2:-$SECS}
  case $1 in
    veth-send)
      client "$BIN/loadgen" --cpu "$CLIENT_CPU" --dst "$NS_ADDR:$SINK_SEND_PORT" send "$secs" ||
        die "loadgen send failed: $(cat "$WORK/last.err")"
      cp "$WORK/last.out" "$WORK/last.json"
      VALUE=$(field sends_per_s)
      [[ $(field pinned) == true ]] || die "loadgen could not pin itself to CPU $CLIENT_CPU"
      ;;
    veth-connect)
      client "$BIN/loadgen" --cpu "$CLIENT_CPU" --dst "$NS_ADDR:$SINK_CONNECT_PORT" connect "$SECS" ||
        die "loadgen connect failed: $(cat "$WORK/last.err")"
      cp "$WORK/last.out" "$WORK/last.json"
      VALUE=$(field connections_per_s)
      CONNS=$(field attempted)
      CLIENT_PROC=$(field pid)
      [[ $(field connect_errors) == "{}" ]] || EXTRA="connect errors $(field connect_errors | tr -d ' \n')"
      ;;
    iperf3-veth | iperf3-lo)
      local dst=$NS_ADDR port=$IPERF_VETH_PORT try
      [[ $1 == iperf3-lo ]] && dst=127.0.0.1 port=$IPERF_LO_PORT
      for try in 1 2 3 4; do
        # -J: one JSON document; the server may still be tearing down the last test ("busy"): retry.
        client taskset -c "$CLIENT_CPU" iperf3 -c "$dst" -p "$port" -t "$SECS" -J && break
        ((try < 4)) && grep -q busy "$WORK/last.out" "$WORK/last.err" 2>/dev/null ||
          die "iperf3 $1 failed: $(jq -r .error "$WORK/last.out" 2>/dev/null || cat "$WORK/last.err")"
        sleep 1
      done
      VALUE=$(jq -r '.end.sum_received.bits_per_second / 1e9' "$WORK/last.out")
      EXTRA="retransmits $(jq -r '.end.sum_sent.retransmits // "NA"' "$WORK/last.out")"
      ;;
    http-keepalive | http-close)
      local hdr=()
      [[ $1 == http-close ]] && hdr=(-H 'Connection: close')
      client taskset -c "$CLIENT_CPU" wrk -t1 -c "$WRK_CONNS" -d "${SECS}s" "${hdr[@]}" "http://$NS_ADDR:$HTTP_PORT/file.html" ||
        die "wrk failed: $(cat "$WORK/last.err")"
      VALUE=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/last.out")
      [[ -n $VALUE ]] || die "no Requests/sec in wrk's output: $(cat "$WORK/last.out")"
      local errs
      errs=$(grep -E 'Socket errors|Non-2xx' "$WORK/last.out" | tr -s ' ' | tr '\n' ';' || true)
      [[ -n $errs ]] && EXTRA="wrk: $errs"
      if [[ $1 == http-close ]]; then
        CONNS=$(awk '/requests in/ {print $1}' "$WORK/last.out")
        CLIENT_PROC=$CLIENT_LAST_PID
      fi
      ;;
  esac
}
finish_measurement() {
  if [[ $1 == veth-send && -n $SEND_SINK_PID ]]; then
    stop_pid "$SEND_SINK_PID"
    SEND_SINK_PID=""
    local bpr
    bpr=$(jq -r 'select(.stopped_by) | .sink_bytes_per_read' "$WORK/sink-send.out")
    EXTRA="sink ${bpr} B/read"
    [[ -n $SINK_BPR_REF && -n $bpr ]] && awk -v b="$bpr" -v r="$SINK_BPR_REF" 'BEGIN {exit !(b > 1.25 * r)}' && LAGGED=1
    LAST_BPR=$bpr
  fi
  true
}

# The configuration's process may still be working when the client is done
# (egressd writing its log, nethogs looking up connections): waits until it
# has used no CPU for 0.2 s, at most TAIL_MAX (5) s. Prints its ticks then.
TAIL_MAX=5
settle_config_ticks() {
  local t0 t1 i
  t0=$(cpu_ticks "$STARTED_PID")
  t1=$t0
  for ((i = 0; i < TAIL_MAX * 5; i++)); do
    sleep 0.2
    t1=$(cpu_ticks "$STARTED_PID")
    ((t1 == t0)) && break
    t0=$t1
  done
  echo "$t1"
}
OTHER_CPU=NA
CONFIG_CPU_PCT=NA
CONFIG_TAIL_S=NA
RETRIED=()
# quiet_wait runs before the first measurement of each configuration run,
# before a repeat, and after a run the configuration was still busy from;
# in between, the check of other work during each run stands in for it.
NEED_QUIET=1
# One measurement with repeats: quiet wait, CPU snapshots around the client.
run_one() { # MEASUREMENT
  local m=$1 attempt b0 b1 o0 o1 c0 c1 s0 sm s1 w0 w1 why
  for ((attempt = 1; ; attempt++)); do
    ((NEED_QUIET || attempt > 1)) && quiet_wait
    NEED_QUIET=0
    prepare_measurement "$m"
    s0=$(if [[ -n $STARTED_PID ]]; then cpu_ticks "$STARTED_PID"; else echo 0; fi)
    o0=$(our_ticks)
    c0=$(child_ticks)
    b0=$(busy_ticks)
    w0=$(now_ns)
    measure_once "$m"
    w1=$(now_ns)
    b1=$(busy_ticks)
    c1=$(child_ticks)
    o1=$(our_ticks)
    sm=$(if [[ -n $STARTED_PID ]]; then cpu_ticks "$STARTED_PID"; else echo 0; fi)
    finish_measurement "$m"
    s1=0
    [[ -n $STARTED_PID ]] && s1=$(settle_config_ticks)
    OTHER_CPU=$(awk -v b=$((b1 - b0)) -v o=$((o1 - o0 + c1 - c0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) \
      'BEGIN {x = (b - o) / hz / (ns / 1e9); printf "%.3f", x < 0 ? 0 : x}')
    CONFIG_CPU_PCT=NA
    CONFIG_TAIL_S=NA
    if [[ $CONFIG != baseline ]]; then
      CONFIG_CPU_PCT=$(awk -v t=$((sm - s0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) 'BEGIN {printf "%.1f", 100 * t / hz / (ns / 1e9)}')
      CONFIG_TAIL_S=$(awk -v t=$((s1 - sm)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
      # Still busy after TAIL_MAX s: let the next run wait for quiet.
      awk -v t="$CONFIG_TAIL_S" -v max="$TAIL_MAX" 'BEGIN {exit !(t >= 0.8 * max)}' && NEED_QUIET=1
    fi
    why=""
    awk -v o="$OTHER_CPU" -v max="$OTHER_MAX" 'BEGIN {exit !(o >= max)}' && why="$OTHER_CPU CPUs of other work"
    ((LAGGED)) && why+="${why:+, }sink lagged ($LAST_BPR bytes per read; $SINK_BPR_REF in the warm-up)"
    if [[ -z $why ]] || ((attempt >= MAX_ATTEMPTS)); then
      [[ -n $why ]] && log "  $CONFIG $m: $why on try $attempt too; keeping it"
      break
    fi
    RETRIED+=("$CONFIG $m (round $round): $why")
    log "  $CONFIG $m: $why; repeating it"
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$CONFIG" "$round" "$m" "$VALUE" "$OTHER_CPU" "$attempt" "$SLOT" \
    "$CONFIG_CPU_PCT" "${EXTRA:--}" "$CONFIG_TAIL_S" >>"$RESULTS"
  log "  $CONFIG $m: $(fmt_val "$VALUE" "$(unit_of "$m")") $(unit_of "$m")${EXTRA:+ ($EXTRA)}; other work $OTHER_CPU CPUs$([[ $CONFIG != baseline ]] && echo "; $CONFIG's CPU $CONFIG_CPU_PCT % during the run, $CONFIG_TAIL_S CPU-s after it")"
  if [[ -n $CONNS ]]; then
    PENDING_LOGGED+=("$m $CONNS $CLIENT_PROC")
  fi
}

# egressd: connection-attempted lines for pid $1 (the log and its rotations).
egressd_lines() {
  { cat "$EGRESSD_LOG" "$EGRESSD_LOG".[0-9]* 2>/dev/null || true; } | { grep -F '"action":"connection-attempted"' || true; } |
    { grep -F "\"pid\":$1," || true; } | jq -c --argjson pid "$1" 'select(.process.pid == $pid)' | wc -l
}
# tcplife.bt: lines for the client ends of connections to the namespace's
# port $2 with pid $1. (The server ends close in the client's softirq and
# carry its pid too, as in tcplife: they are told apart by the ports.)
tcplife_lines() { awk -v p="$1" -v a="$NS_ADDR" -v port="$2" '$1 == p && $5 == a && $6 == port' "$WORK/tcplife.out" | wc -l; }

# After a configuration's run: how many of the short connections it logged.
PENDING_LOGGED=()
record_logged() { # running|stopped: egressd is counted while it runs, tcplife.bt once it has exited
  local entry m conns pid n last=-1 i note
  [[ $1 == running && $CONFIG != egressd ]] && return 0
  [[ $1 == stopped && $CONFIG == egressd ]] && return 0
  for entry in "${PENDING_LOGGED[@]}"; do
    read -r m conns pid <<<"$entry"
    note=""
    case $CONFIG in
      egressd)
        # It may still be writing: wait until the count stays put for 1 s (at most 30 s).
        for ((i = 0; i < 30; i++)); do
          n=$(egressd_lines "$pid")
          ((n >= conns || n == last)) && break
          last=$n
          sleep 1
        done
        ;;
      bpftrace-tcplife)
        local port=$SINK_CONNECT_PORT
        [[ $m == http-close ]] && port=$HTTP_PORT
        n=$(tcplife_lines "$pid" "$port")
        note=$(grep -m1 -E '^Lost [0-9]+ events' "$WORK/tcplife.out" || true)
        ;;
      *) continue ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$CONFIG" "$round" "$m" "$conns" "$n" "${note:--}" >>"$LOGGED_RESULTS"
    log "  $CONFIG logged $n of $conns $m connections${note:+ ($note)}"
  done
}
# Sanity checks on what a peer saw, after it stopped.
PEER_NOTES=()
check_peer() {
  case $CONFIG in
    bpftrace-bytes)
      grep -q '^@bytes\[' "$WORK/bytes.out" || die "bpftrace's byte map is empty: it did not trace"
      ;;
    bpftrace-tcplife)
      grep -q "$NS_ADDR" "$WORK/tcplife.out" || die "tcplife.bt printed no connection to $NS_ADDR: it did not trace"
      if grep -qE '^Lost [0-9]+ events' "$WORK/tcplife.out"; then
        PEER_NOTES+=("round $round, bpftrace-tcplife: bpftrace reported $(grep -E '^Lost [0-9]+ events' "$WORK/tcplife.out" | awk '{s += $2} END {print s}') lost events (lines not printed)")
      fi
      ;;
    nethogs)
      local n
      n=$(grep -c '^Refreshing:' "$WORK/nethogs.out" || true)
      ((n > 0)) || die "nethogs printed nothing"
      ;;
  esac
}

SLOT=0
measure() { # CONFIG: start it, every measurement once, stop it
  CONFIG=$1
  PENDING_LOGGED=()
  check_foreign_progs "round $round, before $CONFIG"
  start_config "$CONFIG"
  NEED_QUIET=1
  local m
  for m in "${MEASUREMENTS[@]}"; do run_one "$m"; done
  record_logged running
  stop_config
  record_logged stopped
  check_peer
  rm -f "$EGRESSD_LOG" "$EGRESSD_LOG".[0-9]* "$WORK/tcplife.out" "$WORK/bytes.out" "$WORK/nethogs.out"
  SLOT=$((SLOT + 1))
}

# --- peers: do they attach? ---------------------------------------------------------------------
# A peer that does not start is dropped from CONFIGS with a note, as run.sh
# does for bpftrace.
SKIP_NOTES=()
probe_peers() {
  local c kept=() why
  for c in "${CONFIGS[@]}"; do
    why=""
    case $c in
      bpftrace-tcplife)
        if ! start_bpftrace "$WORK/tcplife.out" "$BENCH_SRC/tcplife.bt"; then
          why="bpftrace did not attach tcplife.bt: $(grep -v RLIMIT_MEMLOCK "$WORK/tcplife.out" | grep -m1 -i error || head -1 "$WORK/tcplife.out")"
        fi
        stop_config
        ;;
      bpftrace-bytes)
        if ! start_bpftrace "$WORK/bytes.out" -e "$BPFTRACE_BYTES_PROG"; then
          why="bpftrace did not attach the byte counter: $(grep -v RLIMIT_MEMLOCK "$WORK/bytes.out" | grep -m1 -i error || head -1 "$WORK/bytes.out")"
        fi
        stop_config
        ;;
      nethogs)
        start_nethogs || why="nethogs did not start: $(head -2 "$WORK/nethogs.err" | tr '\n' ' ')"
        stop_config
        ;;
    esac
    if [[ -n $why ]]; then
      SKIP_NOTES+=("$c: $why; row skipped")
      log "$c: $why; skipped"
    else
      kept+=("$c")
    fi
  done
  CONFIGS=("${kept[@]}")
  rm -f "$WORK/tcplife.out" "$WORK/bytes.out" "$WORK/nethogs.out"
}

# --- run ------------------------------------------------------------------------------------------
log "workloads: ${MEASUREMENTS[*]}; configurations: baseline ${CONFIGS[*]}; $ROUNDS rounds, ${SECS}s per run"
start_servers
probe_peers
check_foreign_progs "start"

log "warm-up (baseline)"
CONFIG=baseline
round=0
if has_workload veth; then
  "$BIN/loadgen" --cpu "$CLIENT_CPU" --dst "$NS_ADDR:$SINK_CONNECT_PORT" connect 1 >/dev/null
  for i in 1 2 3; do
    prepare_measurement veth-send
    measure_once veth-send 1
    finish_measurement veth-send
    echo "$LAST_BPR"
  done >"$WORK/bpr"
  SINK_BPR_REF=$(summary <"$WORK/bpr" | cut -d' ' -f1)
  log "  the send sink read $SINK_BPR_REF bytes per recv() (median of 3)"
fi
if has_workload http; then
  taskset -c "$CLIENT_CPU" wrk -t1 -c "$WRK_CONNS" -d 1s "http://$NS_ADDR:$HTTP_PORT/file.html" >"$WORK/wrk-warmup.out" ||
    die "wrk warm-up failed"
  grep -q 'Non-2xx' "$WORK/wrk-warmup.out" && die "nginx answers with errors: $(cat "$WORK/wrk-warmup.out")"
fi

measure baseline
for ((round = 1; round <= ROUNDS; round++)); do
  order=("${CONFIGS[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((i = ${#CONFIGS[@]} - 1; i >= 0; i--)); do order+=("${CONFIGS[i]}"); done
  fi
  log "round $round/$ROUNDS: ${order[*]}, each followed by baseline"
  for c in "${order[@]}"; do
    measure "$c"
    measure baseline
  done
done
T_END=$(date +%s)

# --- report -----------------------------------------------------------------------------------------
values() { awk -F'\t' -v c="$1" -v m="$2" '$1 == c && $3 == m && $4 != "NA" {print $4}' "$RESULTS"; }
# One line per run of CONFIG in MEASUREMENT: "round value bracket ratio",
# bracket being the mean of the baseline runs just before and just after it.
bracketed() {
  awk -F'\t' -v c="$1" -v m="$2" '
    $3 != m || $4 == "NA" {next}
    $1 == "baseline" {b[$7] = $4; next}
    $1 == c {round[$7] = $2; y[$7] = $4}
    END {for (s in y) if ((s - 1) in b && (s + 1) in b) {
      mean = (b[s - 1] + b[s + 1]) / 2
      print round[s], y[s], mean, (mean > 0 ? y[s] / mean : 0)}}' "$RESULTS" | sort -n
}
ratios() { bracketed "$@" | awk '{print $4}' | summary; }
label() {
  case $1 in
    baseline) echo "baseline (no BPF program)" ;;
    egressd) echo "egressd run" ;;
    empty) echo "empty program on tp_btf/sock_send_length" ;;
    bpftrace-tcplife) echo "bpftrace tcplife.bt (a line per connection)" ;;
    bpftrace-bytes) echo "bpftrace, sum of bytes per pid on sock_send_length" ;;
    nethogs) echo "nethogs -t" ;;
  esac
}
fmt3() { awk -v x="$1" 'BEGIN {if (x == "NA" || x == "") print "NA"; else printf "%.3f", x}'; }
table() { # MEASUREMENT
  local m=$1 unit c med min max n rmed rmin rmax cpu tail row
  unit=$(unit_of "$m")
  echo "| configuration | median $unit | min – max | spread (max−min)/median | ÷ the baseline runs around it: median (min – max) | its process's CPU during the run, % of one CPU (median) | its CPU-s after the run, until idle (median) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for c in baseline "${CONFIGS[@]}"; do
    read -r med min max n <<<"$(values "$c" "$m" | summary)"
    row="| $(label "$c") | $(fmt_val "$med" "$unit") | $(fmt_val "$min" "$unit") – $(fmt_val "$max" "$unit") | $(awk -v a="$min" -v b="$max" -v m="$med" 'BEGIN {if (m == "NA" || m == 0) print "NA"; else printf "%.0f %%", 100 * (b - a) / m}') |"
    if [[ $c == baseline ]]; then
      echo "$row 1 | – | – |"
      continue
    fi
    read -r rmed rmin rmax _ <<<"$(ratios "$c" "$m")"
    cpu=$(awk -F'\t' -v c="$c" -v m="$m" '$1 == c && $3 == m && $8 != "NA" {print $8}' "$RESULTS" | summary | cut -d' ' -f1)
    tail=$(awk -F'\t' -v c="$c" -v m="$m" '$1 == c && $3 == m && $10 != "NA" {print $10}' "$RESULTS" | summary | cut -d' ' -f1)
    echo "$row **$(fmt3 "$rmed")** ($(fmt3 "$rmin") – $(fmt3 "$rmax")) | $cpu | $tail |"
  done
}
per_round() { # MEASUREMENT
  local m=$1 c line v unit
  unit=$(unit_of "$m")
  line="| round |"
  for c in "${CONFIGS[@]}"; do line+=" $c |"; done
  echo "$line"
  line="|---:|"
  for c in "${CONFIGS[@]}"; do line+="---:|"; done
  echo "$line"
  for ((r = 1; r <= ROUNDS; r++)); do
    line="| $r |"
    for c in "${CONFIGS[@]}"; do
      v=$(bracketed "$c" "$m" | awk -v r="$r" -v u="$unit" '$1 == r {
        if (u == "Gbit/s") printf "%.2f ÷ %.2f = %.3f", $2, $3, $4; else printf "%d ÷ %d = %.3f", $2 + 0.5, $3 + 0.5, $4}')
      v+=$(awk -F'\t' -v c="$c" -v r="$r" -v m="$m" -v max="$OTHER_MAX" '$1 == c && $2 == r && $3 == m && $5 >= max {
        printf " (other work %.2f CPU)", $5}' "$RESULTS")
      line+=" ${v:-NA} |"
    done
    echo "$line"
  done
}
logged_table() {
  [[ -s $LOGGED_RESULTS ]] || return 0
  echo "Connections logged (short-connection workloads): egressd's connection-attempted lines for the client's pid; tcplife.bt's lines for the client ends of the connections to the server. Per configuration run: logged / made (for http-close, made is wrk's request count, one connection each; the connections still open when wrk stops count too, so a little over 100 % is complete)."
  echo
  echo "| configuration | measurement | per run: logged / made | all runs |"
  echo "|---|---|---|---:|"
  awk -F'\t' '{k = $1 "\t" $3; if (!(k in runs)) order[++n] = k; runs[k] = runs[k] (runs[k] == "" ? "" : ", ") $5 " / " $4 ($6 != "-" ? " (" $6 ")" : "")
      got[k] += $5; want[k] += $4}
    END {for (i = 1; i <= n; i++) {k = order[i]; split(k, p, "\t")
      printf "| %s | %s | %s | %.1f %% |\n", p[1], p[2], runs[k], want[k] ? 100 * got[k] / want[k] : 0}}' "$LOGGED_RESULTS"
}

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
[[ -n $(git -C "$ROOT" status --porcelain -- agent bpf CMakeLists.txt 2>/dev/null) ]] && dirty=" (the checkout has uncommitted changes in agent/, bpf/ or CMakeLists.txt; the binary may or may not include them)"
os=$(. /etc/os-release && echo "$PRETTY_NAME")
build_type=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ -n $build_type ]] || build_type="unset (RelWithDebInfo, the default in CMakeLists.txt)"
version_of() { { "$@" 2>&1 || true; } | head -1; }
versions="$(version_of iperf3 --version | awk '{print $1, $2}'), $(version_of nginx -v | sed 's|.*nginx/|nginx |'), $(version_of wrk -v | awk '{print $1, $2}'), $(version_of bpftrace --version), nethogs $(version_of nethogs -V | awk '{print $NF}')"
max_other=$(awk -F'\t' '{print $5}' "$RESULTS" | summary | cut -d' ' -f3)
elapsed=$((T_END - T_START))

cat <<EOF
## egressd workloads benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')

- Command: \`sudo tests/bench/workloads.sh\` (ROUNDS=$ROUNDS SECS=$SECS WORKLOADS="${WORKLOADS[*]}" CONFIGS="${CONFIGS[*]}" WRK_CONNS=$WRK_CONNS FILE_BYTES=$FILE_BYTES OTHER_MAX=$OTHER_MAX MAX_ATTEMPTS=$MAX_ATTEMPTS); took $((elapsed / 60)) min $((elapsed % 60)) s
- Machine: $(nproc) × $cpu_model, $mem_total RAM, Linux $(uname -r), $os
- egressd: $BUILD/egressd (built $EGRESSD_MTIME, sha256 $EGRESSD_SHA…), checkout at commit $commit$dirty; CMAKE_BUILD_TYPE $build_type. Run with its defaults plus \`log: {max_files: 1000}\` and \`state: {pin: false}\`.
- Tools: $versions
- Clients pinned to CPU $CLIENT_CPU, servers to CPU $SERVER_CPU. The namespace \`$NS\` sits behind the veth pair $VETH_HOST ($HOST_ADDR/30) – $VETH_NS ($NS_ADDR/30); the iperf3-lo run is on 127.0.0.1.
- Configurations: \`egressd run -c CONFIG --log-file FILE --metrics-addr 127.0.0.1:0\`; the empty program (tests/bench/empty.bpf.c on tp_btf/sock_send_length); \`bpftrace tests/bench/tcplife.bt\` (tcplife's equivalent: a line per TCP connection at close, on tracepoint:sock:inet_sock_set_state; output to a file); \`bpftrace -e '$BPFTRACE_BYTES_PROG'\`; \`nethogs -t -a -d 1 $VETH_HOST lo\` (output to a file).
- $ROUNDS rounds; each runs every configuration once, in the order ${CONFIGS[*]} (odd rounds) or the reverse (even rounds), with a baseline run before the first and after each. Within a configuration's run one process of it stays up while the workloads run in the order ${MEASUREMENTS[*]}, ${SECS} s each. A figure's ratio is its value divided by the mean of the two baseline runs around it.
- CPU columns: the configuration's process (all its threads) during the client's run, as % of one CPU; then the CPU seconds it went on using after the client stopped, until it had been idle for 0.2 s (waiting at most ${TAIL_MAX} s, so a figure near ${TAIL_MAX} means it was still busy). BPF programs' own run time is charged to the tasks they run in, not to these processes.
$(for n in "${SKIP_NOTES[@]}"; do echo "- Not measured: $n."; done)

EOF
for m in "${MEASUREMENTS[@]}"; do
  echo "### $(title_of "$m"), $(unit_of "$m")"
  echo
  table "$m"
  echo
done
logged_table
echo
((${#PEER_NOTES[@]})) && printf -- '- %s\n' "${PEER_NOTES[@]}" && echo
echo "### Per round: each run ÷ the mean of the baseline runs around it"
echo
for m in "${MEASUREMENTS[@]}"; do
  echo "$m ($(unit_of "$m")):"
  echo
  per_round "$m"
  echo
done
notes=$(awk -F'\t' '$9 != "-" && $9 !~ /^sink [0-9]+ B\/read$/ && $9 !~ /^retransmits / {print "round " $2 ", " $1 ", " $3 ": " $9}' "$RESULTS")
cat <<EOF
### Other work on the machine

Highest CPU use by anything but this benchmark's processes during a kept run: $(fmt3 "$max_other") CPUs (threshold $OTHER_MAX; runs above it were repeated, up to $MAX_ATTEMPTS tries).
$(if ((${#RETRIED[@]})); then
    printf 'Runs repeated: %d (' "${#RETRIED[@]}"
    printf '%s; ' "${RETRIED[@]}" | sed 's/; $//'
    echo ")."
  else echo "No run had to be repeated."; fi)
$(if ((NOISY_WAITS)); then echo "The machine did not go quiet within ${QUIET_WAIT}s before $NOISY_WAITS runs."; fi)
$(if ((${#FOREIGN_NOTES[@]})); then
    printf 'BPF programs of others stayed loaded on the measured paths, so the runs after these points include them: '
    printf '%s; ' "${FOREIGN_NOTES[@]}" | sed 's/; $//'
    echo "."
  else echo "No BPF program of anyone else was loaded on the measured paths."; fi)
$([[ -n $notes ]] && { echo; echo "Client notes:"; echo; sed 's/^/- /' <<<"$notes"; })
EOF
log "done in $((elapsed / 60)) min $((elapsed % 60)) s"
