#!/usr/bin/env python3
"""Many SOCKS5 CONNECT sessions at once, each moving data through an echo
server and checking it comes back intact (asyncio).

usage: load_client.py SOCKS_PORT HOST PORT [--sessions N] [--bytes B]
        [--ready FILE] [--hold SECONDS]
1. opens N sessions through the SOCKS5 proxy on 127.0.0.1:SOCKS_PORT to
   HOST:PORT (an echo server) and waits until every one is established;
2. touches FILE (--ready), then every session sends B random bytes (its
   own) while reading the echo, all at the same time, and compares;
3. keeps them open --hold seconds, then closes them all.
Prints timings and failures by reason; exit 0 only when all N succeeded.
Raises its own open-file limit to the hard limit."""
import asyncio
import collections
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_socks  # noqa: E402

CHUNK = 16384


async def read_exact(reader, n):
    return await reader.readexactly(n)


async def open_session(sport, host, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", sport)
    try:
        writer.write(b"\x05\x01\x00")
        await writer.drain()
        if await read_exact(reader, 2) != b"\x05\x00":
            raise mp_socks.SocksError("greeting refused")
        writer.write(b"\x05\x01\x00" + mp_socks.encode_addr(host, port))
        await writer.drain()
        head = await read_exact(reader, 4)
        if head[1] != 0:
            raise mp_socks.SocksError("reply %d (%s)" % (head[1], mp_socks.REPLIES.get(head[1], "?")))
        atyp = head[3]
        if atyp == 1:
            await read_exact(reader, 6)
        elif atyp == 4:
            await read_exact(reader, 18)
        else:
            n = (await read_exact(reader, 1))[0]
            await read_exact(reader, n + 2)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def move(reader, writer, data):
    async def send():
        for i in range(0, len(data), CHUNK):
            writer.write(data[i : i + CHUNK])
            await writer.drain()

    async def recv():
        got = bytearray()
        while len(got) < len(data):
            b = await reader.read(65536)
            if not b:
                raise mp_socks.SocksError("closed after %d of %d echoed bytes" % (len(got), len(data)))
            got += b
        return bytes(got)

    _, got = await asyncio.gather(send(), recv())
    if got != data:
        raise mp_socks.SocksError("echo differs from what was sent")


def reason(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, asyncio.IncompleteReadError):
        return "closed early (%d of %d bytes)" % (len(e.partial), e.expected)
    return "%s: %s" % (type(e).__name__, e)


async def main(sport, host, port, n, nbytes, ready, hold):
    fails = collections.Counter()
    t0 = time.monotonic()
    opened = await asyncio.gather(
        *[asyncio.wait_for(open_session(sport, host, port), 60) for _ in range(n)], return_exceptions=True
    )
    sessions = []
    for r in opened:
        if isinstance(r, BaseException):
            fails["connect: " + reason(r)] += 1
        else:
            sessions.append(r)
    t1 = time.monotonic()
    print("established %d of %d sessions in %.2f s" % (len(sessions), n, t1 - t0), flush=True)
    if ready:
        open(ready, "w").close()
    blob = os.urandom(nbytes + n)
    moved = await asyncio.gather(
        *[asyncio.wait_for(move(r, w, blob[i : i + nbytes]), 180) for i, (r, w) in enumerate(sessions)],
        return_exceptions=True,
    )
    ok = 0
    for r in moved:
        if isinstance(r, BaseException):
            fails["data: " + reason(r)] += 1
        else:
            ok += 1
    t2 = time.monotonic()
    mib = ok * nbytes / 1048576.0
    print("%d of %d sessions echoed %d bytes intact in %.2f s (%.1f MiB each way, %.0f Mbit/s each way)"
          % (ok, n, nbytes, t2 - t1, mib, mib * 8 * 1.048576 / max(t2 - t1, 1e-6)), flush=True)
    if hold > 0:
        await asyncio.sleep(hold)
    for _, w in sessions:
        w.close()
    await asyncio.sleep(0.2)
    for what, count in sorted(fails.items()):
        print("failed: %d x %s" % (count, what))
    return 0 if ok == n else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sport, host, port = int(args[0]), args[1], int(args[2])
    n, nbytes, ready, hold = 1000, 65536, None, 0.0
    rest = args[3:]
    while rest:
        o = rest.pop(0)
        if o == "--sessions":
            n = int(rest.pop(0))
        elif o == "--bytes":
            nbytes = int(rest.pop(0))
        elif o == "--ready":
            ready = rest.pop(0)
        elif o == "--hold":
            hold = float(rest.pop(0))
        else:
            sys.stderr.write(__doc__)
            sys.exit(2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.exit(asyncio.run(main(sport, host, port, n, nbytes, ready, hold)))
