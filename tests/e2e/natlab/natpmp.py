#!/usr/bin/env python3
"""A NAT-PMP client (RFC 6886) to prove the lab's miniupnpd answers.

usage: natpmp.py GATEWAY external
       natpmp.py GATEWAY map INTERNAL_PORT LIFETIME_S

external: prints the router's external address. map: asks for a UDP
mapping of INTERNAL_PORT (LIFETIME_S 0 deletes it) and prints
"EXTERNAL_PORT LIFETIME". Exits 1 with a message when the router does not
answer in 2 s or answers with a result code other than 0 (success). Every
answer is length-checked before it is read.
"""
import socket
import struct
import sys

PORT = 5351
RESULTS = {1: "unsupported version", 2: "not authorized / refused", 3: "network failure",
           4: "out of resources", 5: "unsupported opcode"}


def ask(gw, req, want_op, want_len):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    for _ in range(4):
        s.sendto(req, (gw, PORT))
        try:
            data, src = s.recvfrom(64)
        except socket.timeout:
            continue
        if src[0] != gw or len(data) < 4:
            continue
        ver, op, rc = struct.unpack("!BBH", data[:4])
        if ver != 0 or op != want_op:
            continue
        if rc != 0:
            sys.exit("natpmp: %s answered result %d (%s)" % (gw, rc, RESULTS.get(rc, "?")))
        if len(data) < want_len:
            sys.exit("natpmp: %s answered %d bytes, want %d" % (gw, len(data), want_len))
        return data
    sys.exit("natpmp: no answer from %s:%d in 2 s" % (gw, PORT))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    gw, cmd = sys.argv[1], sys.argv[2]
    if cmd == "external":
        d = ask(gw, struct.pack("!BB", 0, 0), 128, 12)
        print(socket.inet_ntoa(d[8:12]))
    elif cmd == "map" and len(sys.argv) == 5:
        port, life = int(sys.argv[3]), int(sys.argv[4])
        d = ask(gw, struct.pack("!BBHHHI", 0, 1, 0, port, port, life), 129, 16)
        inner, ext, lt = struct.unpack("!HHI", d[8:16])
        if inner != port:
            sys.exit("natpmp: answer for internal port %d, asked %d" % (inner, port))
        print(ext, lt)
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
