#!/usr/bin/env python3
"""Write solid-colour PNG files and check screenshots, with zlib only.

usage:
  png_tool.py make FILE WIDTH HEIGHT RRGGBB
  png_tool.py check FILE [--color RRGGBB:MIN_PIXELS]... [--max-share FRACTION]
        [--min-colors N]

check decodes FILE (8-bit greyscale/RGB/RGBA, any filter, not interlaced),
prints its size, the share of its most common colour, the number of distinct
colours and, for each --color, how many pixels are within 24 of it on every
channel. It fails (exit 1) when a colour has fewer than MIN_PIXELS pixels,
when the most common colour covers more than FRACTION of the image (default
0.98: a blank page), or when there are fewer than N distinct colours
(default 2)."""
import collections
import struct
import sys
import zlib

SIG = b"\x89PNG\r\n\x1a\n"


def chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make(path, w, h, rgb):
    row = b"\x00" + bytes(rgb) * w
    raw = row * h
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(path):
    """(width, height, channels, bytearray of rows without filter bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != SIG:
        raise ValueError("not a PNG file")
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        if len(body) < n:
            raise ValueError("truncated chunk %r" % kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    if ihdr is None:
        raise ValueError("no IHDR")
    w, h, depth, ctype, _, _, interlace = ihdr
    chans = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or chans is None or interlace:
        raise ValueError("unsupported PNG: depth %d colour type %d interlace %d" % (depth, ctype, interlace))
    raw = zlib.decompress(b"".join(idat))
    stride = w * chans
    if len(raw) < h * (stride + 1):
        raise ValueError("image data too short")
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if ft == 1:
            for i in range(chans, stride):
                line[i] = (line[i] + line[i - chans]) & 0xFF
        elif ft == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ft == 3:
            for i in range(stride):
                left = line[i - chans] if i >= chans else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ft == 4:
            for i in range(stride):
                left = line[i - chans] if i >= chans else 0
                up_left = prev[i - chans] if i >= chans else 0
                line[i] = (line[i] + paeth(left, prev[i], up_left)) & 0xFF
        elif ft != 0:
            raise ValueError("bad filter type %d in row %d" % (ft, y))
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return w, h, chans, out


def pixels(w, h, chans, buf):
    """Counter of (r, g, b) over all pixels."""
    if chans >= 3:
        return collections.Counter(zip(buf[0::chans], buf[1::chans], buf[2::chans]))
    grey = buf[0::chans]
    return collections.Counter(zip(grey, grey, grey))


def check(path, colors, max_share, min_colors):
    w, h, chans, buf = decode(path)
    counts = pixels(w, h, chans, buf)
    total = w * h
    top, top_n = counts.most_common(1)[0]
    ok = True
    print("%s: %dx%d, %d channels, %d distinct colours, most common #%02x%02x%02x covers %.1f%%"
          % (path, w, h, chans, len(counts), top[0], top[1], top[2], 100.0 * top_n / total))
    if top_n > max_share * total:
        print("FAIL: looks blank (one colour covers more than %.0f%%)" % (100 * max_share))
        ok = False
    if len(counts) < min_colors:
        print("FAIL: only %d distinct colours, want %d" % (len(counts), min_colors))
        ok = False
    for rgb, want in colors:
        n = sum(c for p, c in counts.items() if all(abs(p[i] - rgb[i]) <= 24 for i in range(3)))
        verdict = "ok" if n >= want else "FAIL"
        print("%s: colour #%02x%02x%02x: %d pixels (want >= %d)" % (verdict, rgb[0], rgb[1], rgb[2], n, want))
        ok = ok and n >= want
    return ok


def parse_rgb(s):
    s = s.lstrip("#")
    return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))


def main(argv):
    if len(argv) >= 5 and argv[0] == "make":
        make(argv[1], int(argv[2]), int(argv[3]), parse_rgb(argv[4]))
        return 0
    if len(argv) >= 2 and argv[0] == "check":
        colors, max_share, min_colors = [], 0.98, 2
        args = argv[2:]
        while args:
            opt = args.pop(0)
            if opt == "--color":
                rgb, _, n = args.pop(0).partition(":")
                colors.append((parse_rgb(rgb), int(n)))
            elif opt == "--max-share":
                max_share = float(args.pop(0))
            elif opt == "--min-colors":
                min_colors = int(args.pop(0))
            else:
                sys.stderr.write(__doc__)
                return 2
        try:
            return 0 if check(argv[1], colors, max_share, min_colors) else 1
        except (OSError, ValueError, zlib.error) as e:
            print("FAIL: %s: %s" % (argv[1], e))
            return 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
