#!/usr/bin/env bash
# egressd benchmark (a command, not a test): what the agent costs a sender.
#
#   sudo tests/bench/run.sh > figures.md
#
# In one run, with the sender pinned to CPU 0 and its loopback sink to CPU 1:
#  1. ROUNDS alternating rounds over the configurations
#       egressd   `egressd run` (all of its programs, its event log, metrics)
#       empty     one empty program on tp_btf/sock_send_length (empty.bpf.c)
#       bpftrace  tracepoint:sock:sock_send_length summing bytes per pid
#     (the order is reversed every other round), each run between two runs
#     of the baseline (no BPF program). Each run measures 64-byte TCP sends
#     per second on one connection, then short TCP connections per second
#     (connect, send 64 bytes, close). Reported per configuration: the
#     median, the spread, and its rate divided by the mean of the two
#     baseline runs around it (the machine's speed drifts between minutes).
#  2. With egressd running: paced connection rates (RATES, RATE_SECS each),
#     then SUSTAIN_RATE for SUSTAIN_SECS. A rate passes when the loadgen
#     reaches it, egressd_events_lost_total{reason="ringbuf_full"} and
#     egressd_log_dropped_total do not move, and the event log has one
#     connection-attempted line per connect() the loadgen made. Also: how
#     long the agent needed after the run to log the last connection, its
#     CPU (utime+stime) and its RSS (VmRSS, VmHWM).
# Prints a Markdown report on stdout; progress goes to stderr.
#
# Other work on the machine skews every figure, so before each measured run
# the script waits until the machine is quiet, and it repeats a run (up to
# MAX_ATTEMPTS times in all) during which something else used more than
# OTHER_MAX of a CPU, or, in the send test, the sink fell behind (see
# sink_lagged). It also waits while anyone else has BPF programs loaded on
# the measured paths.
#
# Needs root, 2+ CPUs, cmake, g++, cc, clang, bpftool, libbpf-dev, curl, jq.
# bpftrace is optional (apt-get install bpftrace); its row is skipped with a
# note when it is missing or does not attach. All traffic is on 127.0.0.1.
#
# Environment: ROUNDS (5), SEND_SECS (2), CONNECT_SECS (2), RATE_SECS (5),
# RATES ("2000 5000 10000 15000 20000"), SUSTAIN_RATE (20000), SUSTAIN_SECS (20; 0 skips the
# sustained run), SENDER_CPU (0), SINK_CPU (1), OTHER_MAX (0.10 CPU),
# QUIET_WAIT (60 s), MAX_ATTEMPTS (3), RAW_DIR (keep the raw results there),
# EGRESSD_SRC (the source tree egressd is built from; default this checkout),
# EGRESSD_BENCH_BUILD (its build directory, used and reused; default
# EGRESSD_SRC/build-bench), PIN (1; 0: egressd runs with state.pin: false).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_SRC=$ROOT/tests/bench
SRC=$(cd "${EGRESSD_SRC:-$ROOT}" && pwd)
BUILD=${EGRESSD_BENCH_BUILD:-$SRC/build-bench}
BIN=$BUILD/bench
ROUNDS=${ROUNDS:-5}
SEND_SECS=${SEND_SECS:-2}
CONNECT_SECS=${CONNECT_SECS:-2}
RATE_SECS=${RATE_SECS:-5}
RATES=${RATES:-"2000 5000 10000 15000 20000"}
SUSTAIN_SECS=${SUSTAIN_SECS:-20}
SUSTAIN_RATE=${SUSTAIN_RATE:-20000}
SENDER_CPU=${SENDER_CPU:-0}
SINK_CPU=${SINK_CPU:-1}
OTHER_MAX=${OTHER_MAX:-0.10}
QUIET_WAIT=${QUIET_WAIT:-60}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-3}
RAW_DIR=${RAW_DIR:-}
# Issue 15's targets.
TARGET_SEND_MARGIN=0.02   # 64-byte sends: egressd's ratio at most this far below the empty program's
TARGET_CONNECT_RATIO=0.90 # short connections: egressd ÷ baseline
TARGET_US_RATE=10000      # agent CPU per logged connection, paced at this rate ...
TARGET_US=10              # ... at most this many µs
TARGET_RATE=$SUSTAIN_RATE # sustained with nothing lost
TARGET_RSS_BYTES=50000000 # 50 MB
KEEP_UP_SECS=1.0          # a rate is kept up with when the agent logs its last connection this soon after
BPFTRACE_PROG='tracepoint:sock:sock_send_length { @bytes[pid] = sum(args->ret); }'

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[[ $EUID -eq 0 ]] || die "needs root (BPF programs, tracefs): sudo $0"
(($(nproc) >= 2)) || die "needs at least 2 CPUs"
for tool in cmake make g++ cc clang bpftool curl jq; do
  command -v "$tool" >/dev/null || die "missing $tool"
