#!/usr/bin/env python3
"""Python's http.client through an HTTP proxy, one connection, after an
origin sent an interim 103: every answer must come from the host it was
asked of.

usage: http_interim.py PROXY_HOST:PORT URL=EXPECTED...

http.client skips only "100 Continue"; any other 1xx it takes for the
final response (with no body). A proxy that passes a 103 on leaves the
origin's real response in the connection, and the client reads it as the
answer to its next request, maybe to another host. Prints one line per
request and "ok N" at the end; exit 1 on a mismatch.
"""
import http.client
import sys


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    n = 0
    for arg in sys.argv[2:]:
        url, want = arg.split("=", 1)
        conn.request("GET", url)
        resp = conn.getresponse()
        got = resp.read().decode(errors="replace").strip()
        print("GET %s -> %d %r" % (url, resp.status, got))
        if resp.status != 200 or got != want:
            print("MISMATCH: %s answered %d %r, want 200 %r" % (url, resp.status, got, want))
            return 1
        n += 1
    print("ok %d" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
