#!/usr/bin/env python3
"""Hostile input for the SOCKS5/SOCKS4 and HTTP proxy ports.

usage: hostile.py CASE ARGS...   (every port is on 127.0.0.1)
  random PORT N TIMEOUT      N connections each send 9-4096 random bytes (a
                             third start with 05, a third with 04); every one
                             must be closed by the node within TIMEOUT s
  truncated PORT socks|http TIMEOUT
                             prefixes of valid handshakes, each sent once and
                             held open and once followed by a half-close;
                             every one closed by the node within TIMEOUT s
  socks-replies PORT         BIND and command 9 -> 07, ATYP 0 and 5 -> 08,
                             oversized domain names -> a non-zero reply,
                             unsupported methods -> FF, SOCKS4a name without
                             its terminator -> 91 or close, version 6 -> close
  auth PORT USER PASS HOST TPORT
                             no-auth only -> FF; wrong password, wrong user,
                             empty user -> status != 0; right ones -> 00 and a
                             CONNECT to HOST:TPORT (an echo server) works
  http-garbage PORT          garbage, binary, origin-form, CONNECT without a
                             port -> 400; a 300-byte host name -> >= 400; 100
                             KiB of headers -> >= 400 or close
  http-auth PORT USER PASS HOST TPORT
                             CONNECT without or with wrong credentials -> 407
                             with Proxy-Authenticate; right ones -> 200 and
                             the echo works
  socks-code PORT HOST TPORT REP TIMEOUT
                             a CONNECT to HOST:TPORT gets reply REP within
                             TIMEOUT s
  http-code PORT HOST TPORT STATUS TIMEOUT
                             an HTTP CONNECT to HOST:TPORT gets STATUS
  halfopen PORT N HOST TPORT TIMEOUT
                             N connections that send nothing, half a greeting
                             or a greeting and no request; while they are
                             held, a normal client (CONNECT HOST:TPORT, echo)
                             must be served 3 times within 10 s each; then
                             every one of the N must be closed by the node
                             within TIMEOUT s
Prints what it saw; exit 0 when every expectation held, 1 otherwise."""
import base64
import errno
import os
import random
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_socks  # noqa: E402

HOST = "127.0.0.1"
failures = []


def expect(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what), flush=True)
    if not ok:
        failures.append(what)


def conn(port, timeout=15):
    return socket.create_connection((HOST, port), timeout=timeout)


def read_some(s, n, timeout=15):
    """Up to n bytes, fewer if the peer closes; b'' on close, None on reset."""
    s.settimeout(timeout)
    buf = b""
    try:
        while len(buf) < n:
            b = s.recv(n - len(buf))
            if not b:
                break
            buf += b
    except ConnectionResetError:
        return buf if buf else None
    except socket.timeout:
        pass
    return buf


def wait_closed(socks_, timeout):
    """{sock: seconds until the node closed it (None if it did not)} and
    {sock: bytes it sent before closing}."""
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    closed = {s: None for s in socks_}
    got = {s: 0 for s in socks_}
    for s in socks_:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    left = len(socks_)
    while left:
        rem = timeout - (time.monotonic() - t0)
        if rem <= 0:
            break
        for key, _ in sel.select(min(rem, 1.0)):
            s = key.fileobj
            try:
                b = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if b:
                got[s] += len(b)
                continue
            closed[s] = time.monotonic() - t0
            sel.unregister(s)
            left -= 1
    sel.close()
    return closed, got


def summarize_closed(what, closed, timeout):
    times = [t for t in closed.values() if t is not None]
    n_open = len(closed) - len(times)
    expect(n_open == 0, "%s: %d of %d closed by the node within %g s (slowest %.1f s)"
           % (what, len(times), len(closed), timeout, max(times) if times else 0))


# --- cases -------------------------------------------------------------------

