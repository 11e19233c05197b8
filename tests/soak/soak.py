#!/usr/bin/env python3
"""Soak: the real agent under mixed load for a while, checked against ground truth.

    tests/soak/soak.py --minutes 30 --build build [--destinations 1000000] [--json out.json]

Runs `egressd run` (event log and metrics in a temporary directory) and, in
rounds until the time is up: one process making 100 short TCP connections of
1,000 bytes, a UDP spray to distinct loopback destinations (keeping pace with
the clock, so that --destinations are reached at the end), and five one-shot
processes of one 300-byte connection each (process churn). Everything goes to loopback (127.0.0.0/8). Then it stops the agent
with SIGTERM and checks:

  - the bytes in the event log (last source.bytes of each flow) and in
    egressd_sent_bytes_total equal what the load generators sent, exactly;
  - no event was lost (egressd_events_lost_total) and no log line dropped;
  - RSS is bounded: the largest RSS of the second half is within 10 % (and
    8 MiB) of the first half's, and under 512 MiB;
  - the process and flow maps stayed within their capacity.

Prints one line per minute and a summary; exits 0 when every check holds.
Needs root (the agent loads BPF programs).
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name, want=None):
    """Sum of the samples of name whose labels include want."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^(\w+)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if want and any(labels.get(k) != v for k, v in want.items()):
            continue
        total += float(m.group(4))
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


PIDS = set()


def traffic(binary, *args):
    out = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"egressd-traffic {' '.join(map(str, args))}: {out.stderr.strip()}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    PIDS.add(result["pid"])
    return result


def log_files(log_path):
    """The log and its rotated files, oldest first."""
    rotated = sorted((int(n.rsplit(".", 1)[1]), n) for n in os.listdir(os.path.dirname(log_path))
                     if n.startswith(os.path.basename(log_path) + ".") and n.rsplit(".", 1)[1].isdigit())
    return [os.path.join(os.path.dirname(log_path), n) for _, n in reversed(rotated)] + [log_path]


