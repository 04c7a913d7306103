#!/usr/bin/env python3
"""A tiny authoritative DNS server over UDP for the end-to-end tests.

usage: dns_server.py BIND_ADDR PORT NAME IPV4 [NAME IPV4]...
Answers "NAME A" with IPV4 (for each pair), "big.NAME TXT" with about 1,200 bytes of text
(a datagram bigger than a small MTU's worth of payload), and NXDOMAIN for
everything else. Logs each query to stderr with the client's address."""
import socket
import struct
import sys


def read_name(msg, off):
    labels = []
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the end")
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower().rstrip("."), off
        if n & 0xC0:
            raise ValueError("compression in a question")
        labels.append(msg[off : off + n].decode(errors="replace"))
        off += n


def big_txt():
    """TXT RDATA: character-strings of at most 255 bytes, 1,200 in all."""
    text = (b"meshproxy-udp-" * 100)[:1200]
    out = b""
    for i in range(0, len(text), 200):
        part = text[i : i + 200]
        out += bytes([len(part)]) + part
    return out


def answer(query, name, ipv4, more=None):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    if flags & 0x8000 or qd != 1:
        return None
    qname, off = read_name(query, 12)
    if off + 4 > len(query):
        return None
    qtype, qclass = struct.unpack(">HH", query[off : off + 4])
    question = query[12 : off + 4]
    rr = b""
    rcode = 0
    more = more or {}
    if qname in more and qtype == 1:
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(more[qname])
    elif qname in more:
        pass  # the name exists, no record of this type
    elif qname == name and qtype == 1:
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ipv4)
    elif qname == "big." + name and qtype == 16:
        data = big_txt()
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 60, len(data)) + data
    elif qname not in (name, "big." + name):
        rcode = 3
    rflags = 0x8400 | (flags & 0x0100) | rcode  # QR, AA, copy RD
    head = struct.pack(">HHHHHH", qid, rflags, 1, 1 if rr else 0, 0, 0)
    return head + question + rr, qname, qtype, rcode


def main():
    if len(sys.argv) < 5 or len(sys.argv) % 2 != 1:
        sys.stderr.write(__doc__)
        return 2
    addr, port, name, ipv4 = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower().rstrip("."), sys.argv[4]
    more = {}
    for i in range(5, len(sys.argv), 2):
        more[sys.argv[i].lower().rstrip(".")] = sys.argv[i + 1]
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    sys.stderr.write("dns: serving %s on %s:%d\n" % (name, addr, port))
    sys.stderr.flush()
    while True:
        query, peer = s.recvfrom(4096)
        try:
            r = answer(query, name, ipv4, more)
        except ValueError as e:
            sys.stderr.write("dns: %s: bad query: %s\n" % (peer, e))
            continue
        if r is None:
            sys.stderr.write("dns: %s: ignored %d bytes\n" % (peer, len(query)))
            continue
        reply, qname, qtype, rcode = r
        sys.stderr.write("dns: %s: %s type %d -> rcode %d, %d bytes\n" % (peer, qname, qtype, rcode, len(reply)))
        sys.stderr.flush()
        s.sendto(reply, peer)


if __name__ == "__main__":
    sys.exit(main())
