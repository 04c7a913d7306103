#!/usr/bin/env python3
"""DNS queries over UDP, directly or through a SOCKS5 UDP ASSOCIATE.

usage:
  dns_client.py udp SERVER PORT NAME TYPE EXPECT [--count N] [--senders K]
  dns_client.py socks SOCKS_PORT TARGET PORT NAME TYPE EXPECT [--count N]
        [--user U --password P] [--frag] [--after-close]

TYPE is A or TXT. EXPECT is what the answer must read: an IPv4 address for
A, "TXT:<bytes>" for the total TXT length, or NXDOMAIN.
udp: K sockets (default 1) each send N queries (default 3) to SERVER:PORT;
every answer must come back to the socket that asked, with its query id.
socks: RFC 1928 UDP ASSOCIATE on 127.0.0.1:SOCKS_PORT, then N queries to
TARGET:PORT (an address or a name, sent in the UDP request header) through
the relay. --frag first sends a datagram with FRAG=1, which the relay must
drop (no answer). --after-close closes the TCP control connection at the
end and checks that the relay then stops answering.
Each query is retried up to 3 times (2 s apart); retries are reported.
Exit 0 when every check held."""
import os
import random
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mp_socks  # noqa: E402

TYPES = {"A": 1, "TXT": 16}


def build_query(qid, name, qtype):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", qtype, 1)


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1
        if n == 0:
            return off
        off += n


def parse_answer(msg):
    """(id, text) where text is 'A a.b.c.d', 'TXT:<n>', 'NXDOMAIN', ..."""
    if len(msg) < 12:
        raise ValueError("short answer (%d bytes)" % len(msg))
    qid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    rcode = flags & 0xF
    if rcode == 3:
        return qid, "NXDOMAIN"
    if rcode:
        return qid, "RCODE %d" % rcode
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    out = []
    txt = 0
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off : off + 10])
        off += 10
        rdata = msg[off : off + rdlen]
        off += rdlen
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(rdata))
        elif rtype == 16:
            i = 0
            while i < len(rdata):
                txt += rdata[i]
                i += 1 + rdata[i]
    if txt:
        out.append("TXT:%d" % txt)
    return qid, " ".join(out) if out else "EMPTY"


def wait_readable(socks_, timeout):
    r, _, _ = select.select(socks_, [], [], timeout)
    return r


class Result:
    def __init__(self):
        self.ok = 0
        self.bad = 0
        self.retries = 0
        self.rtts = []


def run_udp(server, port, name, qtype, expect, count, senders):
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    socks_ = [socket.socket(fam, socket.SOCK_DGRAM) for _ in range(senders)]
    res = Result()
    for n in range(count):
        pending = {}
        for s in socks_:
            qid = random.randrange(65536)
            pending[s] = qid
            s.sendto(build_query(qid, name, qtype), (server, port))
        t0 = time.monotonic()
        tries = 1
        while pending:
            r = wait_readable(list(pending), 2.0)
            if not r:
                if tries >= 3:
                    print("no answer for %d of %d senders (query %d)" % (len(pending), senders, n + 1))
                    res.bad += len(pending)
                    break
                tries += 1
                res.retries += len(pending)
                for s, qid in pending.items():
                    s.sendto(build_query(qid, name, qtype), (server, port))
                continue
            for s in r:
                msg, _ = s.recvfrom(65536)
                qid, text = parse_answer(msg)
                if qid != pending.get(s):
                    print("answer with id %d on a socket that asked %s" % (qid, pending.get(s)))
                    res.bad += 1
                    continue
                del pending[s]
                res.rtts.append(time.monotonic() - t0)
                if text == expect:
                    res.ok += 1
                else:
                    print("wrong answer: %r, want %r" % (text, expect))
                    res.bad += 1
    return res


def relay_query(udp, relay, target, tport, name, qtype, expect, res):
    qid = random.randrange(65536)
    dgram = mp_socks.udp_header(target, tport) + build_query(qid, name, qtype)
    t0 = time.monotonic()
    for attempt in range(3):
        if attempt:
            res.retries += 1
        udp.sendto(dgram, relay)
        deadline = time.monotonic() + 2.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not wait_readable([udp], left):
                break
            msg, src = udp.recvfrom(65536)
            if src[:2] != relay[:2]:
                print("datagram from %s, not the relay %s" % (src, relay))
                continue
            host, port, payload = mp_socks.parse_udp(msg)
            got_id, text = parse_answer(payload)
            if got_id != qid:
                continue
            res.rtts.append(time.monotonic() - t0)
            if port != tport:
                print("relayed answer says source port %d, want %d" % (port, tport))
                res.bad += 1
                return
            if text != expect:
                print("wrong answer: %r, want %r (relayed from %s:%d)" % (text, expect, host, port))
                res.bad += 1
                return
            res.ok += 1
            return
    print("no answer through the relay for %s %s" % (name, qtype))
    res.bad += 1


