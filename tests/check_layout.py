#!/usr/bin/env python3
"""make check-layout: fail when a lower layer depends on a higher one.

The layers, lowest first (DESIGN.md, Layout):

  core      core/        the mesh engine: crypto, WireGuard, control wire format, utilities
  config    config/      INI parsing into typed structs             (may use core)
  netstack  netstack/    lwIP glue, the only user of lwIP           (core, lwip)
  proto     proxy/proto/ pure codecs                                (core, netstack/ns.h only)
  proxy     proxy/       front-ends: local sockets <-> netstack     (proto, netstack, config, core)
  node      node/        the mesh-proxy daemon, node/dns/ MagicDNS  (proxy and below)
  cli       cli/         the mesh-proxy command                     (node and below)
  servers   servers/     mesh-control                               (config, core)

Two checks, each reporting FILE:LINE (or OBJECT: SYMBOL) and the rule:

1. Includes. Every file under those folders is read the way the
   preprocessor reads it (comments removed, continued lines joined, any
   spelling of the directive: "# include", "%:include", include_next) and
   each include is resolved as the compiler would (the including file's
   folder, then the -I folders given), so "../node/node.h", "ns.h" through
   -Inetstack and a symlink all count for what they point at. An include
   whose operand is not a literal ("#include HEADER") is refused outright:
   it cannot be checked. Headers named *_int.h, *_priv.h, *internal.h and
   ns_hooks.h are private to their own folder.
2. Symbols (--objs): an object of a lower layer may not use a symbol that
   only a higher layer's object defines (a local extern declaration and a
   call need no include at all).

Tests, fuzzers, benchmarks and tools may use anything.
--self-test first plants a violation of every rule in a scratch tree and
checks that each one is caught, and that a clean tree passes.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

LAYERS = [  # (name, folder), most specific folder first
    ("proto", "proxy/proto"),
    ("core", "core"),
    ("config", "config"),
    ("netstack", "netstack"),
    ("proxy", "proxy"),
    ("node", "node"),
    ("cli", "cli"),
    ("servers", "servers"),
]
# What each layer may depend on (itself included).
ALLOWED = {
    "core": {"core"},
    "config": {"config", "core"},
    "netstack": {"netstack", "core", "lwip"},
    "proto": {"proto", "core"},
    "proxy": {"proxy", "proto", "netstack", "config", "core"},
    "node": {"node", "proxy", "proto", "netstack", "config", "core"},
    "cli": {"cli", "node", "proxy", "proto", "netstack", "config", "core"},
    "servers": {"servers", "config", "core"},
}
# Single files a layer may use from a layer it otherwise may not.
EXTRA_FILES = {"proto": {"netstack/ns.h"}}  # struct ns_addr, no code
# System headers a layer may not include (the codecs do no I/O).
BANNED_SYSTEM = {"proto": ("event2/",)}
SOURCE_EXT = (".c", ".h", ".inc", ".def")
PRIVATE_RE = re.compile(r"(_int|_priv|internal|^ns_hooks)\.h$")
DIRECTIVE_RE = re.compile(r"^\s*(?:#|%:)\s*(?:include(?:_next)?|import)\b\s*(.*)$")


def layer_of(rel):
    """The layer of a path relative to the root, or None (tests, lwIP...)."""
    if rel.startswith("third_party/"):
        return "lwip"
    for name, folder in LAYERS:
        if rel == folder or rel.startswith(folder + "/"):
            return name
    return None


def strip_comments(text):
    """C text with comments replaced by spaces (newlines kept) and
    backslash-newline continuations joined, as translation phases 2-3 do."""
    text = text.replace("\\\n", "")
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Checker:
    def __init__(self, root, incdirs):
        self.root = os.path.realpath(root)
        self.incdirs = [os.path.realpath(os.path.join(self.root, d)) for d in incdirs]
        self.problems = []

    def rel(self, path):
        p = os.path.realpath(path)
        if p == self.root or p.startswith(self.root + os.sep):
            return os.path.relpath(p, self.root)
        return None  # outside the project: a system header

    def bad(self, where, why):
        self.problems.append("%s: %s" % (where, why))

    def resolve(self, src, name, quoted):
        dirs = ([os.path.dirname(src)] if quoted else []) + self.incdirs
        for d in dirs:
            cand = os.path.join(d, name)
            if os.path.isfile(cand):
                return cand
        return None  # a system header (or missing: the compiler says so)

    def files(self):
        for _, folder in LAYERS:
            top = os.path.join(self.root, folder)
            for d, _, names in os.walk(top):
                for f in sorted(names):
                    if f.endswith(SOURCE_EXT):
                        yield os.path.join(d, f)

    def check_file(self, path):
        rel_as_placed = os.path.relpath(path, self.root)
        layer = layer_of(rel_as_placed)
        rel_real = self.rel(path)
        if rel_real is None or layer_of(rel_real) != layer:
            self.bad(rel_as_placed, "is a link to %s, outside its layer (%s)"
                     % (rel_real or os.path.realpath(path), layer))
            return
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = strip_comments(f.read())
        except OSError as e:
            self.bad(rel_as_placed, "unreadable: %s" % e)
            return
        for no, line in enumerate(text.split("\n"), 1):
            m = DIRECTIVE_RE.match(line)
            if not m:
                continue
            where = "%s:%d" % (rel_as_placed, no)
            operand = m.group(1).strip()
            lit = re.match(r'^"([^"]+)"|^<([^>]+)>', operand)
            if not lit:
                self.bad(where, "include of a computed name (%s): write the header's name"
                         % operand)
                continue
            name = lit.group(1) or lit.group(2)
            target = self.resolve(path, name, lit.group(1) is not None)
            if target is None:
                for prefix in BANNED_SYSTEM.get(layer, ()):
                    if name.startswith(prefix):
                        self.bad(where, "includes <%s>: %s/ does no I/O"
                                 % (name, dict(LAYERS)[layer]))
                continue
            trel = self.rel(target)
            if trel is None:
                continue
            tlayer = layer_of(trel)
            if tlayer is None:
                self.bad(where, "includes %s, which is not part of any layer" % trel)
                continue
            if tlayer not in ALLOWED[layer] and trel not in EXTRA_FILES.get(layer, ()):
                self.bad(where, "includes %s, but %s may not depend on %s"
                         % (trel, layer, tlayer))
                continue
            tdir = os.path.dirname(trel)
            if tlayer != "lwip" and PRIVATE_RE.search(os.path.basename(trel)) and \
                    os.path.dirname(rel_as_placed) != tdir:
                self.bad(where, "includes %s, which is private to %s/" % (trel, tdir))

    def check_includes(self):
        for path in self.files():
            self.check_file(path)

    def check_symbols(self, objdir, extra_libs):
        """objdir holds <layer folder>/.../*.o as the Makefile builds them."""
        defined = {}  # symbol -> layer
        undefined = []  # (object, layer, symbol)
        objs = []
        for d, _, names in os.walk(objdir):
            for f in sorted(names):
                if f.endswith(".o"):
                    p = os.path.join(d, f)
                    layer = layer_of(os.path.relpath(p, objdir)[:-2])
                    if layer:
                        objs.append((p, layer))
        if not objs:
            self.bad(objdir, "no objects to check (build first)")
            return
        for lib in extra_libs:
            for sym in nm(["--defined-only", lib]):
                defined.setdefault(sym, "lwip")
        for p, layer in objs:
            for sym in nm(["--defined-only", p]):
                defined[sym] = layer
            for sym in nm(["-u", p]):
                undefined.append((p, layer, sym))
        for p, layer, sym in undefined:
            owner = defined.get(sym)
            if owner and owner not in ALLOWED[layer]:
                self.bad(os.path.relpath(p, objdir), "uses %s, defined in %s, but %s may "
                         "not depend on %s" % (sym, owner, layer, owner))


def nm(args):
    out = subprocess.run(["nm", "-P", "--no-sort"] + args, capture_output=True,
                         text=True, check=False).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].endswith(":"):
            if parts[1].islower() and parts[1] not in "uvw":
                continue  # a local symbol: no one else can use it
            syms.append(parts[0])
    return syms


def plant(tmp, files):
    shutil.rmtree(tmp, ignore_errors=True)
    for path, text in files.items():
        full = os.path.join(tmp, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if text.startswith("->"):
            os.symlink(os.path.join(tmp, text[2:]), full)
        else:
            with open(full, "w") as f:
                f.write(text)


# A small clean tree: one header per layer, each file including what it may.
CLEAN = {
    "core/util/log.h": "int log_x;\n",
    "core/util/u_int.h": "\n",
    "core/util/u.c": '#include "core/util/u_int.h"\n#include "core/util/log.h"\n',
    "config/config.h": '#include "core/util/log.h"\n',
    "netstack/ns.h": "struct ns_addr { int f; };\n",
    "netstack/ns_priv.h": "\n",
    "netstack/ns.c": '#include "ns_priv.h"\n#include "lwip/tcp.h"\n',
    "third_party/src/lwip/src/include/lwip/tcp.h": "\n",
    "proxy/proto/proto.h": '#include "netstack/ns.h"\n#include <stdint.h>\n',
    "proxy/proxy.h": '#include "proxy/proto/proto.h"\n#include "config/config.h"\n',
    "proxy/internal.h": '#include "proxy/proxy.h"\n#include <event2/event.h>\n',
    "proxy/s.c": '#include "internal.h"\n#include "proxy/internal.h"\n',
    "node/node.h": '#include "proxy/proxy.h"\n',
    "node/node_int.h": "\n",
    "node/dns/magicdns.h": '#include "node/node.h"\n',
    "cli/main.c": '#include "node/node.h"\n#include "node/dns/magicdns.h"\n',
    "servers/control/s.c": '#include "core/util/log.h"\n#include "config/config.h"\n',
    "tests/unit/t.c": '#include "proxy/internal.h"\n#include "node/node_int.h"\n',
}
INCDIRS = [".", "netstack", "third_party/src/lwip/src/include"]


def self_test(cc):
    cases = []
    # Every pair (layer, a layer it may not use), through its public header.
    public = {"core": "core/util/log.h", "config": "config/config.h",
              "netstack": "netstack/ns.h", "proto": "proxy/proto/proto.h",
              "proxy": "proxy/proxy.h", "node": "node/node.h", "cli": "cli/cli.h",
              "servers": "servers/control/s.h", "lwip": "lwip/tcp.h"}
    folder = dict(LAYERS)
    for layer in ALLOWED:
        for other, hdr in public.items():
            if other in ALLOWED[layer] or hdr in EXTRA_FILES.get(layer, ()):
                continue
            src = "%s/zz_x.c" % folder[layer]
            cases.append(("%s uses %s" % (layer, other),
                          {src: '#include "%s"\n' % hdr}))
    more = [
        ("relative path up", {"core/wg/x.c": '#include "../../node/node.h"\n'}),
        ("a path through an allowed folder",
         {"proxy/x.c": '#include "netstack/../node/node.h"\n'}),
        ("a bare name through -Inetstack", {"core/x.c": '#include "ns.h"\n'}),
        ("a directive after a comment",
         {"core/x.c": '/* c */ #include "node/node.h"\n'}),
        ("spaces and a continued line",
         {"core/x.c": '#  include \\\n "node/node.h"\n'}),
        ("a digraph", {"core/x.c": '%:include "node/node.h"\n'}),
        ("include_next", {"core/x.c": '#include_next "node/node.h"\n'}),
        ("import", {"core/x.c": '#import "node/node.h"\n'}),
        ("a computed name", {"core/x.c": '#define H "core/util/log.h"\n#include H\n'}),
        ("no newline at the end", {"core/x.c": '#include "node/node.h"'}),
        ("a .inc file", {"core/x.inc": '#include "node/node.h"\n'}),
        ("a symlink into a higher layer", {"core/n.h": "->node/node.h"}),
        ("proto uses the proxy runtime",
         {"proxy/proto/x.c": '#include "../internal.h"\n'}),
        ("proto uses libevent", {"proxy/proto/x.c": "#include <event2/event.h>\n"}),
        ("proto uses a netstack header other than ns.h",
         {"proxy/proto/x.c": '#include "netstack/ns_priv.h"\n'}),
        ("a private header of proxy/ from node/",
         {"node/x.c": '#include "proxy/internal.h"\n'}),
        ("a private header of node/ from cli/",
         {"cli/x.c": '#include "node/node_int.h"\n'}),
        ("a private header of core/util/ from core/wg/",
         {"core/wg/x.c": '#include "core/util/u_int.h"\n'}),
        ("a private netstack header from proxy/",
         {"proxy/x.c": '#include "netstack/ns_priv.h"\n'}),
    ]
    cases += more
    ok = True
    with tempfile.TemporaryDirectory(prefix="check-layout.") as tmp:
        tree = os.path.join(tmp, "t")
        plant(tree, CLEAN)
        c = Checker(tree, INCDIRS)
        c.check_includes()
        if c.problems:
            print("self-test: the clean tree was refused:\n  " + "\n  ".join(c.problems))
            ok = False
        extra_hdrs = {"cli/cli.h": "\n", "servers/control/s.h": "\n"}
        for what, files in cases:
            plant(tree, dict(CLEAN, **extra_hdrs, **files))
            c = Checker(tree, INCDIRS)
            c.check_includes()
            if not c.problems:
                print("self-test: missed: %s" % what)
                ok = False
        # Symbols: core calls a node function through a local declaration.
        plant(tree, {"core/x.c": "extern int node_fn(void);\nint core_fn(void) "
                     "{ return node_fn(); }\n",
                     "node/y.c": "int node_fn(void) { return 1; }\n",
                     "node/z.c": "extern int core_fn(void);\nint node_g(void) "
                     "{ return core_fn(); }\n"})
        objdir = os.path.join(tmp, "obj")
        for src in ("core/x.c", "node/y.c", "node/z.c"):
            obj = os.path.join(objdir, src[:-2] + ".o")
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            subprocess.run([cc, "-c", os.path.join(tree, src), "-o", obj], check=True)
        c = Checker(tree, INCDIRS)
        c.check_symbols(objdir, [])
        if len(c.problems) != 1 or "node_fn" not in c.problems[0]:
            print("self-test: symbols: expected exactly core/x.o using node_fn, got %s"
                  % c.problems)
            ok = False
    n = len(cases) + 2
    print("check-layout: self-test %s (%d planted violations, a clean tree, symbols)"
          % ("ok" if ok else "FAILED", n))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--incdir", action="append", default=[],
                    help="an -I folder, relative to the root (repeat)")
    ap.add_argument("--objs", help="the build's object folder (BUILD/obj)")
    ap.add_argument("--lib", action="append", default=[],
                    help="an archive whose symbols belong to lwIP")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    ok = True
    if a.self_test:
        ok = self_test(a.cc)
    c = Checker(a.root, a.incdir or ["."])
    c.check_includes()
    if a.objs:
        c.check_symbols(a.objs, a.lib)
    for p in c.problems:
        print(p)
    if c.problems:
        print("check-layout: FAILED: a lower layer depends on a higher one "
              "(DESIGN.md, Layout)")
        return 1
    print("check-layout: ok (core < config, netstack < proxy/proto < proxy < node < cli;"
          " servers on config, core)%s" % ("" if a.objs else "; includes only"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
