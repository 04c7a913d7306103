#!/usr/bin/env python3
"""bench/report.py DATA_DIR OUT_MD [OUT_PNG]

Turns the records of the benchmark parts (DATA_DIR/*.tsv, format in
bench/lib.sh) into one Markdown report: the targets of the suite and whether
this run met them, the figures per path (medians of every run) with the
ratios meshproxy / wireguard-go and meshproxy / Nebula, every run's values,
and a PNG chart drawn with gnuplot (skipped with a note when gnuplot is
missing). Standard library only.
"""
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

PATH_LABELS = [
    ("raw", "raw veth (ceiling)"),
    ("wggo", "wireguard-go ↔ wireguard-go"),
    ("nebula", "Nebula ↔ Nebula"),
    ("mesh_fwd", "meshproxy ↔ meshproxy, forward"),
    ("mesh_socks", "meshproxy ↔ meshproxy, SOCKS5"),
    ("mesh_http", "meshproxy ↔ meshproxy, HTTP proxy"),
    ("microsocks", "microsocks, loopback (no mesh)"),
    ("mesh_socks_local", "meshproxy SOCKS5, loopback (no mesh)"),
    ("crypto", "crypto ceiling, one core"),
    ("loopback", "raw loopback TCP (ceiling)"),
    ("mesh_relay", "meshproxy ↔ meshproxy through mesh-relay (UDP blocked)"),
    ("mesh_direct", "meshproxy ↔ meshproxy, the same pair direct"),
    ("relay_load", "one mesh-relay, many clients"),
]
LABEL = dict(PATH_LABELS)
MESH_PATHS = ("mesh_fwd", "mesh_socks", "mesh_http")
# Paths of the relay part: their own section, not the tables above.
RELAY_PATHS = ("loopback", "mesh_relay", "mesh_direct", "relay_load")

# metric -> (title, unit, higher is better)
METRICS = {
    "tput1_up": ("1 stream up", "Mbit/s", True),
    "tput1_down": ("1 stream down", "Mbit/s", True),
    "tput4_up": ("4 streams up", "Mbit/s", True),
    "tput4_down": ("4 streams down", "Mbit/s", True),
    "cpu_per_gb": ("CPU per GB", "s/GB", False),
    "tcp_rr": ("TCP RR", "µs", False),
    "rtt_median": ("ping median", "ms", False),
    "rtt_p99": ("ping p99", "ms", False),
    "http_rps": ("HTTP requests", "req/s", True),
    "ttfb": ("start to first byte", "ms", False),
    "rss_idle_1": ("idle RSS, 1 peer", "KiB", False),
    "rss_idle_1000": ("idle RSS, 1,000 peers", "KiB", False),
    "rss_conns_1000": ("RSS, 1,000 connections", "KiB", False),
    "rss_conns_closed": ("RSS after they closed", "KiB", False),
    "kib_per_conn": ("per connection", "KiB", False),
    "crypto_gbps": ("ChaCha20-Poly1305 (libsodium)", "Gbit/s", True),
    "crypto_wg_seal": ("wg seal", "Gbit/s", True),
    "crypto_wg_open": ("wg open", "Gbit/s", True),
    "tput_256m": ("256 MiB, 1 stream", "Mbit/s", True),
    "relay_cpu_per_gb": ("the relay's CPU per GB", "s/GB", False),
    "load_pps": ("packets/s relayed", "packets/s", True),
    "load_cpu": ("relay CPU", "% of a core", False),
    "load_rss": ("relay RSS", "KiB", False),
    "load_clients": ("clients", "", True),
}
TABLES = [
    ("Throughput", ["tput1_up", "tput1_down", "tput4_up", "tput4_down", "cpu_per_gb"]),
    ("Latency and requests", ["tcp_rr", "rtt_median", "rtt_p99", "http_rps", "ttfb"]),
    ("Memory", ["rss_idle_1", "rss_idle_1000", "rss_conns_1000", "rss_conns_closed",
                "kib_per_conn"]),
]


def load(data_dir):
    """-> {(path, metric): {"unit", "values": [float], "fail": str|None, "part"}}"""
    recs = {}
    for name in sorted(os.listdir(data_dir)):
        if not name.endswith(".tsv"):
            continue
        part = name[:-4]
        with open(os.path.join(data_dir, name), encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) < 4:
                    continue
                path, metric, unit, rest = cols[0], cols[1], cols[2], cols[3]
                rec = {"unit": unit, "values": [], "fail": None, "part": part}
                if rest.startswith("fail:"):
                    rec["fail"] = rest[5:].strip() or "failed"
                else:
                    for v in rest.split():
                        try:
                            rec["values"].append(float(v))
                        except ValueError:
                            pass
                    if not rec["values"]:
                        rec["fail"] = "no value"
                recs[(path, metric)] = rec
    return recs


