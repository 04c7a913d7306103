#!/usr/bin/env python3
"""TCP throughput and request/response latency, directly or through a proxy.

Used by the bench parts where iperf3 cannot go (SOCKS5, HTTP CONNECT), and
for one latency measure that is the same on every path: the round trip of a
1-byte request and 1-byte answer over one established TCP connection (like
netperf TCP_RR), so it goes through the same forwards and proxies as the
bulk data.

  tcpbench.py server HOST PORT
  tcpbench.py up   [OPTIONS] HOST PORT SECONDS   -> Mbit/s [bytes]
  tcpbench.py down [OPTIONS] HOST PORT SECONDS   -> Mbit/s [bytes]
  tcpbench.py rr   [OPTIONS] HOST PORT COUNT     -> median_us p10_us p90_us

Options (anywhere after the command):
  --socks HOST:PORT       connect through a SOCKS5 proxy (no auth)
  --http-proxy HOST:PORT  connect through an HTTP proxy (CONNECT)
  --streams N             up/down: N connections at once, each in its own
                          thread; the figure is the sum
  --bytes                 up/down: also print the bytes that arrived (up:
                          counted by the server; down: by the client)
  --total BYTES           up: send exactly BYTES per stream (SECONDS is then
                          only a limit); fails unless the server counted
                          them all. The time runs to the server's count.

Protocol: the client's first byte picks the mode: 'U' the server reads
until EOF and answers the byte count (8 bytes, big-endian); 'D' the server
writes until the client closes; 'R' the server echoes every byte.
"""
import ipaddress
import socket
import socketserver
import struct
import sys
import threading
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
    request_queue_size = 128


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise OSError("connection closed (got %d of %d bytes)" % (len(out), n))
        out += b
    return out


def hostport(v):
    h, p = v.rsplit(":", 1)
    return h, int(p)


def socks5_connect(s, host, port):
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


def http_connect(s, host, port):
    if ":" in host:
        authority = "[%s]:%d" % (host, port)
    else:
        authority = "%s:%d" % (host, port)
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority)
    s.sendall(req.encode())
    # Read the answer's head one byte at a time: nothing of the tunnel's
    # data may be consumed here.
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b:
            raise OSError("HTTP proxy: closed before the answer's end")
        head += b
        if len(head) > 8192:
            raise OSError("HTTP proxy: answer head too long")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].startswith(b"2"):
        raise OSError("HTTP proxy: CONNECT refused: %s" % head.split(b"\r\n", 1)[0].decode(errors="replace"))


def connect(host, port, opts):
    if opts["socks"]:
        s = socket.create_connection(hostport(opts["socks"]), timeout=30)
        socks5_connect(s, host, port)
    elif opts["http"]:
        s = socket.create_connection(hostport(opts["http"]), timeout=30)
        http_connect(s, host, port)
    else:
        s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(60)
    return s


def run_up(s, secs, total=0):
    """-> (bytes the server counted, seconds). total > 0: send exactly
    that many bytes (secs is then a limit)."""
    data = b"\x5a" * CHUNK
    view = memoryview(data)
    s.sendall(b"U")
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < secs:
        if total:
            if sent >= total:
                break
            k = min(CHUNK, total - sent)
            s.sendall(view[:k])
            sent += k
        else:
            s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    n = struct.unpack(">Q", recv_exact(s, 8))[0]
    if total and n != total:
        raise OSError("the server counted %d bytes of %d" % (n, total))
    return n, time.monotonic() - t0


def run_down(s, secs):
    """-> (bytes received, seconds)"""
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
    return n, time.monotonic() - t0


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

    def pick(q):
        return rtts[min(len(rtts) - 1, int(q * len(rtts)))]

    return rtts[len(rtts) // 2], pick(0.1), pick(0.9)


def bulk(cmd, host, port, secs, opts):
    """Every stream connects first, then all start together. The rate is
    the sum of the bytes over the time from the common start to the last
    stream's end. -> (Mbit/s, bytes)"""
    n = opts["streams"]
    if cmd == "up":
        def fn(s, secs):
            return run_up(s, secs, opts["total"])
    else:
        fn = run_down
    socks = [connect(host, port, opts) for _ in range(n)]
    start = threading.Barrier(n + 1)
    results = [None] * n
    errors = []

    def worker(i):
        try:
            start.wait()
            results[i] = fn(socks[i], secs)
        except (OSError, threading.BrokenBarrierError) as e:
            errors.append(e)
        finally:
            socks[i].close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    if errors:
        raise errors[0]
    total = sum(r[0] for r in results)
    if n == 1:
        dt = results[0][1]
    return total * 8 / dt / 1e6, total


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd = argv[1]
    if cmd == "server":
        srv = Server((argv[2], int(argv[3])), Handler)
        srv.serve_forever()
        return 0
    opts = {"socks": None, "http": None, "streams": 1, "bytes": False, "total": 0}
    pos = []
    args = argv[2:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--socks":
            opts["socks"] = args[i + 1]
            i += 1
        elif a == "--http-proxy":
            opts["http"] = args[i + 1]
            i += 1
        elif a == "--streams":
            opts["streams"] = int(args[i + 1])
            i += 1
        elif a == "--bytes":
            opts["bytes"] = True
        elif a == "--total":
            opts["total"] = int(args[i + 1])
            i += 1
        else:
            pos.append(a)
        i += 1
    if cmd not in ("up", "down", "rr") or len(pos) != 3 or opts["streams"] < 1:
        sys.stderr.write(__doc__)
        return 2
    host, port, n = pos[0], int(pos[1]), float(pos[2])
    if cmd == "rr":
        s = connect(host, port, opts)
        try:
            print("%.1f %.1f %.1f" % run_rr(s, int(n)))
        finally:
            s.close()
        return 0
    mbps, nbytes = bulk(cmd, host, port, n, opts)
    if opts["bytes"]:
        print("%.1f %d" % (mbps, nbytes))
    else:
        print("%.1f" % mbps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
