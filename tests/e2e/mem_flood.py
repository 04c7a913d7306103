#!/usr/bin/env python3
"""Services and a client for memory.sh (a hostile peer against the budget).

mem_flood.py writer PORT
    Accepts on 127.0.0.1:PORT and writes to every connection without end
    (a service that produces a lot).
mem_flood.py sink PORT
    Listens on 127.0.0.1:PORT and never accepts: connections complete in
    the backlog and nothing is ever read (a service that does not read).
mem_flood.py flood PORT N PUSH_BYTES HOLD_S
    Opens N connections to 127.0.0.1:PORT, writes up to PUSH_BYTES on each
    (as far as they take it), never reads (small receive buffers, so the
    zero window reaches the node quickly), holds them HOLD_S seconds, then
    resets them all. Prints how many connected, were reset, and the bytes
    written."""
import asyncio
import selectors
import socket
import sys
import time


class Writer(asyncio.Protocol):
    CHUNK = b"y" * 65536

    def connection_made(self, transport):
        self.t = transport
        self.t.set_write_buffer_limits(high=65536)
        self.paused = False
        self.fill()

    def fill(self):
        while not self.paused and not self.t.is_closing():
            self.t.write(self.CHUNK)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.fill()

    def data_received(self, data):
        pass

    def connection_lost(self, exc):
        pass


async def writer(port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Writer, "127.0.0.1", port, backlog=4096)
    async with srv:
        await srv.serve_forever()


def sink(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every connection: the kernel holds next to nothing, so
    # what the peer pushes waits in the node.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    while True:
        time.sleep(3600)


def flood(port, n, push, hold):
    sel = selectors.DefaultSelector()
    left = {}
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Small on our side too: what we push must wait in the nodes, not
        # in this host's socket buffers.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
        left[s] = push
        if push > 0:
            sel.register(s, selectors.EVENT_WRITE)
    chunk = b"x" * 65536
    written = resets = 0
    deadline = time.monotonic() + 30
    idle_since = time.monotonic()
    while left and sel.get_map() and time.monotonic() < deadline:
        ev = sel.select(timeout=0.5)
        if not ev and time.monotonic() - idle_since > 3:
            break  # every window is closed
        for key, _ in ev:
            s = key.fileobj
            try:
                k = s.send(chunk[: min(len(chunk), left[s])])
            except BlockingIOError:
                continue
            except OSError:
                resets += 1
                sel.unregister(s)
                continue
            idle_since = time.monotonic()
            written += k
            left[s] -= k
            if left[s] <= 0:
                sel.unregister(s)
    time.sleep(1)
    connected = 0
    for s in socks:
        try:
            s.getpeername()
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
        except OSError:
            pass
    print("flood: %d of %d connected, %d reset while writing, %d bytes written"
          % (connected, n, resets, written), flush=True)
    time.sleep(hold)
    # Gone at once, as a hostile client does: reset, not FIN.
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()


def main():
    mode = sys.argv[1]
    if mode == "writer":
        asyncio.run(writer(int(sys.argv[2])))
    elif mode == "sink":
        sink(int(sys.argv[2]))
    elif mode == "flood":
        port, n, push, hold = map(float, sys.argv[2:6])
        flood(int(port), int(n), int(push), hold)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
