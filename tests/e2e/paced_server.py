#!/usr/bin/env python3
"""Serve one file at a steady rate: every TCP connection to BIND:PORT gets
the whole of FILE, RATE bytes a second (a little every 10 ms, catching up
after a stall), then the server closes it. With the pace set at the
source, a stalled network shows as a gap at the reader instead of being
hidden by the buffers of a reader that paces itself.

usage: paced_server.py BIND_ADDR PORT FILE RATE"""
import socket
import sys
import threading
import time


def serve(conn, path, rate):
    try:
        with open(path, "rb") as f:
            data = f.read()
        t0 = time.monotonic()
        sent = 0
        while sent < len(data):
            due = min(len(data), int((time.monotonic() - t0) * rate) + rate // 100)
            if due > sent:
                conn.sendall(data[sent:due])
                sent = due
            time.sleep(0.01)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()


def main():
    if len(sys.argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    addr, port, path, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(16)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, path, rate), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