def logged(log_path, pids, executable):
    """(bytes, flows, lines, misattributed bytes): the last source.bytes of
    every flow of the load generators (by pid), and how many of those bytes
    were logged under another process.executable than theirs (or none)."""
    last = {}
    misattributed = {}
    lines = 0
    for path in log_files(log_path):
      with open(path, errors="replace") as f:
        for line in f:
          lines += 1
          try:
              e = json.loads(line)
          except ValueError:
              continue
          action = e.get("event", {}).get("action")
          if action not in ("flow-ended", "flow-updated"):
              continue
          if e.get("process", {}).get("pid") not in pids:
              continue
          fid = e["egressd"]["flow"]["id"]
          last[fid] = e.get("source", {}).get("bytes", 0)
          if e.get("process", {}).get("executable") != executable:
              misattributed[fid] = last[fid]
          else:
              misattributed.pop(fid, None)
    return sum(last.values()), len(last), lines, sum(misattributed.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--destinations", type=int, default=1_000_000,
                    help="distinct UDP destinations over the whole run")
    ap.add_argument("--json", help="write the results here")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        if os.environ.get("EGRESSD_REQUIRE_BPF") == "1":
            sys.exit("soak: FAIL: needs root to load BPF programs (EGRESSD_REQUIRE_BPF=1)")
        print("soak: skipped: needs root to load BPF programs")
        return 77

    egressd = os.path.join(opts.build, "egressd")
    binary = os.path.realpath(os.path.join(opts.build, "tests", "egressd-traffic"))
    tmp = tempfile.mkdtemp(prefix="egressd-soak-")
    log_path = os.path.join(tmp, "events.json")
    err = open(os.path.join(tmp, "agent.err"), "w")
    instance = f"soak-{os.getpid()}"
    config = os.path.join(tmp, "egressd.yaml")
    with open(config, "w") as f:
        f.write("log:\n  max_files: 1000\n")  # every rotated file kept: every line is counted
    agent = subprocess.Popen([egressd, "run", "-c", config, "--log-file", log_path, "--metrics-addr",
                              "127.0.0.1:0", "--instance", instance], stdout=subprocess.DEVNULL, stderr=err)
    addr = None
    for _ in range(300):
        if agent.poll() is not None:
            sys.exit(f"soak: egressd exited {agent.returncode}: {open(err.name).read()}")
        try:
            with open(log_path) as f:
                for line in f:
                    e = json.loads(line)
                    if e.get("event", {}).get("action") == "agent-started":
                        addr = e["egressd"]["metrics"]["address"]
        except (OSError, ValueError):
            pass
        if addr:
            break
        time.sleep(0.1)
    if not addr:
        agent.kill()
        sys.exit("soak: egressd did not start within 30 s")

    sink_port = free_port()
    sink = subprocess.Popen([binary, "tcp-sink", "127.0.0.1", str(sink_port)], stdout=subprocess.DEVNULL)
    time.sleep(0.3)

    seconds = max(1, int(opts.minutes * 60))
    sent = 0
    next_dst = 0
    processes = 0
    samples = []  # (elapsed s, rss KiB, process map entries, flow map entries, series)
    start = time.monotonic()
    deadline = start + seconds
    failures = []
    last_sample = last_report = -1e9
    try:
        while True:
            now = time.monotonic()
            done = now >= deadline
            sent += traffic(binary, "tcp-many", "127.0.0.1", sink_port, 100, 1000)["bytes"]
            # The UDP destinations keep pace with the clock; the last round
            # sends what is left.
            due = opts.destinations if done else min(opts.destinations,
                                                     int(opts.destinations * (now - start) / seconds))
            if due > next_dst:
                sent += traffic(binary, "udp-spray", next_dst, due - next_dst, 64, 9)["bytes"]
                next_dst = due
            for _ in range(5):
                sent += traffic(binary, "tcp", "127.0.0.1", sink_port, 300, 300, "send")["bytes"]
            processes += 7
            elapsed = time.monotonic() - start
            if elapsed - last_sample >= 10 or done:
                last_sample = elapsed
                text = scrape(addr)
                samples.append((round(elapsed, 1), rss_kib(agent.pid),
                                metric(text, "egressd_process_map_entries"),
                                metric(text, "egressd_flow_map_entries"), metric(text, "egressd_series")))
            if elapsed - last_report >= 60:
                last_report = elapsed
                s = samples[-1]
                print(f"soak: {s[0]:.0f} s: rss {s[1] / 1024:.1f} MiB, process map {s[2]:.0f}, "
                      f"flow map {s[3]:.0f}, series {s[4]:.0f}; {sent} bytes sent, {next_dst} destinations",
                      flush=True)
            if done:
                break
            time.sleep(max(0.0, 0.25 - (time.monotonic() - now)))
        # Every close is read and every counter polled: three polls of 2 s.
        time.sleep(6.5)
        text = scrape(addr)
    finally:
        sink.terminate()
        sink.wait()
    agent.send_signal(signal.SIGTERM)
    code = agent.wait(timeout=60)
    err.close()
    subprocess.run(["rm", "-rf", f"/sys/fs/bpf/egressd/{instance}"])  # its pinned programs go too
    if code != 0:
        failures.append(f"egressd exited {code}")

    # Every series but the scrapes' own (this script's python3).
    metric_bytes = metric(text, "egressd_sent_bytes_total") - metric(
        text, "egressd_sent_bytes_total", {"binary": os.path.realpath(sys.executable)})
    log_bytes, flows, lines, misattributed = logged(log_path, PIDS, binary)
    lost = metric(text, "egressd_events_lost_total")
    dropped = metric(text, "egressd_log_dropped_total") + metric(text, "egressd_log_write_failures_total")
    half = [s[1] for s in samples if s[0] <= seconds / 2] or [samples[0][1]]
    rest = [s[1] for s in samples if s[0] > seconds / 2] or half
    rss_first, rss_second = max(half), max(rest)
    pmap_cap = metric(text, "egressd_process_map_capacity")
    fmap_cap = metric(text, "egressd_flow_map_capacity")
    results = {
        "minutes": opts.minutes, "sent_bytes": sent, "log_bytes": log_bytes, "metric_bytes": metric_bytes,
        "flows_logged": flows, "log_lines": lines, "misattributed_bytes": misattributed, "udp_destinations": next_dst, "processes": processes,
        "events_lost": lost, "log_lines_lost": dropped, "rss_first_half_kib": rss_first,
        "rss_second_half_kib": rss_second, "process_map_max": max(s[2] for s in samples),
        "process_map_capacity": pmap_cap, "flow_map_max": max(s[3] for s in samples),
        "flow_map_capacity": fmap_cap, "series_max": max(s[4] for s in samples), "samples": samples,
    }
    if log_bytes != sent:
        failures.append(f"event log has {log_bytes} bytes, {sent} were sent")
    if metric_bytes != sent:
        failures.append(f"egressd_sent_bytes_total has {metric_bytes:.0f} bytes, {sent} were sent")
    if lost:
        failures.append(f"{lost:.0f} events lost")
    if dropped:
        failures.append(f"{dropped:.0f} log lines dropped or failed")
    if rss_second > max(rss_first * 1.10, rss_first + 8192):
        failures.append(f"RSS grew: {rss_first} KiB in the first half, {rss_second} KiB in the second")
    if rss_second > 512 * 1024:
        failures.append(f"RSS {rss_second} KiB is over 512 MiB")
    if results["process_map_max"] > pmap_cap or results["flow_map_max"] > fmap_cap:
        failures.append("a map went past its capacity")
    if misattributed:
        # The generators' bytes charged to another program (docs/BENCHMARKS.md, soak).
        failures.append(f"{misattributed} of the bytes were logged under another process.executable than "
                        f"{binary}")
    results["failures"] = failures
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"soak: {opts.minutes:g} min, {processes} processes, {next_dst} UDP destinations, {flows} flows in "
          f"{lines} log lines; sent {sent} bytes, logged {log_bytes}, metric {metric_bytes:.0f}; "
          f"events lost {lost:.0f}; RSS {rss_first / 1024:.1f} -> {rss_second / 1024:.1f} MiB; "
          f"process map <= {results['process_map_max']:.0f}/{pmap_cap:.0f}, flow map <= "
          f"{results['flow_map_max']:.0f}/{fmap_cap:.0f}, series <= {results['series_max']:.0f}")
    for f in failures:
        print(f"soak: FAIL: {f}")
    if not failures:
        subprocess.run(["rm", "-rf", tmp])
    else:
        print(f"soak: the agent's log and stderr are in {tmp}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
