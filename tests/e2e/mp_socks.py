"""SOCKS5 client pieces shared by the end-to-end helper scripts (RFC 1928,
RFC 1929). Blocking sockets; asyncio callers use encode_addr/decode_reply.

Not a script: imported by socks_cat.py, dns_client.py, load_client.py and
hostile.py (which live in the same directory)."""
import ipaddress
import socket
import struct

CMD_CONNECT = 1
CMD_BIND = 2
CMD_UDP = 3

ATYP_V4 = 1
ATYP_NAME = 3
ATYP_V6 = 4

REPLIES = {
    0: "succeeded",
    1: "general failure",
    2: "not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class SocksError(Exception):
    pass


def encode_addr(host, port):
    """ATYP + address + port, as in a request or a UDP header."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode()
        if len(raw) > 255:
            raise SocksError("name longer than 255 bytes")
        return bytes([ATYP_NAME, len(raw)]) + raw + struct.pack(">H", port)
    if ip.version == 4:
        return bytes([ATYP_V4]) + ip.packed + struct.pack(">H", port)
    return bytes([ATYP_V6]) + ip.packed + struct.pack(">H", port)


def decode_addr(buf, off):
    """(host, port, next offset) from ATYP at buf[off]; None if buf is short."""
    if len(buf) < off + 1:
        return None
    atyp = buf[off]
    if atyp == ATYP_V4:
        end = off + 1 + 4 + 2
        if len(buf) < end:
            return None
        host = str(ipaddress.IPv4Address(bytes(buf[off + 1 : off + 5])))
    elif atyp == ATYP_V6:
        end = off + 1 + 16 + 2
        if len(buf) < end:
            return None
        host = str(ipaddress.IPv6Address(bytes(buf[off + 1 : off + 17])))
    elif atyp == ATYP_NAME:
        if len(buf) < off + 2:
            return None
        n = buf[off + 1]
        end = off + 2 + n + 2
        if len(buf) < end:
            return None
        host = bytes(buf[off + 2 : off + 2 + n]).decode(errors="replace")
    else:
        raise SocksError("reply with unknown ATYP %d" % atyp)
    port = struct.unpack(">H", bytes(buf[end - 2 : end]))[0]
    return host, port, end


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise SocksError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf


def greet(s, user=None, password=None):
    """Method negotiation (and RFC 1929 login when user is given)."""
    if user is None:
        s.sendall(b"\x05\x01\x00")
    else:
        s.sendall(b"\x05\x01\x02")
    ver, method = recv_exact(s, 2)
    if ver != 5:
        raise SocksError("greeting answer version %d" % ver)
    if method == 0xFF:
        raise SocksError("no acceptable method")
    if method == 2:
        if user is None:
            raise SocksError("server wants username/password")
        u, p = user.encode(), password.encode()
        s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        _, status = recv_exact(s, 2)
        if status != 0:
            raise SocksError("login refused (status %d)" % status)
    elif method != 0:
        raise SocksError("server chose method %d" % method)


def read_reply(s):
    """(REP, bound host, bound port) of a request's answer."""
    head = recv_exact(s, 4)
    if head[0] != 5:
        raise SocksError("reply version %d" % head[0])
    atyp = head[3]
    if atyp == ATYP_V4:
        rest = recv_exact(s, 6)
    elif atyp == ATYP_V6:
        rest = recv_exact(s, 18)
    elif atyp == ATYP_NAME:
        n = recv_exact(s, 1)
        rest = n + recv_exact(s, n[0] + 2)
    else:
        raise SocksError("reply with unknown ATYP %d" % atyp)
    host, port, _ = decode_addr(bytes([atyp]) + rest, 0)
    return head[1], host, port


def request(s, cmd, host, port):
    s.sendall(bytes([5, cmd, 0]) + encode_addr(host, port))
    return read_reply(s)


def connect(proxy, host, port, timeout=20, user=None, password=None):
    """A connected socket to host:port through the SOCKS5 proxy (host, port)."""
    s = socket.create_connection(proxy, timeout=timeout)
    try:
        greet(s, user, password)
        rep, _, _ = request(s, CMD_CONNECT, host, port)
        if rep != 0:
            raise SocksError("CONNECT %s:%d: reply %d (%s)" % (host, port, rep, REPLIES.get(rep, "?")))
    except BaseException:
        s.close()
        raise
    return s


def udp_header(host, port, frag=0):
    return bytes([0, 0, frag]) + encode_addr(host, port)


def parse_udp(dgram):
    """(source host, source port, payload) of a relayed datagram."""
    if len(dgram) < 4 or dgram[0] != 0 or dgram[1] != 0:
        raise SocksError("bad UDP header %r" % dgram[:8])
    if dgram[2] != 0:
        raise SocksError("fragment %d in a reply" % dgram[2])
    r = decode_addr(dgram, 3)
    if r is None:
        raise SocksError("short UDP header")
    host, port, off = r
    return host, port, dgram[off:]
