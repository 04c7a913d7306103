#!/usr/bin/env python3
"""Python requests with one Session through an HTTP proxy, alternating
between origins: every answer must come from the host it was asked of.

usage: http_session.py PROXY_URL ROUNDS URL=EXPECTED...

Each URL is fetched ROUNDS times, interleaved with the others (a, b, a, b,
...). The body of every answer (stripped) must equal EXPECTED for its URL.
Prints one line per request and "ok N" at the end; exit 1 on a mismatch.
urllib3 pools plain-http proxy connections per proxy, not per origin, so
the requests share one client connection unless the proxy closes it.
"""
import sys

import requests


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    proxy, rounds = sys.argv[1], int(sys.argv[2])
    pairs = [a.split("=", 1) for a in sys.argv[3:]]
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"http": proxy}
    n = 0
    for r in range(rounds):
        for url, want in pairs:
            # A POST now and then: a body on the kept-alive connection.
            if r % 3 == 2:
                resp = s.post(url.replace("/whoami.txt", "/upload"), data=b"x" * 1000,
                              timeout=20)
                ok = resp.status_code == 200 and resp.text.split()[1] == "1000"
                print("POST %s -> %d %r" % (url, resp.status_code, resp.text.strip()))
                if not ok:
                    return 1
            resp = s.get(url, timeout=20)
            got = resp.text.strip()
            print("GET %s -> %d %r" % (url, resp.status_code, got))
            if resp.status_code != 200 or got != want:
                print("MISMATCH: %s answered %r, want %r" % (url, got, want))
                return 1
            n += 1
    print("ok %d" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
