#!/usr/bin/env python3
"""One pair of the NAT lab: traffic both ways, then the path over time.

usage: pair.py SPEC.json OUT.json

SPEC (written by tests/e2e/natlab.sh) holds: "pair" (a label), "a" and "b"
(each {"name", "netns", "state"}), "expected" ("direct" or "relay"),
"window_s" (how long to watch the path), "mesh_proxy", "file" (its name
on every node's web server), "sha256", "size", "outdir".

Runs as root; curl and `mesh-proxy status` run as nobody, curl inside the
node's network namespace (nsenter), through the node's SOCKS5 on
127.0.0.1:1080, by the peer's name. Steps:
  1. a fetches http://b:8080/FILE, then b fetches http://a:8080/FILE (time to
     first byte of a's fetch is the pair's "first byte": it includes the
     WireGuard handshake through the relay);
  2. both nodes' `status --json` every 0.25 s until window_s from the
     start: the path each side reports for the other; "direct_ms" is when
     both first said "direct" (null if never at once); a pair expected to go
     direct stops watching 2 s after that;
  3. the same two fetches again, on the final path, with each side's
     relay_rx_bytes for the other before and after (did the relay carry
     them?).
Writes OUT: everything measured, and "errors" (what went wrong, for the
test to report). Exit 0 whatever happened; the test judges.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def now_ms():
    return time.monotonic() * 1000.0


def status(spec, node):
    try:
        out = subprocess.run(NOBODY + [spec["mesh_proxy"], "status", "--state", node["state"],
                                       "--json"], capture_output=True, timeout=5).stdout
        return json.loads(out).get("mesh") or {}
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return None


def peer_of(st, name):
    for p in (st or {}).get("peers", []):
        if p.get("name") == name:
            return p
    return {}


def fetch(spec, frm, to, tag, errors):
    """frm fetches http://to:8080/FILE; returns (ok, ttfb_ms, total_ms)."""
    out = os.path.join(spec["outdir"], "dl-%s-%s" % (spec["pair"], tag))
    try:
        os.unlink(out)
    except OSError:
        pass
    cmd = ["nsenter", "--net=/run/netns/" + frm["netns"], "--"] + NOBODY + [
        "curl", "-sS", "--max-time", "15", "--socks5-hostname", "127.0.0.1:1080",
        "-o", out, "-w", "%{time_starttransfer} %{time_total}",
        "http://%s:8080/%s" % (to["name"], spec["file"])]
    t0 = now_ms()
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    wall = now_ms() - t0
    try:
        with open(out, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    ok = r.returncode == 0 and hashlib.sha256(data).hexdigest() == spec["sha256"]
    ttfb = total = None
    try:
        a, b = r.stdout.decode().split()
        ttfb, total = float(a) * 1000.0, float(b) * 1000.0
    except ValueError:
        pass
    if not ok:
        errors.append("%s: %s -> http://%s:8080/%s failed (curl exit %d, %d bytes, %s)" % (
            tag, frm["name"], to["name"], spec["file"], r.returncode, len(data),
            r.stderr.decode(errors="replace").strip()[:200]))
    try:
        os.unlink(out)
    except OSError:
        pass
    return ok, ttfb, total if total is not None else wall


def main():
    spec = json.load(open(sys.argv[1]))
    a, b = spec["a"], spec["b"]
    errors = []
    res = {"pair": spec["pair"], "a": a["name"], "b": b["name"],
           "expected": spec["expected"], "errors": errors}
    t0 = now_ms()
    ok1, ttfb, total = fetch(spec, a, b, "ab1", errors)
    ok2, ttfb_back, _ = fetch(spec, b, a, "ba1", errors)
    res.update(first_ok=ok1 and ok2, first_byte_ms=ttfb, first_total_ms=total,
               first_byte_back_ms=ttfb_back)

    # The path over time, as each side reports it.
    timeline, direct_ms, side_direct = [], None, {"a": None, "b": None}
    last = (None, None)
    deadline = t0 + spec["window_s"] * 1000.0
    while now_ms() < deadline:
        sa, sb = status(spec, a), status(spec, b)
        pa, pb = peer_of(sa, b["name"]).get("path"), peer_of(sb, a["name"]).get("path")
        t = round(now_ms() - t0)
        if (pa, pb) != last:
            timeline.append([t, pa, pb])
            last = (pa, pb)
        if pa == "direct" and side_direct["a"] is None:
            side_direct["a"] = t
        if pb == "direct" and side_direct["b"] is None:
            side_direct["b"] = t
        if pa == "direct" and pb == "direct" and direct_ms is None:
            direct_ms = t
        if (spec["expected"] == "direct" and direct_ms is not None and
                now_ms() - t0 > direct_ms + 2000):
            break
        time.sleep(0.25)
    res.update(timeline=timeline, direct_ms=direct_ms, a_direct_ms=side_direct["a"],
               b_direct_ms=side_direct["b"])

    # Traffic on the final path, and whether the relay carried it.
    def relay_rx(st, other):
        return peer_of(st, other).get("relay_rx_bytes") or 0

    sa, sb = status(spec, a), status(spec, b)
    ra0, rb0 = relay_rx(sa, b["name"]), relay_rx(sb, a["name"])
    ok3, _, _ = fetch(spec, a, b, "ab2", errors)
    ok4, _, _ = fetch(spec, b, a, "ba2", errors)
    sa, sb = status(spec, a), status(spec, b)
    pa, pb = peer_of(sa, b["name"]), peer_of(sb, a["name"])
    res.update(final_ok=ok3 and ok4,
               a_relay_rx=relay_rx(sa, b["name"]) - ra0,
               b_relay_rx=relay_rx(sb, a["name"]) - rb0,
               a_path=pa.get("path"), b_path=pb.get("path"),
               a_birthday=pa.get("birthday"), b_birthday=pb.get("birthday"),
               a_endpoint=pa.get("endpoint"), b_endpoint=pb.get("endpoint"),
               a_relay_region=pa.get("relay_region"), b_relay_region=pb.get("relay_region"),
               elapsed_ms=round(now_ms() - t0))
    for side, st in (("a", sa), ("b", sb)):
        paths = (st or {}).get("paths") or {}
        res[side + "_counters"] = paths.get("counters")
        # Per relay connection: what it dropped because it was not
        # connected yet (a packet sent while a connection to the peer's
        # region was still being opened).
        res[side + "_relays"] = [
            {k: r.get(k) for k in ("name", "region", "home", "state", "tx_drop_notconn",
                                   "tx_drop_queue", "reconnects")}
            for r in paths.get("relays") or []]
    with open(sys.argv[2] + ".tmp", "w") as f:
        json.dump(res, f, indent=1)
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
