#!/usr/bin/env python3
"""TCP throughput and request/response latency, directly or through SOCKS5.

Used by bench/run.sh where iperf3 cannot go (SOCKS5), and for one latency
measure that is the same on every path: the round trip of a 1-byte request
and 1-byte answer over one established TCP connection (like netperf TCP_RR),
so it goes through the same forwards and proxies as the bulk data.

  tcpbench.py server HOST PORT
  tcpbench.py up   [--socks HOST:PORT] HOST PORT SECONDS   -> Mbit/s
  tcpbench.py down [--socks HOST:PORT] HOST PORT SECONDS   -> Mbit/s
  tcpbench.py rr   [--socks HOST:PORT] HOST PORT COUNT     -> median_us p10_us p90_us

Protocol: the client's first byte picks the mode: 'U' the server reads
until EOF and answers the byte count (8 bytes, big-endian); 'D' the server
writes until the client closes; 'R' the server echoes every byte.
"""
import ipaddress
import socket
import socketserver
import struct
import sys
import time

CHUNK = 256 * 1024


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = s.recv(1)
        if mode == b"U":
            n = 0
            buf = bytearray(CHUNK)
            while True:
                k = s.recv_into(buf)
                if k == 0:
                    break
                n += k
            s.sendall(struct.pack(">Q", n))
        elif mode == b"D":
            data = b"\xa5" * CHUNK
            try:
                while True:
                    s.sendall(data)
            except OSError:
                pass
        elif mode == b"R":
            while True:
                b = s.recv(64)
                if not b:
                    break
                s.sendall(b)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise OSError("connection closed (got %d of %d bytes)" % (len(out), n))
        out += b
    return out


def connect(host, port, socks):
    if not socks:
        s = socket.create_connection((host, port), timeout=30)
    else:
        ph, pp = socks.rsplit(":", 1)
        s = socket.create_connection((ph, int(pp)), timeout=30)
        s.sendall(b"\x05\x01\x00")
        if recv_exact(s, 2) != b"\x05\x00":
            raise OSError("SOCKS5: no-auth method refused")
        try:
            ip = ipaddress.ip_address(host)
            atyp = b"\x01" if ip.version == 4 else b"\x04"
            addr = atyp + ip.packed
        except ValueError:
            addr = b"\x03" + bytes([len(host)]) + host.encode()
        s.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
        rep = recv_exact(s, 4)
        if rep[1] != 0:
            raise OSError("SOCKS5: CONNECT failed, reply %d" % rep[1])
        rest = {1: 4, 4: 16}.get(rep[3])
        if rest is None:
            rest = recv_exact(s, 1)[0]
        recv_exact(s, rest + 2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(60)
    return s


def run_up(s, secs):
    data = b"\x5a" * CHUNK
    s.sendall(b"U")
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    n = struct.unpack(">Q", recv_exact(s, 8))[0]
    dt = time.monotonic() - t0
    return n * 8 / dt / 1e6


def run_down(s, secs):
    s.sendall(b"D")
    buf = bytearray(CHUNK)
    n = 0
    t0 = time.monotonic()
    while True:
        k = s.recv_into(buf)
        if k == 0:
            break
        n += k
        if time.monotonic() - t0 >= secs:
            break
    dt = time.monotonic() - t0
    return n * 8 / dt / 1e6


def run_rr(s, count):
    s.sendall(b"R")
    for _ in range(5):  # warm-up
        s.sendall(b"x")
        recv_exact(s, 1)
    rtts = []
    for _ in range(count):
        t0 = time.perf_counter()
        s.sendall(b"x")
        recv_exact(s, 1)
        rtts.append((time.perf_counter() - t0) * 1e6)
    rtts.sort()
    pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))]
    return rtts[len(rtts) // 2], pick(0.1), pick(0.9)


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd = argv[1]
    args = argv[2:]
    if cmd == "server":
        srv = Server((args[0], int(args[1])), Handler)
        srv.serve_forever()
        return 0
    socks = None
    if args and args[0] == "--socks":
        socks = args[1]
        args = args[2:]
    host, port, n = args[0], int(args[1]), float(args[2])
    s = connect(host, port, socks)
    try:
        if cmd == "up":
            print("%.1f" % run_up(s, n))
        elif cmd == "down":
            print("%.1f" % run_down(s, n))
        elif cmd == "rr":
            print("%.1f %.1f %.1f" % run_rr(s, int(n)))
        else:
            sys.stderr.write(__doc__)
            return 2
    finally:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
