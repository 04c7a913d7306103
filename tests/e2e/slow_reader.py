#!/usr/bin/env python3
"""A SOCKS5 client that asks for a big file and then stops reading.

slow_reader.py SOCKS_PORT HOST PORT PATH STALL_SECONDS READY_FILE OUT_FILE
Connects through the SOCKS5 proxy on 127.0.0.1:SOCKS_PORT, sends a GET,
reads nothing for STALL_SECONDS (touching READY_FILE when the stall begins),
then reads the whole answer into OUT_FILE (body only)."""
import socket
import struct
import sys
import time


def main():
    sport, host, port, path, stall, ready, out = sys.argv[1:8]
    s = socket.create_connection(("127.0.0.1", int(sport)), timeout=60)
    # Small receive buffer so the kernel does not absorb the stall for us.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        sys.exit("socks: no-auth refused")
    addr = socket.inet_aton(host)
    s.sendall(b"\x05\x01\x00\x01" + addr + struct.pack(">H", int(port)))
    rep = b""
    while len(rep) < 10:
        rep += s.recv(10 - len(rep))
    if rep[1] != 0:
        sys.exit("socks: reply %d" % rep[1])
    s.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
    open(ready, "w").close()
    time.sleep(float(stall))
    data = bytearray()
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        data += b
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    with open(out, "wb") as f:
        f.write(body)


if __name__ == "__main__":
    main()