done
CLK_TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/egressd-bench.XXXXXX)
# One line per kept throughput run:
#  1 config 2 round 3 mode 4 per_s 5 agent_cpu_pct 6 other_cpu 7 sender_share
#  8 preempted 9 attempts 10 sender_cpu_s 11 operations 12 sender_blocked
#  13 sink_bytes_per_read (send runs) 14 slot (position in the sequence)
RESULTS=$WORK/results.tsv
# One line per paced run:
#  1 kind 2 target 3 reached 4 attempted 5 connected 6 logged 7 ringbuf_lost
#  8 log_dropped 9 agent_cpu_pct 10 agent_us_per_conn 11 rss_kb 12 drain_s
#  13 other_cpu 14 attempts
RATE_RESULTS=$WORK/rates.tsv
LOADGEN_JSON=$WORK/loadgen.jsonl # every loadgen line, tagged
: >"$RESULTS"
: >"$RATE_RESULTS"
: >"$LOADGEN_JSON"
STARTED_PID=""   # the one configuration process running, if any
STARTED_SIG=TERM # what stops it (bpftrace ignores SIGTERM)
MOUNTED_TRACEFS=0

cleanup() {
  if [[ -n $STARTED_PID ]]; then
    kill -"$STARTED_SIG" "$STARTED_PID" 2>/dev/null || true
    wait "$STARTED_PID" 2>/dev/null || true
  fi
  [[ -n ${BENCH_INSTANCE:-} ]] && rm -rf "/sys/fs/bpf/egressd/$BENCH_INSTANCE"
  if ((MOUNTED_TRACEFS)); then umount /sys/kernel/tracing 2>/dev/null || true; fi
  if [[ -n $RAW_DIR ]]; then
    { mkdir -p "$RAW_DIR" && cp "$RESULTS" "$RATE_RESULTS" "$LOADGEN_JSON" "$RAW_DIR"/; } 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ---------------------------------------------------------------------
log "building egressd from $SRC in $BUILD; the load generator in $BIN"
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  cmake -S "$SRC" -B "$BUILD" -DEGRESSD_BUILD_TESTS=OFF >"$WORK/cmake.log" 2>&1 ||
    { cat "$WORK/cmake.log" >&2; die "cmake failed"; }
fi
make -C "$BUILD" -j"$(nproc)" egressd >"$WORK/make.log" 2>&1 || { tail -30 "$WORK/make.log" >&2; die "build failed"; }
EGRESSD=$BUILD/egressd
mkdir -p "$BIN"
g++ -O2 -std=c++20 -pthread -Wall -Wextra -o "$BIN/loadgen" "$BENCH_SRC/loadgen.cpp"
cc -O2 -Wall -o "$BIN/attach_empty" "$BENCH_SRC/attach_empty.c" -lbpf
clang -O2 -g -target bpf -I/usr/include/"$(gcc -print-multiarch)" \
  -c "$BENCH_SRC/empty.bpf.c" -o "$BIN/empty.bpf.o"
LOADGEN=("$BIN/loadgen" --cpu "$SENDER_CPU" --sink-cpu "$SINK_CPU")

# --- helpers ---------------------------------------------------------------------
cpu_ticks() { # utime+stime of a process (all its threads), in clock ticks
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) } # fields from 3 on; comm may hold spaces
  awk '{print $12 + $13}' <<<"$stat"
}
config_ticks() { if [[ -n $STARTED_PID ]]; then cpu_ticks "$STARTED_PID"; else echo 0; fi; }
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; } # all CPUs
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
now_ns() { date +%s%N; }
field() { jq -r ".$1" "$WORK/last.json"; }
# Numbers on stdin -> "median min max n q1 q3" (NA if none).
summary() {
  sort -g | awk '{v[NR] = $1}
    function q(p,  h, l) {h = 1 + (NR - 1) * p; l = int(h); return l >= NR ? v[NR] : v[l] + (h - l) * (v[l + 1] - v[l])}
    END {if (NR == 0) {print "NA NA NA 0 NA NA"; exit}
      print q(0.5), v[1], v[NR], NR, q(0.25), q(0.75)}'
}

# Waits up to $2 seconds for a line matching $3 in file $1.
wait_for_line() {
  local file=$1 secs=$2 pattern=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    [[ -n $STARTED_PID ]] && ! kill -0 "$STARTED_PID" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}

EGRESSD_LOG=$WORK/egressd.log
METRICS_ADDR=""
# egressd's defaults, but it keeps every file its log rotates to (it keeps 5
# by default): the benchmark counts every line.
EGRESSD_CONFIG=$WORK/egressd.yaml
# Pinned state as by default (its checkpoint and ledger are part of what a
# connection costs), in an instance of its own that SIGINT removes, so that
# no pinned program runs on under the next phases (stop_config also removes
# it after a kill).
# PIN=0 runs it unpinned, to measure what the pinned state costs.
BENCH_INSTANCE=bench-$$
if [[ ${PIN:-1} == 0 ]]; then
  printf 'log:\n  max_files: 1000\nstate:\n  pin: false\n' >"$EGRESSD_CONFIG"
else
  printf 'log:\n  max_files: 1000\nstate:\n  instance: %s\n' "$BENCH_INSTANCE" >"$EGRESSD_CONFIG"
