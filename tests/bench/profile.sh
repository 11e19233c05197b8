#!/usr/bin/env bash
# Where a connection's cost goes (a command, not a test; docs/BENCHMARKS.md).
# Runs the short-connection loadgen (connect, send 64 B, close) unpaced for
# SECS seconds, first alone, then with `egressd run` (event log to a file),
# and prints:
#   - the loadgen's connections/s and its own CPU per connection, both runs;
#   - each BPF program's run count and average run time during the run
#     (kernel.bpf_stats_enabled), per connection;
#   - the agent's CPU per connection and a perf profile of it (top symbols).
# Environment: SECS (5), SENDER_CPU (0), SINK_CPU (1), EGRESSD_BENCH_BUILD
# (build directory with egressd; default ./build), OUT (keep files there).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${EGRESSD_BENCH_BUILD:-$ROOT/build}
SECS=${SECS:-5}
SENDER_CPU=${SENDER_CPU:-0}
SINK_CPU=${SINK_CPU:-1}
OUT=${OUT:-$(mktemp -d /tmp/egressd-profile.XXXXXX)}
mkdir -p "$OUT"
[[ $EUID -eq 0 ]] || { echo "profile.sh: needs root" >&2; exit 1; }
for tool in perf bpftool jq g++; do
  command -v "$tool" >/dev/null || { echo "profile.sh: missing $tool (apt-get install linux-perf bpftool jq g++)" >&2; exit 1; }
done
g++ -O2 -std=c++20 -pthread -o "$OUT/loadgen" "$ROOT/tests/bench/loadgen.cpp"
LOADGEN=("$OUT/loadgen" --cpu "$SENDER_CPU" --sink-cpu "$SINK_CPU")

agent=""
cleanup() {
  [[ -n $agent ]] && kill -INT "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  sysctl -qw kernel.bpf_stats_enabled="${old_stats:-0}" || true
}
trap cleanup EXIT
old_stats=$(sysctl -n kernel.bpf_stats_enabled)

"${LOADGEN[@]}" connect "$SECS" >"$OUT/alone.json"

sysctl -qw kernel.bpf_stats_enabled=1
printf 'log:\n  max_files: 1000\nstate:\n  pin: false\n' >"$OUT/egressd.yaml" # keep every rotated file: every line is counted
rm -f "$OUT"/events.json*
"$BUILD/egressd" run -c "$OUT/egressd.yaml" --metrics-addr 127.0.0.1:0 --log-file "$OUT/events.json" 2>"$OUT/agent.err" &
agent=$!
for _ in $(seq 50); do grep -q agent-started "$OUT/events.json" 2>/dev/null && break; sleep 0.1; done
grep -q agent-started "$OUT/events.json" || { echo "profile.sh: the agent did not start: $(cat "$OUT/agent.err")" >&2; exit 1; }
bpftool prog show -j >"$OUT/progs-before.json"
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
t0=$(ticks)
perf record -q -F 999 -g -p "$agent" -o "$OUT/perf.data" -- sleep "$((SECS + 2))" 2>/dev/null &
perf_pid=$!
"${LOADGEN[@]}" connect "$SECS" >"$OUT/with.json"
wait "$perf_pid" || true
t1=$(ticks)
bpftool prog show -j >"$OUT/progs-after.json"
lines=$(cat "$OUT"/events.json* | grep -c '"connection-attempted"' || true) # with the files it rotated to

conns_alone=$(jq -r ".attempted" "$OUT/alone.json")
conns_with=$(jq -r ".attempted" "$OUT/with.json")
echo "== loadgen: connect, send 64 B, close; ${SECS} s, sender on CPU $SENDER_CPU, sink on CPU $SINK_CPU"
for run in alone with; do
  jq -r --arg run "$run" '"\($run): \(.connections_per_s | floor) conn/s, sender CPU \((.sender_cpu_s * 1e6 / .attempted * 10 | round) / 10) µs per connection"' "$OUT/$run.json"
done
echo "== BPF programs during the run with egressd (per connection of the loadgen)"
jq -n --slurpfile a "$OUT/progs-before.json" --slurpfile b "$OUT/progs-after.json" --argjson n "$conns_with" '
  [ $b[0][] | select(.name != null) | . as $p
    | ($a[0][] | select(.id == $p.id)) as $q
    | { name: $p.name, runs: (($p.run_cnt // 0) - ($q.run_cnt // 0)), ns: (($p.run_time_ns // 0) - ($q.run_time_ns // 0)) } ]
  | map(select(.runs > 0)) | sort_by(-.ns)
  | (map(.ns) | add) as $total
  | (.[] | "\(.name): \((.runs / $n * 100 | round) / 100) runs, \((.ns / $n | round)) ns per connection (\(.ns / .runs | round) ns a run)"),
    "all programs: \(($total / $n) | round) ns per connection"' -r
hz=$(getconf CLK_TCK)
echo "== agent: $(( (t1 - t0) * 1000000 / hz / (conns_with > 0 ? conns_with : 1) )) µs of CPU per connection; $lines connection-attempted lines for $conns_with connect() calls"
echo "== agent profile (perf, self time, top 25)"
perf report -i "$OUT/perf.data" --stdio --no-children --sort symbol 2>/dev/null | grep -E '^ +[0-9.]+%' | head -25 | awk '{$1 = $1; print substr($0, 1, 140)}'
echo "(files in $OUT)"