def case_random(port, n, timeout):
    socks_ = []
    for i in range(n):
        data = bytearray(os.urandom(random.randint(9, 4096)))
        if i % 3 == 0:
            data[0] = 5
        elif i % 3 == 1:
            data[0] = 4
        s = conn(port)
        try:
            s.sendall(data)
        except OSError:
            pass  # closed at once: fine
        socks_.append(s)
    closed, got = wait_closed(socks_, timeout)
    answered = sum(1 for v in got.values() if v)
    print("random: %d connections, %d got some reply before the close" % (n, answered))
    summarize_closed("random bytes", closed, timeout)
    for s in socks_:
        s.close()


def greeting_prefixes():
    greet = b"\x05\x01\x00"
    req = b"\x05\x01\x00\x03\x03web\x1f\x90"
    v4 = b"\x05\x01\x00\x01\x64\x4d\x00\x02\x1f\x90"
    s4 = b"\x04\x01\x1f\x90\x64\x4d\x00\x02user\x00"
    s4a = b"\x04\x01\x1f\x90\x00\x00\x00\x01\x00web\x00"
    out = [greet[:1], greet[:2], b"\x05\x02\x00", greet + req[:1], greet + req[:3], greet + req[:5],
           greet + req[:-1], greet + v4[:6], b"\x05\x01\x02" + b"\x01\x04us", s4[:3], s4[:8], s4[:-1],
           s4a[:-1], s4a[:10]]
    return out


def http_prefixes():
    return [b"C", b"CONNECT", b"CONNECT web:8080 HTTP/1.1", b"CONNECT web:8080 HTTP/1.1\r\n",
            b"CONNECT web:8080 HTTP/1.1\r\nHost: web:8080\r\n", b"GET http://web:8080/ HTTP/1.1\r\n",
            b"GET http://web:8080/ HTTP/1.1\r\nHost: web\r\n\r", b"\r\n"]


def case_truncated(port, kind, timeout):
    prefixes = greeting_prefixes() if kind == "socks" else http_prefixes()
    held, fin = [], []
    for p in prefixes:
        for half_close in (False, True):
            s = conn(port)
            try:
                s.sendall(p)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            (fin if half_close else held).append(s)
    closed, _ = wait_closed(held + fin, timeout)
    summarize_closed("%d truncated %s handshakes held open" % (len(held), kind),
                     {s: closed[s] for s in held}, timeout)
    summarize_closed("%d truncated %s handshakes then a half-close" % (len(fin), kind),
                     {s: closed[s] for s in fin}, timeout)
    for s in held + fin:
        s.close()


def socks5_raw_request(port, body, timeout=30):
    """Greeting (no auth), then body; the reply's REP, or None on close."""
    s = conn(port, timeout)
    try:
        s.sendall(b"\x05\x01\x00")
        if read_some(s, 2, timeout) != b"\x05\x00":
            return None
        s.sendall(body)
        r = read_some(s, 2, timeout)
        if not r or len(r) < 2 or r[0] != 5:
            return None
        return r[1]
    finally:
        s.close()