fi
start_egressd() {
  rm -f "$EGRESSD_LOG" "$EGRESSD_LOG".[0-9]*
  "$EGRESSD" run -c "$EGRESSD_CONFIG" --log-file "$EGRESSD_LOG" --metrics-addr 127.0.0.1:0 2>"$WORK/egressd.err" &
  STARTED_PID=$!
  STARTED_SIG=INT
  wait_for_line "$EGRESSD_LOG" 30 '"action":"agent-started"' ||
    { cat "$WORK/egressd.err" >&2; die "egressd did not start"; }
  METRICS_ADDR=$(grep -m1 '"action":"agent-started"' "$EGRESSD_LOG" | jq -r '.egressd.metrics.address')
  [[ -n $METRICS_ADDR && $METRICS_ADDR != null ]] || die "no metrics address in the agent-started line"
}
start_empty() {
  "$BIN/attach_empty" "$BIN/empty.bpf.o" >"$WORK/empty.out" 2>&1 &
  STARTED_PID=$!
  wait_for_line "$WORK/empty.out" 10 '^attached' || { cat "$WORK/empty.out" >&2; die "empty program did not attach"; }
}
start_bpftrace() {
  bpftrace -e "$BPFTRACE_PROG" >"$WORK/bpftrace.out" 2>&1 &
  STARTED_PID=$!
  STARTED_SIG=INT
  wait_for_line "$WORK/bpftrace.out" 30 '^Attaching' || return 1
  sleep 1 # it prints before it attaches
}
start_config() {
  case $1 in
    baseline) ;;
    egressd) start_egressd ;;
    empty) start_empty ;;
    bpftrace) start_bpftrace || die "bpftrace did not start: $(head -3 "$WORK/bpftrace.out")" ;;
  esac
}
stop_config() {
  local i
  [[ -n $STARTED_PID ]] || return 0
  # Repeated: a background job of a script starts with SIGINT ignored, and
  # bpftrace installs its handler only once attached, so a first SIGINT can
  # be lost. SIGKILL after 30 s.
  for ((i = 0; i < 60; i++)); do
    kill -"$STARTED_SIG" "$STARTED_PID" 2>/dev/null || break
    sleep 0.5
    [[ $(awk '{print $3}' "/proc/$STARTED_PID/stat" 2>/dev/null) == [ZX] ]] && break # exited, not yet reaped
  done
  kill -KILL "$STARTED_PID" 2>/dev/null || true
  wait "$STARTED_PID" || true
  rm -rf "/sys/fs/bpf/egressd/$BENCH_INSTANCE"
  STARTED_PID=""
  STARTED_SIG=TERM
}

# The value of one sample on the agent's /metrics ("NA" if absent).
metric() {
  { curl -sf --max-time 5 "http://$METRICS_ADDR/metrics" || true; } |
    awk -v name="$1" '$1 == name {print $2 + 0; found = 1} END {if (!found) print "NA"}'
}
lost_ringbuf() { metric 'egressd_events_lost_total{reason="ringbuf_full"}'; }
log_dropped() { metric egressd_log_dropped_total; } # lines the log writer could not keep
delta() { if [[ $1 == NA || $2 == NA ]]; then echo NA; else echo $(($2 - $1)); fi; }

# The event log and the files it rotated to (egressd.log.1 ...).
attempted_lines() { cat "$EGRESSD_LOG" "$EGRESSD_LOG".[0-9]* 2>/dev/null | grep -F '"action":"connection-attempted"' || true; }
# connection-attempted lines the agent logged for process $1 so far.
logged_attempts() {
  attempted_lines | { grep -F "\"pid\":$1," || true; } |
    jq -c --argjson pid "$1" 'select(.process.pid == $pid)' | wc -l
}
# Waits until the agent logged $2 attempts for pid $1, or until the count
# stays put for 2 s while the agent is idle (under 5 % of a CPU): it may
# still be working through older events. At most 180 s. Sets LOGGED and
# DRAIN_S (seconds from the loadgen's exit to the last line; NA if missing).
settle_attempts() {
  local pid=$1 want=$2 n last=-1 still=0 i t0 t1
  DRAIN_S=NA
  for ((i = 0; i < 900; i++)); do
    n=$(attempted_lines | grep -cF "\"pid\":$pid," || true)
    if ((n >= want)); then
      DRAIN_S=$(awk -v ns=$(($(now_ns) - RUN_END_NS)) 'BEGIN {printf "%.1f", ns / 1e9}')
      break
    fi
    t0=$(config_ticks)
    sleep 0.2
    t1=$(config_ticks)
    if ((n == last && (t1 - t0) * 100 < 5 * CLK_TCK / 5)); then
      ((++still >= 10)) && break
    else
      still=0
    fi
    last=$n
  done
  LOGGED=$(logged_attempts "$pid")
  ((LOGGED >= want)) || DRAIN_S=NA
}

# Waits (up to QUIET_WAIT s) until the machine, our configuration process
# included, uses less than OTHER_MAX of a CPU over half a second.
NOISY_WAITS=0
quiet_wait() {
  local b0 b1 i
  for ((i = 0; i < QUIET_WAIT * 2; i++)); do
    b0=$(busy_ticks)
    sleep 0.5
    b1=$(busy_ticks)
    awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v max="$OTHER_MAX" 'BEGIN {exit !(d / hz / 0.5 < max)}' && return 0
    ((i % 20 == 0)) && log "  waiting for the machine to go quiet ($(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", d / hz / 0.5}') CPUs busy)"
  done
  NOISY_WAITS=$((NOISY_WAITS + 1))
  log "  the machine stayed busy for ${QUIET_WAIT}s; measuring anyway"
}

# BPF programs of the kinds that sit on the measured paths (tracing, cgroup
# socket and skb hooks, tracepoints, kprobes, perf events), as "type name"
# lines. Loaded by anyone else, they would slow every configuration alike.
hooked_progs() {
  bpftool prog show -j 2>/dev/null | jq -r '.[] | select(.type | IN("tracing", "raw_tracepoint", "tracepoint",
    "kprobe", "perf_event", "cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "sock_ops", "sk_msg", "lsm"))
    | "\(.type) \(.name // "-")"' | sort
}
# Called with none of ours loaded: waits until no such program is loaded
# (ours are freed a moment after their process exits; someone else's may go
# away), at most QUIET_WAIT s. Programs that stay are noted, and accepted
# from then on.
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

