#!/usr/bin/env python3
"""Send a line through a SOCKS5 CONNECT and print what comes back.

usage: socks_cat.py SOCKS_PORT HOST PORT [TEXT]
Connects to HOST:PORT through the SOCKS5 proxy on 127.0.0.1:SOCKS_PORT
(HOST may be an address or a name, sent as ATYP 3), sends TEXT plus a
newline (if given), half-closes, and prints everything until the far end
closes. Exits 1 with a message on a SOCKS error or a timeout (20 s)."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_socks  # noqa: E402


def main():
    if len(sys.argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    sport, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    try:
        s = mp_socks.connect(("127.0.0.1", sport), host, port)
        if len(sys.argv) == 5:
            s.sendall(sys.argv[4].encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (OSError, mp_socks.SocksError) as e:
        print("socks_cat: %s" % e, file=sys.stderr)
        return 1
    sys.stdout.write(data.decode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