def case_socks_replies(port):
    target = b"\x01\x64\x4d\x00\x02\x1f\x90"  # 100.77.0.2:8080
    rep = socks5_raw_request(port, b"\x05\x02\x00" + target)
    expect(rep == 7, "BIND -> reply 07 (got %s)" % rep)
    rep = socks5_raw_request(port, b"\x05\x09\x00" + target)
    expect(rep == 7, "command 9 -> reply 07 (got %s)" % rep)
    rep = socks5_raw_request(port, b"\x05\x01\x00\x05" + b"\x64\x4d\x00\x02\x1f\x90")
    expect(rep == 8, "ATYP 5 -> reply 08 (got %s)" % rep)
    rep = socks5_raw_request(port, b"\x05\x01\x00\x00" + b"\x64\x4d\x00\x02\x1f\x90")
    expect(rep == 8, "ATYP 0 -> reply 08 (got %s)" % rep)
    name = b"a" * 255
    rep = socks5_raw_request(port, b"\x05\x01\x00\x03\xff" + name + b"\x1f\x90")
    expect(rep is not None and rep != 0, "255-byte one-label domain name -> a failure reply (got %s)" % rep)
    name = b".".join([b"b" * 63] * 4)[:255]
    rep = socks5_raw_request(port, b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x1f\x90")
    expect(rep is not None and rep != 0, "255-byte dotted domain name -> a failure reply (got %s)" % rep)
    rep = socks5_raw_request(port, b"\x05\x01\x00\x03\x00\x1f\x90")
    expect(rep is not None and rep != 0, "empty domain name -> a failure reply (got %s)" % rep)
    for methods in (b"\x01", b"\x01\x80\xfe"):
        s = conn(port)
        s.sendall(bytes([5, len(methods)]) + methods)
        r = read_some(s, 2)
        expect(r == b"\x05\xff", "only unsupported methods %s -> 05 FF (got %r)" % (methods.hex(), r))
        s.close()
    s = conn(port)
    s.sendall(b"\x04\x01\x1f\x90\x00\x00\x00\x01\x00" + b"n" * 4096)
    r = read_some(s, 8, 30)
    expect(r is None or r == b"" or (len(r) >= 2 and r[1] == 91),
           "SOCKS4a 4 KiB host name without its terminator -> 91 or close (got %r)" % (r[:8] if r else r))
    s.close()
    s = conn(port)
    s.sendall(b"\x06\x01\x00")
    r = read_some(s, 2, 30)
    expect(r is None or r == b"", "version 6 -> close (got %r)" % r)
    s.close()


def case_auth(port, user, password, thost, tport):
    s = conn(port)
    s.sendall(b"\x05\x01\x00")
    r = read_some(s, 2)
    expect(r == b"\x05\xff", "no-auth offered to a port that wants a login -> 05 FF (got %r)" % r)
    s.close()
    for u, p, what in ((user, password + "x", "wrong password"), (user + "x", password, "wrong user"),
                       ("", password, "empty user")):
        s = conn(port)
        s.sendall(b"\x05\x01\x02")
        r = read_some(s, 2)
        if r != b"\x05\x02":
            expect(False, "%s: method 02 not chosen (got %r)" % (what, r))
            s.close()
            continue
        ub, pb = u.encode(), p.encode()
        s.sendall(bytes([1, len(ub)]) + ub + bytes([len(pb)]) + pb)
        r = read_some(s, 2)
        expect(r is None or r == b"" or (len(r) == 2 and r[1] != 0),
               "%s -> status != 0 or close (got %r)" % (what, r))
        if r and len(r) == 2 and r[1] != 0:
            r2 = read_some(s, 1, 10)
            expect(r2 in (b"", None), "%s: connection closed after the refusal" % what)
        s.close()
    try:
        s = mp_socks.connect((HOST, port), thost, tport, user=user, password=password)
        s.sendall(b"authenticated\n")
        r = read_some(s, 14)
        expect(r == b"authenticated\n", "right login, CONNECT %s:%d, echo (got %r)" % (thost, tport, r))
        s.close()
    except (OSError, mp_socks.SocksError) as e:
        expect(False, "right login and CONNECT %s:%d: %s" % (thost, tport, e))


def http_status(port, request, timeout=30):
    """(status code or None on close, head bytes)."""
    s = conn(port, timeout)
    try:
        try:
            s.sendall(request)
        except OSError:
            pass
        buf = b""
        s.settimeout(timeout)
        try:
            while b"\r\n" not in buf and len(buf) < 4096:
                b = s.recv(4096)
                if not b:
                    break
                buf += b
            if b"\r\n\r\n" not in buf:
                s.settimeout(2)
                buf += s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            pass
        parts = buf.split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
            return int(parts[1]), buf
        return None, buf
    finally:
        s.close()


def case_http_garbage(port):
    st, _ = http_status(port, b"GARBAGE\r\n\r\n")
    expect(st == 400, "GARBAGE -> 400 (got %s)" % st)
    junk = bytes(b for b in os.urandom(600) if b not in (10, 13))
    st, _ = http_status(port, junk + b"\r\n\r\n")
    expect(st == 400, "binary junk -> 400 (got %s)" % st)
    st, _ = http_status(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(st == 400, "origin-form GET to the proxy -> 400 (got %s)" % st)
    st, _ = http_status(port, b"CONNECT web HTTP/1.1\r\nHost: web\r\n\r\n")
    expect(st == 400, "CONNECT without a port -> 400 (got %s)" % st)
    name = b"a" * 300
    st, _ = http_status(port, b"CONNECT " + name + b":80 HTTP/1.1\r\nHost: " + name + b":80\r\n\r\n")
    expect(st is not None and st >= 400, "CONNECT to a 300-byte host name -> >= 400 (got %s)" % st)
    big = b"GET http://web:8080/ HTTP/1.1\r\n" + b"".join(
        b"X-Filler-%d: %s\r\n" % (i, b"y" * 1000) for i in range(100)) + b"\r\n"
    st, head = http_status(port, big)
    expect(st is None and head == b"" or (st is not None and st >= 400),
           "100 KiB of headers -> >= 400 or close (got %s)" % st)


def case_http_auth(port, user, password, thost, tport):
    target = ("%s:%d" % (thost, tport)).encode()
    base = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n"
    st, head = http_status(port, base + b"\r\n")
    expect(st == 407 and b"proxy-authenticate:" in head.lower(),
           "CONNECT without credentials -> 407 with Proxy-Authenticate (got %s)" % st)
    bad = base64.b64encode(("%s:%sx" % (user, password)).encode())
    st, _ = http_status(port, base + b"Proxy-Authorization: Basic " + bad + b"\r\n\r\n")
    expect(st == 407, "CONNECT with a wrong password -> 407 (got %s)" % st)
    good = base64.b64encode(("%s:%s" % (user, password)).encode())
    s = conn(port)
    s.sendall(base + b"Proxy-Authorization: Basic " + good + b"\r\n\r\n")
    head = b""
    s.settimeout(15)
    try:
        while b"\r\n\r\n" not in head:
            b = s.recv(1)
            if not b:
                break
            head += b
    except (socket.timeout, ConnectionResetError):
        pass
    ok = head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    if ok:
        s.sendall(b"authenticated\n")
        ok = read_some(s, 14) == b"authenticated\n"
    expect(ok, "CONNECT with the right credentials -> 200 and the echo works (got %r)" % head[:40])
    s.close()


def case_socks_code(port, thost, tport, want, timeout):
    t0 = time.monotonic()
    s = conn(port, timeout)
    try:
        mp_socks.greet(s)
        rep, _, _ = mp_socks.request(s, mp_socks.CMD_CONNECT, thost, tport)
    except (OSError, mp_socks.SocksError) as e:
        rep = "no reply (%s)" % e
    finally:
        s.close()
    expect(rep == want, "SOCKS5 CONNECT %s:%d -> reply %s (%s) after %.1f s (want %d, %s)"
           % (thost, tport, rep, mp_socks.REPLIES.get(rep, "?"), time.monotonic() - t0, want,
              mp_socks.REPLIES.get(want, "?")))


def case_http_code(port, thost, tport, want, timeout):
    t0 = time.monotonic()
    target = ("[%s]:%d" % (thost, tport) if ":" in thost else "%s:%d" % (thost, tport)).encode()
    st, _ = http_status(port, b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n", timeout)
    expect(st == want, "HTTP CONNECT %s -> %s after %.1f s (want %d)"
           % (target.decode(), st, time.monotonic() - t0, want))


def normal_client(port, thost, tport):
    t0 = time.monotonic()
    try:
        s = mp_socks.connect((HOST, port), thost, tport, timeout=10)
        s.sendall(b"still-serving\n")
        r = read_some(s, 14, 10)
        s.close()
        return r == b"still-serving\n", time.monotonic() - t0, "" if r == b"still-serving\n" else repr(r)
    except (OSError, mp_socks.SocksError) as e:
        return False, time.monotonic() - t0, str(e)


def case_halfopen(port, n, thost, tport, timeout):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        expect(False, "the client's own open-file limit %d is below %d" % (hard, n + 100))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    state = {}  # sock -> "connecting" | "open" | "closed"
    t0 = time.monotonic()
    connect_fail = 0
    closed_early = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((HOST, port))
        if rc not in (0, errno.EINPROGRESS):
            connect_fail += 1
            s.close()
            continue
        state[s] = ("connecting", i)
        sel.register(s, selectors.EVENT_WRITE)
        # Drain completions as we go so the loop never stalls on a full backlog.
        for key, ev in sel.select(0):
            _halfopen_event(sel, state, key.fileobj, ev)
    deadline = time.monotonic() + 60
    while any(v[0] == "connecting" for v in state.values()) and time.monotonic() < deadline:
        for key, ev in sel.select(0.5):
            _halfopen_event(sel, state, key.fileobj, ev)
    t_open = time.monotonic() - t0
    n_open = sum(1 for v in state.values() if v[0] == "open")
    closed_early = sum(1 for v in state.values() if v[0] == "closed")
    failed_late = sum(1 for v in state.values() if v[0] == "failed")
    still_connecting = sum(1 for v in state.values() if v[0] == "connecting")
    print("halfopen: %d connections attempted in %.1f s: %d open, %d already closed by the node, "
          "%d connect failures, %d still connecting" % (n, t_open, n_open, closed_early,
                                                      connect_fail + failed_late, still_connecting), flush=True)
    expect(connect_fail + failed_late + still_connecting == 0,
           "all %d connections were accepted by the kernel (failures %d, still connecting %d)"
           % (n, connect_fail + failed_late, still_connecting))
    for k in range(3):
        ok, dt, why = normal_client(port, thost, tport)
        expect(ok and dt < 10, "normal client #%d served during the flood in %.2f s %s" % (k + 1, dt, why))
        for key, ev in sel.select(0.2):
            _halfopen_event(sel, state, key.fileobj, ev)
    t1 = time.monotonic()
    while any(v[0] == "open" for v in state.values()) and time.monotonic() - t1 < timeout:
        for key, ev in sel.select(0.5):
            _halfopen_event(sel, state, key.fileobj, ev)
    left = sum(1 for v in state.values() if v[0] == "open")
    closed = sum(1 for v in state.values() if v[0] == "closed")
    print("halfopen: %d closed by the node in all, %d still open %.1f s after the flood"
          % (closed, left, time.monotonic() - t1), flush=True)
    expect(left == 0, "every half-open connection closed by the node within %g s (%d left)" % (timeout, left))
    for s in list(state):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
    sel.close()


def _halfopen_event(sel, state, s, ev):
    what, i = state[s]
    if what == "connecting":
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            state[s] = ("failed", i)
            sel.unregister(s)
            return
        try:
            if i % 3 == 1:
                s.send(b"\x05\x01")  # half a greeting
            elif i % 3 == 2:
                s.send(b"\x05\x01\x00")  # a greeting, then no request
        except OSError:
            pass
        state[s] = ("open", i)
        sel.modify(s, selectors.EVENT_READ)
        return
    if what == "open":
        try:
            b = s.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            b = b""
        if b:
            return  # the method answer to a greeting
        state[s] = ("closed", i)
        sel.unregister(s)


def main(argv):
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    c, a = argv[0], argv[1:]
    try:
        if c == "random":
            case_random(int(a[0]), int(a[1]), float(a[2]))
        elif c == "truncated":
            case_truncated(int(a[0]), a[1], float(a[2]))
        elif c == "socks-replies":
            case_socks_replies(int(a[0]))
        elif c == "auth":
            case_auth(int(a[0]), a[1], a[2], a[3], int(a[4]))
        elif c == "http-garbage":
            case_http_garbage(int(a[0]))
        elif c == "http-auth":
            case_http_auth(int(a[0]), a[1], a[2], a[3], int(a[4]))
        elif c == "socks-code":
            case_socks_code(int(a[0]), a[1], int(a[2]), int(a[3]), float(a[4]))
        elif c == "http-code":
            case_http_code(int(a[0]), a[1], int(a[2]), int(a[3]), float(a[4]))
        elif c == "halfopen":
            case_halfopen(int(a[0]), int(a[1]), a[2], int(a[3]), float(a[4]))
        else:
            sys.stderr.write(__doc__)
            return 2
    except (IndexError, ValueError) as e:
        sys.stderr.write("hostile.py: %s\n%s" % (e, __doc__))
        return 2
    except OSError as e:
        expect(False, "%s: %s" % (c, e))
    if failures:
        print("%d expectation(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