# Runs the loadgen ($@ = mode args); its JSON line lands in $WORK/last.json.
# Sets AGENT_CPU_PCT (egressd's CPU over the run, % of one CPU), RUN_T0 (the
# configuration process's CPU ticks at the start), RUN_END_NS, OTHER_CPU
# (CPUs used by anything but the loadgen and the configuration process),
# LOST0 and DROP0 (ringbuf_full and log_dropped before the run, egressd
# only) and ATTEMPTS.
AGENT_CPU_PCT=NA
OTHER_CPU=NA
RUN_T0=0
RUN_END_NS=0
LOST0=NA
DROP0=NA
ATTEMPTS=0
RETRIED=()
run_loadgen() {
  local t0 t1 b0 b1 w0 wall why
  for ((ATTEMPTS = 1; ; ATTEMPTS++)); do
    quiet_wait
    LOST0=NA
    DROP0=NA
    if [[ $CONFIG == egressd ]]; then
      LOST0=$(lost_ringbuf)
      DROP0=$(log_dropped)
    fi
    t0=$(config_ticks)
    RUN_T0=$t0
    b0=$(busy_ticks)
    w0=$(now_ns)
    "${LOADGEN[@]}" "$@" >"$WORK/last.json"
    RUN_END_NS=$(now_ns)
    b1=$(busy_ticks)
    t1=$(config_ticks)
    jq -c --arg c "$CONFIG" --arg r "${round:-rates}" --argjson a "$ATTEMPTS" '{config: $c, round: $r, attempt: $a} + .' \
      "$WORK/last.json" >>"$LOADGEN_JSON"
    wall=$(awk -v ns=$((RUN_END_NS - w0)) 'BEGIN {print ns / 1e9}')
    OTHER_CPU=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v self="$(field process_cpu_s)" -v w="$wall" \
      'BEGIN {o = (b / hz - self - t / hz) / w; printf "%.3f", o < 0 ? 0 : o}')
    AGENT_CPU_PCT=NA
    [[ $CONFIG == egressd ]] && AGENT_CPU_PCT=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN {printf "%.1f", 100 * t / hz / w}')
    why=""
    awk -v o="$OTHER_CPU" -v max="$OTHER_MAX" 'BEGIN {exit !(o >= max)}' && why="$OTHER_CPU CPUs of other work"
    if [[ $1 == send && -n $SINK_BPR_REF ]] && sink_lagged "$(field sink_bytes_per_read)"; then
      why+="${why:+, }sink lagged ($(field sink_bytes_per_read) bytes per read; $SINK_BPR_REF at the start)"
    fi
    [[ -z $why ]] && return 0
    if ((ATTEMPTS >= MAX_ATTEMPTS)); then
      log "  $CONFIG $1: $why on try $ATTEMPTS too; keeping it"
      return 0
    fi
    RETRIED+=("$CONFIG $1 (round ${round:-rates}): $why")
    log "  $CONFIG $1: $why; repeating it"
  done
}
# The send test has two regimes. Normally the spinning sink keeps up and
# reads a packet or two at a time. When its CPU is slowed (other work there,
# or on the host, which the guest cannot see), it falls behind, reads in
# bigger batches, contends less for the socket, and the sender runs faster
# (by up to 60 % here): such a run measures the disturbance, not the
# configuration. The BPF configurations do not change the read size.
SINK_BPR_REF=""
sink_lagged() { awk -v b="$1" -v r="$SINK_BPR_REF" 'BEGIN {exit !(b > 1.25 * r)}'; }
record_throughput() { # MODE PER_S_FIELD OPERATIONS_FIELD
  local bpr=NA
  [[ $1 == send ]] && bpr=$(field sink_bytes_per_read)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$CONFIG" "$round" "$1" "$(field "$2")" "$AGENT_CPU_PCT" \
    "$OTHER_CPU" "$(field sender_cpu_share)" "$(field sender_preempted)" "$ATTEMPTS" "$(field sender_cpu_s)" \
    "$(field "$3")" "$(field sender_blocked)" "$bpr" "$SLOT" >>"$RESULTS"
}

