#!/usr/bin/python3
"""Resolves NAME through RESOLVER (A or AAAA) over UDP from this process, then
connects to the first answered address on PORT and sends BYTES bytes: the
flow must be named by what this process resolved.

usage: dns_client.py RESOLVER NAME A|AAAA PORT BYTES [tcp]   (prints the address)
"""
import random
import socket
import struct
import sys


def query(resolver, name, qtype, tcp=False):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 28 if qtype == "AAAA" else 1, 1)
    if tcp:
        s = socket.create_connection((resolver, 53), timeout=5)
        s.sendall(struct.pack(">H", len(q)) + q)
        resp = b""
        while len(resp) < 2 or len(resp) < 2 + struct.unpack(">H", resp[:2])[0]:
            chunk = s.recv(4096)
            if not chunk:
                break
            resp += chunk
        s.close()
        return resp[2:]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, (resolver, 53))
    resp, _ = s.recvfrom(4096)
    s.close()
    return resp


def answers(resp, qtype):
    off = 12
    qd, an = struct.unpack(">HH", resp[4:8])
    def skip_name(o):
        while True:
            n = resp[o]
            if n == 0:
                return o + 1
            if n & 0xC0 == 0xC0:
                return o + 2
            o += n + 1
    for _ in range(qd):
        off = skip_name(off) + 4
    out = []
    for _ in range(an):
        off = skip_name(off)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", resp[off:off + 10])
        off += 10
        data = resp[off:off + rdlen]
        off += rdlen
        if rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, data))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, data))
    return out


def main():
    resolver, name, qtype, port, nbytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    tcp = len(sys.argv) > 6 and sys.argv[6] == "tcp"
    addr = answers(query(resolver, name, qtype, tcp), qtype)[0]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    c = socket.socket(family, socket.SOCK_STREAM)
    c.connect((addr, port))
    c.sendall(b"d" * nbytes)
    c.close()
    print(addr)


if __name__ == "__main__":
    main()
