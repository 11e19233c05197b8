#!/usr/bin/python3
"""Traffic for systemd_sandbox_test.sh.

  sandbox_traffic.py sink PORTFILE
      Listens on 127.0.0.1 (free port, written to PORTFILE) and reads every
      connection to its end.
  sandbox_traffic.py client PORT BEFORE GOFILE AFTER MARKER...
      Connects, sends BEFORE bytes, waits (at most 60 s) until GOFILE exists,
      sends AFTER bytes and closes. MARKER... only tags the command line.
  sandbox_traffic.py check LOG PORT TOKEN
      Reads egressd's event log and checks the three flows the test made
      (see systemd_sandbox_test.sh); prints what it found; exits 1 on a
      mismatch.
"""
import json
import os
import socket
import sys
import threading
import time


def sink(portfile):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)

    def drain(c):
        while c.recv(65536):
            pass
        c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()


def client(port, before, gofile, after):
    c = socket.create_connection(("127.0.0.1", int(port)))
    c.sendall(b"x" * int(before))
    deadline = time.monotonic() + 60
    while gofile != "-" and not os.path.exists(gofile) and time.monotonic() < deadline:
        time.sleep(0.05)
    c.sendall(b"y" * int(after))
    c.close()


def check(log, port, token):
    port = int(port)
    want = {  # marker -> (uid, bytes egressd must count)
        f"pre-nobody-{token}": ("65534", 200),  # started before the agent: only what it sent after
        f"pre-root-{token}": ("0", 201),  # root's process: its command line is still readable
        f"post-nobody-{token}": ("65534", 303),
    }
    started, found, ok = None, {}, True
    for line in open(log, encoding="utf-8"):
        j = json.loads(line)
        action = j["event"]["action"]
        if action == "agent-started":
            started = j
        if action == "flow-ended" and j.get("destination", {}).get("port") == port:
            cmd = j["process"].get("command_line") or ""
            for marker in want:
                if marker in cmd.split():
                    found[marker] = j
    if not started:
        print("FAIL: no agent-started event")
        return 1
    hooks = started["egressd"]["hooks"]
    cgroup_hooks = [h for h in hooks if "cgroup" in h]
    print(f"ok   agent-started: {len(hooks)} hooks attached, {len(cgroup_hooks)} of them at the cgroup2 root "
          f"({cgroup_hooks[0].split('(')[-1].rstrip(')') if cgroup_hooks else 'none'})")
    if len(cgroup_hooks) < 7:
        print("FAIL: the cgroup programs are not attached")
        ok = False
    for marker, (uid, nbytes) in want.items():
        j = found.get(marker)
        if not j:
            print(f"FAIL: no flow-ended event for the client tagged {marker}")
            ok = False
            continue
        p = j["process"]
        got_uid = str(j.get("user", {}).get("id"))
        got_bytes = j["source"]["bytes"]
        exe = p.get("executable") or ""
        line = (f"{marker.rsplit('-', 1)[0]:<12} uid={got_uid:<5} bytes={got_bytes:<4} exe={exe} "
                f"command line read: {marker in (p.get('command_line') or '')}")
        good = got_uid == uid and got_bytes == nbytes and exe.startswith("/usr/bin/python3")
        print(("ok   " if good else "FAIL ") + line + ("" if good else f" (want uid={uid} bytes={nbytes})"))
        ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sink":
        sink(sys.argv[2])
    elif cmd == "client":
        client(*sys.argv[2:6])
    elif cmd == "check":
        sys.exit(check(*sys.argv[2:5]))
    else:
        sys.exit(__doc__)