# One paced run with egressd running: KIND RATE SECONDS.
run_rate() {
  local kind=$1 rate=$2 secs=$3 want lost1 drop1 rss cpu us
  run_loadgen connect-rate "$rate" "$secs"
  want=$(field attempted)
  settle_attempts "$(field pid)" "$want"
  lost1=$(lost_ringbuf)
  drop1=$(log_dropped)
  rss=$(status_kb "$STARTED_PID" VmRSS)
  # Agent CPU from the start of the run until it has logged the run's last
  # connection, per second of the run: what this rate costs it.
  read -r cpu us < <(awk -v t=$(($(config_ticks) - RUN_T0)) -v hz="$CLK_TCK" -v d="$(field duration_s)" -v n="$want" \
    'BEGIN {printf "%.1f %.0f\n", 100 * t / hz / d, n ? 1e6 * t / hz / n : 0}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$rate" "$(field connections_per_s)" "$want" \
    "$(field connections)" "$LOGGED" "$(delta "$LOST0" "$lost1")" "$(delta "$DROP0" "$drop1")" "$cpu" "$us" "$rss" \
    "$DRAIN_S" "$OTHER_CPU" "$ATTEMPTS" >>"$RATE_RESULTS"
  log "  $rate/s for ${secs}s: reached $(field connections_per_s)/s, $LOGGED of $want logged (last ${DRAIN_S}s after the run)," \
    "ringbuf_full +$(delta "$LOST0" "$lost1"), log_dropped +$(delta "$DROP0" "$drop1"), agent CPU $cpu %"
  # Keep the disk use small: the agent appends (O_APPEND) and does not hold
  # the files it rotated to.
  : >"$EGRESSD_LOG"
  rm -f "$EGRESSD_LOG".[0-9]*
}

# --- bpftrace availability ---------------------------------------------------------
CONFIGS=(egressd empty bpftrace) # each compared with the baseline runs around it
BPFTRACE_NOTE=""
if ! command -v bpftrace >/dev/null; then
  BPFTRACE_NOTE="bpftrace is not installed (apt-get install bpftrace); row skipped"
else
  if [[ ! -d /sys/kernel/tracing/events ]]; then
    mount -t tracefs tracefs /sys/kernel/tracing && MOUNTED_TRACEFS=1
  fi
  if [[ ! -d /sys/kernel/tracing/events/sock/sock_send_length ]]; then
    BPFTRACE_NOTE="tracepoint sock:sock_send_length is not visible in tracefs; bpftrace row skipped"
  elif ! start_bpftrace; then
    BPFTRACE_NOTE="bpftrace did not attach ($(grep -m1 -i error "$WORK/bpftrace.out" || head -1 "$WORK/bpftrace.out")); row skipped"
    stop_config bpftrace
  else
    stop_config bpftrace
  fi
fi
if [[ -n $BPFTRACE_NOTE ]]; then
  log "$BPFTRACE_NOTE"
  CONFIGS=(egressd empty)
fi

# --- 1. alternating rounds -----------------------------------------------------------
check_foreign_progs "start"
log "warm-up; the sink's read size with no BPF program"
CONFIG=baseline
"${LOADGEN[@]}" connect 1 >/dev/null
for i in 1 2 3; do
  quiet_wait
  "${LOADGEN[@]}" send "$SEND_SECS" | jq -r .sink_bytes_per_read
done >"$WORK/bpr"
SINK_BPR_REF=$(summary <"$WORK/bpr" | cut -d' ' -f1)
log "  $SINK_BPR_REF bytes per read (median of 3)"

# One configuration: start it, the send run, the connection run, stop it.
MAX_HWM_KB=0
THROUGHPUT_LOSS_NOTES=()
SLOT=0
measure() {
  local want lost1 drop1 hwm send_pid
  CONFIG=$1
  check_foreign_progs "round $round, before $CONFIG"
  start_config "$CONFIG"

  run_loadgen send "$SEND_SECS"
  [[ $(field pinned) == true && $(field sink_pinned) == true ]] || die "loadgen could not pin its threads"
  record_throughput send sends_per_s sends
  send_pid=$(field pid)

  run_loadgen connect "$CONNECT_SECS"
  record_throughput connect connections_per_s connections

  if [[ $CONFIG == egressd ]]; then
    # The unpaced run is a loss check too: every connect() logged, nothing lost.
    want=$(field attempted)
    settle_attempts "$(field pid)" "$want"
    lost1=$(lost_ringbuf)
    drop1=$(log_dropped)
    if [[ $LOGGED != "$want" || $LOST0 != "$lost1" || $DROP0 != "$drop1" ]]; then
      THROUGHPUT_LOSS_NOTES+=("round $round: $LOGGED of $want connections logged, ringbuf_full +$(delta "$LOST0" "$lost1"), log_dropped +$(delta "$DROP0" "$drop1")")
    fi
    hwm=$(status_kb "$STARTED_PID" VmHWM)
    ((hwm > MAX_HWM_KB)) && MAX_HWM_KB=$hwm
  fi
  stop_config "$CONFIG"
  if [[ $CONFIG == bpftrace ]] && ! grep -q "\[$send_pid\]" "$WORK/bpftrace.out"; then
    die "bpftrace's map has no entry for the send loadgen (pid $send_pid): it did not trace"
  fi
  rm -f "$EGRESSD_LOG" "$EGRESSD_LOG".[0-9]*
  SLOT=$((SLOT + 1))
}

# The machine's speed drifts (by up to half, from one minute to the next, on
# this VM), so every configuration run sits between two baseline runs and is
# compared with their mean: baseline X1 baseline X2 baseline ...
round=0
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

# --- 2. paced connection rates with egressd running -------------------------------------
log "paced connection rates: ${RATES} per second, ${RATE_SECS}s each$( ((SUSTAIN_SECS > 0)) && echo "; then $TARGET_RATE/s for ${SUSTAIN_SECS}s")"
check_foreign_progs "rate search"
CONFIG=egressd
unset round
start_egressd
HWM_START_KB=$(status_kb "$STARTED_PID" VmHWM)
RSS_START_KB=$(status_kb "$STARTED_PID" VmRSS)
for rate in $RATES; do run_rate ladder "$rate" "$RATE_SECS"; done
((SUSTAIN_SECS > 0)) && run_rate sustained "$TARGET_RATE" "$SUSTAIN_SECS"
RATE_HWM_KB=$(status_kb "$STARTED_PID" VmHWM)
RATE_RSS_KB=$(status_kb "$STARTED_PID" VmRSS)
RATE_RSS_ANON_KB=$(status_kb "$STARTED_PID" RssAnon)
RATE_RSS_FILE_KB=$(status_kb "$STARTED_PID" RssFile)
stop_config egressd
((RATE_HWM_KB > MAX_HWM_KB)) && MAX_HWM_KB=$RATE_HWM_KB

# --- report ---------------------------------------------------------------------------
column_of() { # CONFIG MODE COLUMN -> values
  awk -F'\t' -v c="$1" -v m="$2" -v k="$3" '$1 == c && $3 == m && $k != "NA" {print $k}' "$RESULTS"
}
stats() { column_of "$1" "$2" 4 | summary; } # CONFIG MODE
# One line per run of CONFIG in MODE: "round value bracket ratio", where
# bracket is the mean of the baseline runs just before and just after it.
# With "cpu": operations per second of the sender's CPU time, not per second.
bracketed() {
  awk -F'\t' -v c="$1" -v m="$2" -v cpu="${3:-}" '
    $3 != m {next}
    {x = cpu == "" ? $4 : ($10 > 0 ? $11 / $10 : 0)}
    $1 == "baseline" {b[$14] = x; next}
    $1 == c {round[$14] = $2; y[$14] = x}
    END {for (s in y) if ((s - 1) in b && (s + 1) in b) {
      mean = (b[s - 1] + b[s + 1]) / 2
      print round[s], y[s], mean, (mean > 0 ? y[s] / mean : 0)}}' "$RESULTS" | sort -n
}
ratios() { bracketed "$@" | awk '{print $4}' | summary; } # -> "median min max n q1 q3"
label() {
  case $1 in
    baseline) echo "baseline (no BPF program)" ;;
    egressd) echo "egressd run" ;;
    empty) echo "empty program on tp_btf/sock_send_length" ;;
    bpftrace) echo "bpftrace, sum of bytes per pid on tracepoint:sock:sock_send_length" ;;
  esac
}
fmt_int() { awk -v x="$1" 'BEGIN {if (x == "NA" || x == "") print "NA"; else printf "%d", x + 0.5}'; }
fmt3() { awk -v x="$1" 'BEGIN {if (x == "NA" || x == "") print "NA"; else printf "%.3f", x}'; }
mib() { awk -v k="$1" 'BEGIN {if (k == "" || k == "NA") print "NA"; else printf "%.1f MiB (%.1f MB)", k / 1024, k * 1024 / 1e6}'; }

