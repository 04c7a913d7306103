#!/usr/bin/env python3
"""A TCP server that expects a PROXY protocol v2 header and tells the client
what it said.

usage: pp2_server.py BIND_ADDR PORT
Each connection must start with a PROXY v2 header. The server answers one
line, "PP2 PROXY src=ADDR:PORT dst=ADDR:PORT" (or "PP2 LOCAL", or
"NOPP2 <first bytes in hex>" when the header is missing or malformed), then
echoes the client's bytes until it half-closes, then closes. The mesh
identity TLVs (0xE0 name, 0xE1 user, 0xE2 tags) are logged on stderr, one
line "pp2: tlv 0xe0=VALUE" each."""
import ipaddress
import socket
import socketserver
import struct
import sys

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            return buf
        buf += b
    return buf


def parse(sock):
    """The answer line for the header read from sock."""
    head = recv_exact(sock, 16)
    if len(head) < 16 or head[:12] != SIG:
        return "NOPP2 %s" % head.hex()
    ver_cmd, fam = head[12], head[13]
    (length,) = struct.unpack(">H", head[14:16])
    body = recv_exact(sock, length)
    if len(body) < length:
        return "NOPP2 short header body (%d of %d)" % (len(body), length)
    if ver_cmd >> 4 != 2:
        return "NOPP2 version %d" % (ver_cmd >> 4)
    cmd = ver_cmd & 0xF
    if cmd == 0:
        return "PP2 LOCAL"
    if cmd != 1:
        return "NOPP2 command %d" % cmd
    alen = {0x11: 12, 0x21: 36}.get(fam, length)
    off = alen
    while off + 3 <= length:
        t, vl = body[off], struct.unpack(">H", body[off + 1:off + 3])[0]
        v = body[off + 3:off + 3 + vl]
        if 0xE0 <= t <= 0xE2:
            sys.stderr.write("pp2: tlv 0x%02x=%s\n" % (t, v.decode("utf-8", "replace")))
        off += 3 + vl
    if fam == 0x11 and length >= 12:
        src = ipaddress.IPv4Address(body[0:4])
        dst = ipaddress.IPv4Address(body[4:8])
        sp, dp = struct.unpack(">HH", body[8:12])
        return "PP2 PROXY src=%s:%d dst=%s:%d" % (src, sp, dst, dp)
    if fam == 0x21 and length >= 36:
        src = ipaddress.IPv6Address(body[0:16])
        dst = ipaddress.IPv6Address(body[16:32])
        sp, dp = struct.unpack(">HH", body[32:36])
        return "PP2 PROXY src=[%s]:%d dst=[%s]:%d" % (src, sp, dst, dp)
    return "NOPP2 family 0x%02x length %d" % (fam, length)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(20)
        try:
            line = parse(s)
            sys.stderr.write("pp2: %s\n" % line)
            sys.stderr.flush()
            s.sendall(line.encode() + b"\n")
            if line.startswith("NOPP2"):
                return
            while True:
                b = s.recv(65536)
                if not b:
                    break
                s.sendall(b)
        except OSError as e:
            sys.stderr.write("pp2: %s\n" % e)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    srv = Server((sys.argv[1], int(sys.argv[2])), Handler)
    sys.stderr.write("pp2: listening on %s:%s\n" % (sys.argv[1], sys.argv[2]))
    sys.stderr.flush()
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
