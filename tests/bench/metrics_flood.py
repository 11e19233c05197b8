#!/usr/bin/env python3
# Times /metrics and /healthz while hostile connections are open.
# usage: flood.py PORT N_HOSTILE ROUNDS
import socket, sys, time
port, n, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
kinds = [b"GET /metr", b"\x16\x03\x01garbage\r\n", b""]
hostile = []
for i in range(n):
    s = socket.socket()
    s.bind((f"127.0.1.{i % 25 + 1}", 0))
    s.settimeout(0.3)
    try:
        s.connect(("127.0.0.1", port))
        k = kinds[i % 3] if n > 2 else b"GET /metr"
        if k: s.send(k)
    except OSError as e:
        pass
    hostile.append(s)
def get(path):
    t = time.monotonic()
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
        status = data.split(b" ", 2)[1].decode() if data else "empty"
    except OSError as e:
        status = type(e).__name__
    s.close()
    return status, time.monotonic() - t
worst = 0
for r in range(rounds):
    for path in ("/metrics", "/healthz"):
        st, dt = get(path)
        worst = max(worst, dt)
        print(f"{path} {st} {dt*1000:.1f} ms")
    time.sleep(0.5)
print(f"worst {worst*1000:.1f} ms with {n} hostile connections")