throughput_table() { # MODE UNIT
  local mode=$1 unit=$2 c med min max rmed rmin rmax cmed cmin cmax row
  echo "| configuration | median $unit | min – max | spread (max−min)/median | ÷ the baseline runs around it: median (min – max) | same, per second of sender CPU: median (min – max) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for c in baseline "${CONFIGS[@]}"; do
    read -r med min max _ <<<"$(stats "$c" "$mode")"
    row="| $(label "$c") | $(fmt_int "$med") | $(fmt_int "$min") – $(fmt_int "$max") | $(awk -v a="$min" -v b="$max" -v m="$med" 'BEGIN {printf "%.0f %%", 100 * (b - a) / m}') |"
    if [[ $c == baseline ]]; then
      echo "$row 1 | 1 |"
      continue
    fi
    read -r rmed rmin rmax _ <<<"$(ratios "$c" "$mode")"
    read -r cmed cmin cmax _ <<<"$(ratios "$c" "$mode" cpu)"
    echo "$row **$(fmt3 "$rmed")** ($(fmt3 "$rmin") – $(fmt3 "$rmax")) | $(fmt3 "$cmed") ($(fmt3 "$cmin") – $(fmt3 "$cmax")) |"
  done
}
# Each configuration run: value ÷ mean of the baseline runs around it = ratio.
per_round_table() { # MODE
  local mode=$1 c line v
  line="| round |"
  for c in "${CONFIGS[@]}"; do line+=" $c |"; done
  echo "$line"
  line="|---:|"
  for c in "${CONFIGS[@]}"; do line+="---:|"; done
  echo "$line"
  for ((round = 1; round <= ROUNDS; round++)); do
    line="| $round |"
    for c in "${CONFIGS[@]}"; do
      v=$(bracketed "$c" "$mode" | awk -v r="$round" '$1 == r {printf "%d ÷ %d = %.3f", $2 + 0.5, $3 + 0.5, $4}')
      v+=$(awk -F'\t' -v c="$c" -v r="$round" -v m="$mode" -v max="$OTHER_MAX" -v ref="$SINK_BPR_REF" '$1 == c && $2 == r && $3 == m {
        if ($6 >= max) printf " (other work %.2f CPU)", $6
        if ($13 != "NA" && $13 > 1.25 * ref) printf " (sink lagged: %d B/read)", $13}' "$RESULTS")
      line+=" ${v:-NA} |"
    done
    echo "$line"
  done
}

read -r send_rr_med send_rr_min send_rr_max _ send_rr_q1 send_rr_q3 <<<"$(ratios egressd send)"
read -r empty_send_med _ <<<"$(ratios empty send)"
read -r conn_rr_med conn_rr_min conn_rr_max _ conn_rr_q1 conn_rr_q3 <<<"$(ratios egressd connect)"
agent_send_cpu=$(column_of egressd send 5 | summary | cut -d' ' -f1)
agent_conn_cpu=$(column_of egressd connect 5 | summary | cut -d' ' -f1)
max_other=$(awk -F'\t' '{print $6}' "$RESULTS" | summary | cut -d' ' -f3)
max_other_rate=$(awk -F'\t' '{print $13}' "$RATE_RESULTS" | summary | cut -d' ' -f3)

