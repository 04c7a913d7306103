#!/usr/bin/env python3
"""A STUN server that honours CHANGE-REQUEST (RFC 5780 section 7.2), for
the NAT lab's miniupnpd.

usage: stun_change.py ADDR1 ADDR2 PORT1 PORT2

Listens on UDP ADDR1:PORT1, ADDR1:PORT2, ADDR2:PORT1 and ADDR2:PORT2. A
binding request gets a success response with XOR-MAPPED-ADDRESS and
MAPPED-ADDRESS, sent from the socket its CHANGE-REQUEST attribute asks
for (change IP: 0x04, change port: 0x02). miniupnpd learns its external
address this way when its WAN address is a reserved one (the lab's
198.18.0.0/15 is): it trusts that address only after all four of its
probes, three of them with CHANGE-REQUEST, were answered. mesh-relay's
STUN server answers plain binding requests only. Anything that is not a
well-formed binding request is dropped.
"""
import select
import socket
import struct
import sys

COOKIE = 0x2112A442
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101
ATTR_MAPPED, ATTR_XOR_MAPPED, ATTR_CHANGE = 0x0001, 0x0020, 0x0003


def parse(data):
    """(txid, change_ip, change_port) of a binding request, or None."""
    if len(data) < 20:
        return None
    typ, length, cookie = struct.unpack("!HHI", data[:8])
    if typ != BINDING_REQUEST or cookie != COOKIE or length % 4 or 20 + length > len(data):
        return None
    txid, off, end = data[8:20], 20, 20 + length
    cip = cport = False
    while off + 4 <= end:
        at, al = struct.unpack("!HH", data[off:off + 4])
        if off + 4 + al > end:
            return None
        if at == ATTR_CHANGE and al == 4:
            (flags,) = struct.unpack("!I", data[off + 4:off + 8])
            cip, cport = bool(flags & 4), bool(flags & 2)
        off += 4 + ((al + 3) & ~3)
    return txid, cip, cport


def response(txid, addr):
    ip = socket.inet_aton(addr[0])
    port = addr[1]
    xip = bytes(a ^ b for a, b in zip(ip, struct.pack("!I", COOKIE)))
    attrs = struct.pack("!HHBBH", ATTR_MAPPED, 8, 0, 1, port) + ip
    attrs += struct.pack("!HHBBH", ATTR_XOR_MAPPED, 8, 0, 1, port ^ (COOKIE >> 16)) + xip
    return struct.pack("!HHI", BINDING_SUCCESS, len(attrs), COOKIE) + txid + attrs


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    a1, a2, p1, p2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    socks = {}
    for ai, a in enumerate((a1, a2)):
        for pi, p in enumerate((p1, p2)):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a, p))
            socks[(ai, pi)] = s
    where = {s: k for k, s in socks.items()}
    print("stun_change: serving %s and %s, ports %d and %d" % (a1, a2, p1, p2), flush=True)
    while True:
        ready, _, _ = select.select(list(where), [], [])
        for s in ready:
            data, src = s.recvfrom(2048)
            req = parse(data)
            if req is None:
                continue
            txid, cip, cport = req
            ai, pi = where[s]
            out = socks[(ai ^ cip, pi ^ cport)]
            out.sendto(response(txid, src), src)
            print("stun_change: %s:%d change ip %s port %s" % (src[0], src[1], cip, cport),
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