def run_socks(sport, target, tport, name, qtype, expect, count, user, password, frag, after_close):
    ctl = socket.create_connection(("127.0.0.1", sport), timeout=10)
    mp_socks.greet(ctl, user, password)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    mine = udp.getsockname()
    rep, bhost, bport = mp_socks.request(ctl, mp_socks.CMD_UDP, mine[0], mine[1])
    if rep != 0:
        print("UDP ASSOCIATE: reply %d (%s)" % (rep, mp_socks.REPLIES.get(rep, "?")))
        return None
    if bhost in ("0.0.0.0", "::"):
        bhost = "127.0.0.1"
    relay = (bhost, bport)
    print("UDP ASSOCIATE: relay at %s:%d" % relay)
    res = Result()
    if frag:
        qid = random.randrange(65536)
        udp.sendto(mp_socks.udp_header(target, tport, frag=1) + build_query(qid, name, qtype), relay)
        if wait_readable([udp], 1.5):
            msg, _ = udp.recvfrom(65536)
            print("FRAG=1 datagram was answered (%d bytes); the relay must drop fragments" % len(msg))
            res.bad += 1
        else:
            print("FRAG=1 datagram dropped, as it should be")
    for _ in range(count):
        relay_query(udp, relay, target, tport, name, qtype, expect, res)
    ctl.setblocking(False)
    try:
        b = ctl.recv(1)
        print("control connection closed by the server during the association (%r)" % b)
        res.bad += 1
    except BlockingIOError:
        pass
    if after_close:
        ctl.close()
        time.sleep(1.0)
        qid = random.randrange(65536)
        try:
            udp.sendto(mp_socks.udp_header(target, tport) + build_query(qid, name, qtype), relay)
            if wait_readable([udp], 2.0):
                udp.recvfrom(65536)
                print("the relay still answers after the control connection closed")
                res.bad += 1
            else:
                print("relay silent after the control connection closed, as it should be")
        except ConnectionRefusedError:
            print("relay port closed after the control connection closed, as it should be")
    return res


def main(argv):
    mode = argv[0] if argv else ""
    npos = {"udp": 6, "socks": 7}.get(mode)
    if npos is None or len(argv) < npos:
        sys.stderr.write(__doc__)
        return 2
    if mode == "udp":
        server, port, name, qtype, expect = argv[1], int(argv[2]), argv[3], argv[4], argv[5]
    else:
        sport, target, port, name, qtype, expect = int(argv[1]), argv[2], int(argv[3]), argv[4], argv[5], argv[6]
    qtype = TYPES[qtype]
    opts = argv[npos:]
    count, senders, user, password, frag, after_close = 3, 1, None, None, False, False
    while opts:
        o = opts.pop(0)
        if o == "--count":
            count = int(opts.pop(0))
        elif o == "--senders":
            senders = int(opts.pop(0))
        elif o == "--user":
            user = opts.pop(0)
        elif o == "--password":
            password = opts.pop(0)
        elif o == "--frag":
            frag = True
        elif o == "--after-close":
            after_close = True
        else:
            sys.stderr.write(__doc__)
            return 2
    try:
        if mode == "udp":
            res = run_udp(server, port, name, qtype, expect, count, senders)
        else:
            res = run_socks(sport, target, port, name, qtype, expect, count, user, password, frag, after_close)
    except (OSError, mp_socks.SocksError, ValueError) as e:
        print("error: %s" % e)
        return 1
    if res is None:
        return 1
    rtt = sorted(res.rtts)
    print("%d answered correctly, %d bad, %d retries; rtt median %.1f ms, max %.1f ms"
          % (res.ok, res.bad, res.retries, 1000 * rtt[len(rtt) // 2] if rtt else 0, 1000 * rtt[-1] if rtt else 0))
    return 0 if res.bad == 0 and res.ok > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
