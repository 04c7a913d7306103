#!/usr/bin/env python3
"""A small DNS server over UDP and TCP for the tunnel DNS test.

usage: dns_tunnel_server.py BIND_ADDR PORT ZONE IPV4 IPV6
  ZONE            A IPV4, AAAA IPV6
  alias.ZONE      CNAME ZONE (and the records of ZONE after it)
  tc.ZONE         over UDP: an empty answer with TC set; over TCP: A IPV4
  anything else   NXDOMAIN
Logs every query (transport, client, name, type) to stderr."""
import socket
import socketserver
import struct
import sys
import threading


def read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower(), off
        if n & 0xC0:
            raise ValueError("compression in a question")
        labels.append(msg[off : off + n].decode(errors="replace"))
        off += n


def answer(query, zone, v4, v6, tcp):
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    qname, off = read_name(query, 12)
    qtype = struct.unpack(">H", query[off : off + 2])[0]
    question = query[12 : off + 4]
    rrs, rcode, tc = [], 0, False

    def addr_rr(ptr):
        if qtype == 1:
            return ptr + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(v4)
        if qtype == 28:
            return ptr + struct.pack(">HHIH", 28, 1, 60, 16) + socket.inet_pton(socket.AF_INET6, v6)
        return None

    if qname == zone:
        rr = addr_rr(b"\xc0\x0c")
        if rr:
            rrs.append(rr)
    elif qname == "alias." + zone:
        # CNAME to the zone name, written as a pointer into the question
        # (the question's name is alias.<zone>: skip the "alias" label).
        target = bytes([0xC0, 12 + 6])
        rrs.append(b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, len(target)) + target)
        rr = addr_rr(target)
        if rr:
            rrs.append(rr)
    elif qname == "tc." + zone:
        if not tcp:
            tc = True
        elif qtype == 1:
            rrs.append(addr_rr(b"\xc0\x0c"))
    else:
        rcode = 3
    rflags = 0x8400 | (flags & 0x0100) | (0x0200 if tc else 0) | rcode
    head = struct.pack(">HHHHHH", qid, rflags, 1, len(rrs), 0, 0)
    return head + question + b"".join(rrs), qname, qtype


def log(*a):
    sys.stderr.write("dns: " + " ".join(str(x) for x in a) + "\n")
    sys.stderr.flush()


def main():
    if len(sys.argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    addr, port, zone, v4, v6 = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower(), sys.argv[4], sys.argv[5]

    class TCPHandler(socketserver.BaseRequestHandler):
        def handle(self):
            data = b""
            while True:
                while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
                    more = self.request.recv(4096)
                    if not more:
                        return
                    data += more
                n = struct.unpack(">H", data[:2])[0]
                q, data = data[2 : 2 + n], data[2 + n :]
                reply, qname, qtype = answer(q, zone, v4, v6, True)
                log("tcp", self.client_address[0], qname, qtype)
                self.request.sendall(struct.pack(">H", len(reply)) + reply)

    socketserver.TCPServer.allow_reuse_address = True
    tsrv = socketserver.ThreadingTCPServer((addr, port), TCPHandler)
    threading.Thread(target=tsrv.serve_forever, daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((addr, port))
    log("serving", zone, "on", addr, port)
    while True:
        q, peer = u.recvfrom(4096)
        try:
            reply, qname, qtype = answer(q, zone, v4, v6, False)
        except (ValueError, IndexError, struct.error) as e:
            log("udp", peer[0], "bad query:", e)
            continue
        log("udp", peer[0], qname, qtype)
        u.sendto(reply, peer)


if __name__ == "__main__":
    sys.exit(main())