best_rate=0
best_rate_cpu=NA
kept_rate=0
target_ok=no
target_line="not measured"
target_rss=""
us_line="not measured (no paced run at $TARGET_US_RATE/s)"
us_at_target=NA
rate_rows=""
while IFS=$'\t' read -r kind rate reached want _ got lost drop cpu us rss drain _ _; do
  res=""
  awk -v r="$reached" -v t="$rate" 'BEGIN {exit !(r < 0.97 * t)}' && res+="; rate not reached"
  ((got != want)) && res+="; $((want - got)) connections not logged"
  [[ $lost != 0 ]] && res+="; ringbuf_full loss"
  [[ $drop != 0 ]] && res+="; log lines dropped"
  res=${res#; }
  kept=no
  [[ -z $res ]] && awk -v d="$drain" -v k="$KEEP_UP_SECS" 'BEGIN {exit !(d != "NA" && d <= k)}' && kept=yes
  if [[ -z $res ]]; then
    res=pass
    if [[ $kind == ladder ]]; then
      ((rate > best_rate)) && best_rate=$rate && best_rate_cpu=$cpu
      [[ $kept == yes ]] && ((rate > kept_rate)) && kept_rate=$rate
    fi
  fi
  # The target: the sustained run if there is one, else the ladder's step.
  if ((rate == TARGET_RATE)) && { [[ $kind == sustained ]] || ((SUSTAIN_SECS == 0)); }; then
    target_line="${kind}: reached $(fmt_int "$reached")/s; $got of $want logged; ringbuf_full +$lost; log_dropped +$drop; last line ${drain} s after the run"
    [[ $res == pass ]] && target_ok=yes
    target_rss=$rss
  fi
  if [[ $kind == ladder ]] && ((rate == TARGET_US_RATE)); then us_line="$us µs at $(fmt_int "$reached")/s ($res)"; us_at_target=$us; fi
  secs=$RATE_SECS
  [[ $kind == sustained ]] && secs=$SUSTAIN_SECS
  rate_rows+="| $rate | $secs | $(fmt_int "$reached") | $want | $got | $lost | $drop | $drain | $cpu | $us | $(mib "$rss") | $res |"$'\n'
done <"$RATE_RESULTS"

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
commit=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if [[ -n $(git -C "$SRC" status --porcelain -- agent bpf CMakeLists.txt 2>/dev/null) ]]; then
  dirty=" with uncommitted changes in agent/, bpf/ or CMakeLists.txt"
fi
os=$(. /etc/os-release && echo "$PRETTY_NAME")
build_type=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD/CMakeCache.txt")
[[ -n $build_type ]] || build_type="unset, so RelWithDebInfo (the default in CMakeLists.txt)"
send_target=$(awk -v e="$empty_send_med" -v m="$TARGET_SEND_MARGIN" 'BEGIN {if (e == "NA" || e == "") print "NA"; else printf "%.3f", e - m}')
send_verdict=$(awk -v r="$send_rr_med" -v t="$send_target" 'BEGIN {print (t == "NA") ? "not measured (no empty-program runs)" : (r >= t) ? "PASS" : "FAIL"}')
if awk -v a="$send_rr_q1" -v b="$send_rr_q3" -v t="$send_target" 'BEGIN {exit !(t != "NA" && a < t && t < b)}'; then
  send_verdict+=" (inconclusive: the target lies between the quartiles of the per-round ratios)"
fi
conn_verdict=$(awk -v r="$conn_rr_med" -v t="$TARGET_CONNECT_RATIO" 'BEGIN {print (r >= t) ? "PASS" : "FAIL"}')
if awk -v a="$conn_rr_q1" -v b="$conn_rr_q3" -v t="$TARGET_CONNECT_RATIO" 'BEGIN {exit !(a < t && t < b)}'; then
  conn_verdict+=" (inconclusive: the target lies between the quartiles of the per-round ratios)"
fi
us_verdict=$(awk -v u="$us_at_target" -v t="$TARGET_US" 'BEGIN {print (u == "NA" || u == "") ? "not measured" : (u <= t) ? "PASS" : "FAIL"}')

cat <<EOF
## egressd benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')

- Command: \`sudo tests/bench/run.sh\` (ROUNDS=$ROUNDS SEND_SECS=$SEND_SECS CONNECT_SECS=$CONNECT_SECS RATE_SECS=$RATE_SECS RATES="$RATES" SUSTAIN_SECS=$SUSTAIN_SECS OTHER_MAX=$OTHER_MAX MAX_ATTEMPTS=$MAX_ATTEMPTS)
- Machine: $(nproc) × $cpu_model, $mem_total RAM, Linux $(uname -r), $os
- egressd: commit $commit$dirty; CMAKE_BUILD_TYPE $build_type
- egressd runs with its defaults, except \`log: {max_files: 1000}\` so that no rotated log file is deleted before the benchmark counts its lines, and its state pinned in an instance of its own (\`state: {instance: bench-PID}\`), stopped with SIGINT, which unpins it, so that no pinned program runs on between phases.
- Sender pinned to CPU $SENDER_CPU, sink thread pinned to CPU $SINK_CPU, TCP over 127.0.0.1. $ROUNDS rounds; each runs every configuration once, in the order ${CONFIGS[*]} (odd rounds) or the reverse (even rounds), with a baseline run (no BPF program) before the first and after each; a configuration's ratio is its rate divided by the mean of the two baseline runs around it.

### 64-byte TCP sends per second (one connection, TCP_NODELAY, ${SEND_SECS} s per run)

$(throughput_table send sends/s)

### Short TCP connections per second (connect, send 64 bytes, close; ${CONNECT_SECS} s per run)

$(throughput_table connect conn/s)

egressd's own CPU while the loadgen ran (median, % of one CPU): ${agent_send_cpu} % during the send runs, ${agent_conn_cpu} % during the connection runs.
$(if ((${#THROUGHPUT_LOSS_NOTES[@]})); then
    printf 'Unpaced connection runs with lost or unlogged connections: '
    printf '%s; ' "${THROUGHPUT_LOSS_NOTES[@]}" | sed 's/; $//'
    echo "."
  else
    echo "Every unpaced connection run with egressd had one connection-attempted line per connect(), no ringbuf_full loss and no dropped log line."
  fi)
$([[ -n $BPFTRACE_NOTE ]] && echo "Note: $BPFTRACE_NOTE.")

Per-round values, sends/s: each run ÷ the mean of the baseline runs around it (the sink read ${SINK_BPR_REF} bytes per recv() in the warm-up; runs where it read over 1.25 times that were repeated, up to $MAX_ATTEMPTS tries):

$(per_round_table send)

Per-round values, connections/s: each run ÷ the mean of the baseline runs around it:

$(per_round_table connect)

### Paced connection rates with egressd running (one agent throughout)

| target conn/s | seconds | reached conn/s | connect() calls | connection-attempted lines | ringbuf_full lost | log lines dropped | last line logged, s after the run | agent CPU, % of one CPU | agent CPU µs per connection | agent VmRSS after | result |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
${rate_rows}
Agent CPU counts from the start of a run until the agent has logged its last connection, divided by the run's length.
Highest paced rate reached with zero lost events and every connection logged: **${best_rate}/s** (agent CPU ${best_rate_cpu} % of one CPU). Highest such rate the agent also kept up with (its last line within ${KEEP_UP_SECS} s of the end of the run): **${kept_rate}/s**.

Agent memory: right after start-up VmRSS $(mib "$RSS_START_KB"), VmHWM $(mib "$HWM_START_KB"); after the paced runs VmHWM $(mib "$RATE_HWM_KB"), VmRSS $(mib "$RATE_RSS_KB") = anon $(mib "$RATE_RSS_ANON_KB") + file-backed and shared mappings $(mib "$RATE_RSS_FILE_KB"). Highest VmHWM of any egressd run in this benchmark: $(mib "$MAX_HWM_KB").

### Other work on the machine

Highest CPU use by anything else during a kept run: $(fmt3 "$max_other") CPUs (throughput rounds), $(fmt3 "$max_other_rate") CPUs (paced runs); threshold $OTHER_MAX.
$(if ((${#RETRIED[@]})); then
    printf 'Runs repeated (other work, or the sink lagged): %d (' "${#RETRIED[@]}"
    printf '%s; ' "${RETRIED[@]}" | sed 's/; $//'
    echo ")."
  else echo "No run had to be repeated."; fi)
$(if ((NOISY_WAITS)); then echo "The machine did not go quiet before $NOISY_WAITS runs."; fi)
$(if ((${#FOREIGN_NOTES[@]})); then
    printf 'BPF programs of others stayed loaded on the measured paths, so the runs after these points include them: '
    printf '%s; ' "${FOREIGN_NOTES[@]}" | sed 's/; $//'
    echo "."
  else echo "No BPF program of anyone else was loaded on the measured paths."; fi)

### Targets

| target | measured | result |
|---|---|---|
| 64-byte sends: egressd's ratio (median) within $TARGET_SEND_MARGIN of the empty program's ($(fmt3 "$empty_send_med")), so ≥ $send_target | $(fmt3 "$send_rr_med") (quartiles $(fmt3 "$send_rr_q1") – $(fmt3 "$send_rr_q3"), range $(fmt3 "$send_rr_min") – $(fmt3 "$send_rr_max")) | $send_verdict |
| short connections: egressd ÷ baseline (median) ≥ $TARGET_CONNECT_RATIO, every connection logged | $(fmt3 "$conn_rr_med") (quartiles $(fmt3 "$conn_rr_q1") – $(fmt3 "$conn_rr_q3"), range $(fmt3 "$conn_rr_min") – $(fmt3 "$conn_rr_max")) | $conn_verdict |
| agent CPU ≤ $TARGET_US µs per logged connection at $TARGET_US_RATE/s | $us_line | $us_verdict |
| $TARGET_RATE connections/s sustained for ${SUSTAIN_SECS} s, nothing lost | $target_line | $([[ $target_ok == yes ]] && echo PASS || echo FAIL) |
| agent RSS under 50 MB (highest VmHWM of any egressd run) | $(mib "$MAX_HWM_KB"); VmRSS after the $TARGET_RATE/s run $(mib "$target_rss") | $(awk -v k="$MAX_HWM_KB" -v t="$TARGET_RSS_BYTES" 'BEGIN {print (k * 1024 < t) ? "PASS" : "FAIL"}') |
EOF
log "done"
