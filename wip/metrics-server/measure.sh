#!/bin/bash
# measure.sh BINARY PORT: agent started, flood.py with 0, 2 and 400 hostile connections.
bin=$1; port=$2
$bin run --log-file /dev/null --metrics-addr 127.0.0.1:$port 2>/tmp/wtm/agent-$port.err &
pid=$!
for i in $(seq 50); do curl -s -m 1 http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.2; done
for n in ${NS:-0 2 400}; do echo "== $n hostile"; timeout 120 python3 -u /tmp/wtm/flood.py $port $n 3; done
kill -TERM $pid; wait $pid; echo "agent exit $?"
