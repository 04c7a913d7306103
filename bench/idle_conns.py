#!/usr/bin/env python3
"""Idle TCP connections for bench/conn_scale.sh.

idle_conns.py server PORT      accepts on 0.0.0.0:PORT and keeps every
                               connection open, never reading or writing
idle_conns.py client PORT N    opens N connections to 127.0.0.1:PORT,
                               prints "open N" and holds them until killed"""
import selectors
import socket
import sys
import time


def server(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    held = []
    while True:
        c, _ = ls.accept()
        held.append(c)


def client(port, n):
    held = []
    for _ in range(n):
        held.append(socket.create_connection(("127.0.0.1", port), timeout=30))
    print("open %d" % len(held), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    elif sys.argv[1] == "client":
        client(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
