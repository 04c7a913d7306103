#!/usr/bin/env python3
"""A TCP echo server for many connections at once (asyncio).

usage: echo_server.py BIND_ADDR PORT
Echoes every byte back until the client half-closes, then closes. Raises
its own open-file limit to the hard limit. Logs a line per 100 connections
and the number open at that moment."""
import asyncio
import resource
import sys

state = {"total": 0, "open": 0, "peak": 0}


async def handle(reader, writer):
    state["total"] += 1
    state["open"] += 1
    state["peak"] = max(state["peak"], state["open"])
    if state["total"] % 100 == 0:
        sys.stderr.write("echo: %d connections, %d open, peak %d\n" % (state["total"], state["open"], state["peak"]))
        sys.stderr.flush()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        state["open"] -= 1
        try:
            writer.close()
        except OSError:
            pass


async def main(addr, port):
    srv = await asyncio.start_server(handle, addr, port, backlog=4096)
    sys.stderr.write("echo: listening on %s:%d\n" % (addr, port))
    sys.stderr.flush()
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
