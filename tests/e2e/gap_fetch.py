#!/usr/bin/env python3
"""Read a stream through a SOCKS5 proxy and log when its bytes arrive, so a
test can see how long the stream stood still (pair it with a source that
paces itself, tests/e2e/paced_server.py: a reader that paced itself would
hide a stall behind the buffers in between).

usage: gap_fetch.py SOCKS_PORT HOST PORT OUT LOG

Connects to HOST:PORT through the SOCKS5 proxy on 127.0.0.1:SOCKS_PORT
(HOST sent as a name), reads until the far end closes and writes what came
to OUT. LOG gets a line "T_MS BYTES" (wall clock in milliseconds, bytes so
far) for every read that returned data. Exits 0 at the far end's close, 1
with the reason on stderr (SOCKS refusal, reset, 60 s without a byte)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_socks  # noqa: E402


def main():
    if len(sys.argv) != 6:
        sys.stderr.write(__doc__)
        return 2
    sport, host, port, out, logp = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                    sys.argv[4], sys.argv[5])
    got = 0
    try:
        s = mp_socks.connect(("127.0.0.1", sport), host, port)
        s.settimeout(60)
        with open(out, "wb") as f, open(logp, "w") as lg:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                f.write(b)
                got += len(b)
                lg.write("%d %d\n" % (int(time.time() * 1000), got))
                lg.flush()
    except (OSError, mp_socks.SocksError) as e:
        print("gap_fetch: after %d bytes: %s" % (got, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