def med(recs, path, metric):
    r = recs.get((path, metric))
    if not r or r["fail"] or not r["values"]:
        return None
    return statistics.median(r["values"])


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}×"


def cell(recs, path, metric):
    r = recs.get((path, metric))
    if not r:
        return ""
    if r["fail"]:
        return "failed"
    return fmt(med(recs, path, metric))


def pkg_version(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def git_head(root):
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        if not head:
            return "?"
        # The run's own output (bench/results) does not count as a change.
        dirty = subprocess.run(["git", "-C", root, "diff", "--quiet", "HEAD", "--", ".",
                                ":(exclude)bench/results"],
                               capture_output=True, timeout=10).returncode == 1
        return head + (" (with local changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def targets(recs):
    """-> list of (target, measured, met: True/False/None)"""
    out = []
    for d in ("up", "down"):
        m, w, n = (med(recs, p, "tput1_" + d) for p in ("mesh_fwd", "wggo", "nebula"))
        r = ratio(m, w)
        met = None if r is None or n is None else (r >= 2.0 and m > n)
        out.append((f"1-stream TCP {d} through a forward ≥ 2× wireguard-go and > Nebula",
                    f"{fmt(m)} Mbit/s = {fmt_ratio(r)} wireguard-go, "
                    f"{fmt_ratio(ratio(m, n))} Nebula", met))
    for metric in ("rtt_median", "tcp_rr"):
        m, w = med(recs, "mesh_fwd", metric), med(recs, "wggo", metric)
        r = ratio(m, w)
        title, unit, _ = METRICS[metric]
        out.append((f"{title} over the mesh ≤ wireguard-go's",
                    f"{fmt(m)} {unit} = {fmt_ratio(r)} wireguard-go",
                    None if r is None else r <= 1.0))
    m = med(recs, "mesh_fwd", "rss_idle_1")
    out.append(("idle RSS < 4 MiB (wireguard-go: %s KiB)" % fmt(med(recs, "wggo", "rss_idle_1")),
                f"{fmt(m)} KiB", None if m is None else m < 4096))
    m = med(recs, "mesh_fwd", "rss_idle_1000")
    out.append(("idle RSS with 1,000 peers < 8 MiB (wireguard-go: %s KiB)"
                % fmt(med(recs, "wggo", "rss_idle_1000")),
                f"{fmt(m)} KiB", None if m is None else m < 8192))
    m, s = med(recs, "mesh_socks_local", "kib_per_conn"), med(recs, "microsocks", "kib_per_conn")
    out.append(("1,000 idle SOCKS5 sessions cost less than microsocks'",
                f"{fmt(m)} KiB each, microsocks {fmt(s)} KiB",
                None if m is None or s is None else m < s))
    c1000 = med(recs, "mesh_socks_local", "rss_conns_1000")
    closed = med(recs, "mesh_socks_local", "rss_conns_closed")
    if c1000 is not None and closed is not None and m is not None:
        before = c1000 - 1000 * m
        grown = closed - before
        out.append(("RSS returns near idle after the sessions close (within 1 MiB)",
                    f"{fmt(closed)} KiB after, {fmt(before)} KiB before (+{fmt(grown)} KiB); "
                    f"microsocks keeps +{fmt(keep_of(recs, 'microsocks'))} KiB",
                    grown <= 1024))
    else:
        out.append(("RSS returns near idle after the sessions close", "-", None))
    m, raw = med(recs, "mesh_relay", "tput_256m"), med(recs, "loopback", "tput_256m")
    r = ratio(m, raw)
    out.append(("one pair through the relay ≥ 0.5× raw loopback TCP",
                f"{fmt(m)} Mbit/s = {fmt_ratio(r)} loopback ({fmt(raw)} Mbit/s)",
                None if r is None else r >= 0.5))
    return out


def relay_section(recs):
    """The relay part: the pair through the relay next to loopback and
    direct, and the load on one relay."""
    lines = []
    rows = [p for p in ("loopback", "mesh_relay", "mesh_direct")
            if any((p, m) in recs for m in ("tput_256m", "cpu_per_gb"))]
    if rows:
        lines += ["| path | 256 MiB, 1 stream (Mbit/s) | CPU per GB (s/GB) | "
                  "of which the relay (s/GB) |",
                  "| --- | ---: | ---: | ---: |"]
        for p in rows:
            lines.append(f"| {LABEL[p]} | {cell(recs, p, 'tput_256m')} | "
                         f"{cell(recs, p, 'cpu_per_gb')} | {cell(recs, p, 'relay_cpu_per_gb')} |")
        m = med(recs, "mesh_relay", "tput_256m")
        lines += ["", "Ratios: relay ÷ raw loopback "
                  f"{fmt_ratio(ratio(m, med(recs, 'loopback', 'tput_256m')))}, relay ÷ direct "
                  f"{fmt_ratio(ratio(m, med(recs, 'mesh_direct', 'tput_256m')))}. "
                  "The relay's CPU per GB counts both nodes and the relay; the direct "
                  "path's, both nodes.", ""]
    load = [m for m in ("load_clients", "load_pps", "load_cpu", "load_rss")
            if ("relay_load", m) in recs]
    if load:
        lines += ["| " + " | ".join(f"{METRICS[m][0]} ({METRICS[m][1]})" if METRICS[m][1]
                                    else METRICS[m][0] for m in load) + " |",
                  "|" + " ---: |" * len(load),
                  "| " + " | ".join(cell(recs, "relay_load", m) for m in load) + " |", ""]
    return lines


def keep_of(recs, path):
    c1000 = med(recs, path, "rss_conns_1000")
    closed = med(recs, path, "rss_conns_closed")
    per = med(recs, path, "kib_per_conn")
    if None in (c1000, closed, per):
        return None
    return closed - (c1000 - 1000 * per)


def table(recs, metrics):
    paths = [p for p, _ in PATH_LABELS
             if p not in RELAY_PATHS and any((p, m) in recs for m in metrics)]
    if not paths:
        return []
    lines = ["| path | " + " | ".join(
        f"{METRICS[m][0]} ({METRICS[m][1]})" for m in metrics) + " |",
        "| --- |" + " ---: |" * len(metrics)]
    for p in paths:
        lines.append(f"| {LABEL[p]} | " + " | ".join(cell(recs, p, m) for m in metrics) + " |")
        if p in MESH_PATHS:
            for base in ("wggo", "nebula"):
                rs = [fmt_ratio(ratio(med(recs, p, m), med(recs, base, m)))
                      if (p, m) in recs else "" for m in metrics]
                if any(r not in ("", "-") for r in rs):
                    lines.append(f"| &nbsp;&nbsp;÷ {LABEL[base].split(' ')[0]} | "
                                 + " | ".join(rs) + " |")
    if "mesh_socks_local" in paths and "microsocks" in paths:
        rs = [fmt_ratio(ratio(med(recs, "mesh_socks_local", m), med(recs, "microsocks", m)))
              if ("mesh_socks_local", m) in recs else "" for m in metrics]
        if any(r not in ("", "-") for r in rs):
            lines.append("| &nbsp;&nbsp;meshproxy SOCKS5 ÷ microsocks | " + " | ".join(rs) + " |")
    return lines


def chart(recs, png, workdir):
    """A grouped bar chart: throughput per path, and RSS. Returns a note."""
    gp = shutil.which("gnuplot")
    if not gp:
        return "no chart: gnuplot is not installed (apt-get install gnuplot-nox)"
    tpaths = [p for p in ("wggo", "nebula", "mesh_fwd", "mesh_socks", "mesh_http")
              if any(med(recs, p, m) is not None for m in ("tput1_up", "tput4_up"))]
    mpaths = [p for p in ("wggo", "nebula", "mesh_fwd", "microsocks", "mesh_socks_local")
              if any(med(recs, p, m) is not None for m in ("rss_idle_1", "rss_idle_1000",
                                                           "rss_conns_1000"))]
    if not tpaths and not mpaths:
        return "no chart: no throughput or memory figures"
    short = {"wggo": "wireguard-go", "nebula": "Nebula", "mesh_fwd": "meshproxy fwd",
             "mesh_socks": "meshproxy SOCKS5", "mesh_http": "meshproxy HTTP",
             "microsocks": "microsocks", "mesh_socks_local": "meshproxy SOCKS5 (local)"}
    tdat = os.path.join(workdir, "tput.dat")
    mdat = os.path.join(workdir, "mem.dat")

    def num(v, scale=1.0):
        return "-" if v is None else f"{v / scale:.2f}"
    with open(tdat, "w", encoding="utf-8") as f:
        for p in tpaths:
            f.write('"%s" %s\n' % (short[p], " ".join(
                num(med(recs, p, m)) for m in ("tput1_up", "tput1_down", "tput4_up",
                                               "tput4_down"))))
    with open(mdat, "w", encoding="utf-8") as f:
        for p in mpaths:
            f.write('"%s" %s\n' % (short[p], " ".join(
                num(med(recs, p, m), 1024) for m in ("rss_idle_1", "rss_idle_1000",
                                                     "rss_conns_1000"))))
    crypto = med(recs, "crypto", "crypto_gbps")
    script = [
        "set terminal pngcairo size 1400,560 font 'sans,10'",
        f"set output '{png}'",
        "set datafile missing '-'",
        "set style data histogram",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set grid ytics",
        "set key top left",
        "set xtics rotate by -20",
        "set multiplot layout 1,2",
        "set title 'TCP throughput, median (Mbit/s, higher is better)'",
        "set yrange [0:*]",
    ]
    if crypto is not None:
        script.append(f"set label 1 'crypto ceiling, one core: {crypto * 1000:.0f} Mbit/s' "
                      "at graph 0.02, graph 0.80")
    script += [
        f"plot '{tdat}' using 2:xtic(1) title '1 stream up', '' using 3 title '1 stream down',"
        " '' using 4 title '4 streams up', '' using 5 title '4 streams down'",
        "unset label 1",
        "set title 'Memory: RSS, median (MiB, lower is better)'",
        f"plot '{mdat}' using 2:xtic(1) title 'idle, 1 peer', '' using 3 title"
        " 'idle, 1,000 peers', '' using 4 title '1,000 open connections'",
        "unset multiplot",
    ]
    gpf = os.path.join(workdir, "chart.gp")
    with open(gpf, "w", encoding="utf-8") as f:
        f.write("\n".join(script) + "\n")
    res = subprocess.run([gp, gpf], capture_output=True, text=True, timeout=60)
    if res.returncode != 0 or not os.path.exists(png):
        return "no chart: gnuplot failed: " + res.stderr.strip()[:300]
    return None


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    data_dir, out_md = sys.argv[1], sys.argv[2]
    out_png = sys.argv[3] if len(sys.argv) == 4 else None
    recs = load(data_dir)
    if not recs:
        print(f"report: no records in {data_dir}", file=sys.stderr)
        return 1
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = max((len(r["values"]) for r in recs.values()), default=0)
    lines = [
        "# Benchmark: meshproxy next to wireguard-go, Nebula and microsocks",
        "",
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `make bench` "
        "(method: bench/README.md), commit " + git_head(root) + ".",
        f"{os.cpu_count()} CPUs ({cpu_model()}), kernel {platform.release()}; "
        f"wireguard-go {pkg_version('wireguard-go')}, nebula {pkg_version('nebula')}, "
        f"microsocks {pkg_version('microsocks')}, iperf3 {pkg_version('iperf3')}.",
        f"Every figure is the median of {runs} runs (all runs at the end).",
        "",
    ]
    if out_png:
        with tempfile.TemporaryDirectory() as tmp:
            note = chart(recs, out_png, tmp)
        lines += [f"![throughput and memory]({os.path.basename(out_png)})" if note is None
                  else f"({note})", ""]
    lines += ["## Targets", "", "| target | this run | met |", "| --- | --- | --- |"]
    for t, measured, met in targets(recs):
        lines.append(f"| {t} | {measured} | "
                     f"{'yes' if met else ('no' if met is not None else 'not measured')} |")
    lines.append("")
    crypto = med(recs, "crypto", "crypto_gbps")
    for title, metrics in TABLES:
        t = table(recs, metrics)
        if not t:
            continue
        lines += [f"## {title}", ""] + t + [""]
        if title == "Throughput" and crypto is not None:
            m = med(recs, "mesh_fwd", "tput1_up")
            frac = "" if m is None else (
                f" meshproxy's 1-stream forward moves {m / (crypto * 1000) * 100:.0f}% of it.")
            lines += [f"Crypto ceiling: ChaCha20-Poly1305 on 1,420-byte packets seals "
                      f"{crypto * 1000:,.0f} Mbit/s on one core "
                      f"(core/wg seal {fmt(med(recs, 'crypto', 'crypto_wg_seal'))} Gbit/s, "
                      f"open {fmt(med(recs, 'crypto', 'crypto_wg_open'))} Gbit/s).{frac}", ""]
    relay = relay_section(recs)
    if relay:
        lines += ["## Relay", ""] + relay
    fails = [(k, r) for k, r in sorted(recs.items()) if r["fail"]]
    if fails:
        lines += ["## Not measured", ""]
        lines += [f"- {LABEL.get(p, p)}, {METRICS.get(m, (m,))[0]}: {r['fail']}"
                  for (p, m), r in fails]
        lines.append("")
    lines += ["<details><summary>every run</summary>", "", "```"]
    for (p, m), r in sorted(recs.items(), key=lambda kv: (kv[1]["part"], kv[0])):
        vals = r["fail"] and ("failed: " + r["fail"]) or " ".join(fmt(v) for v in r["values"])
        lines.append(f"{r['part']:<11} {p:<17} {m:<17} {r['unit']:<7} {vals}")
    lines += ["```", "</details>", ""]
    with open(out_md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
