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
  servers   servers/     mesh-control, mesh-relay                   (config, core)

Pure codec folders, wherever their layer: proxy/proto/, and in core/ the
wire formats the node and the servers share, core/relay/ (relay frames,
the HTTP upgrade), core/stun/ and core/disco/. They include no libevent
and call nothing outside the project but string, memory and address-text
functions and libsodium (core/relay/ also seals and opens its handshake box
and, with the session keys it derives, every later frame; core/disco/ seals
and opens its boxes). The node's relay client, core/relay/client*.{c,h},
sits beside the codecs it drives and is not one: it is core code on a
libevent loop like core/control/client.c.

Three checks, each reporting FILE:LINE (or OBJECT) and the rule:

1. Includes. Every file under those folders is read the way the
   preprocessor reads it (comments removed, continued lines joined, any
   spelling of the directive: "# include", "%:include", include_next) and
   each include is resolved as the compiler would (the including file's
   folder, then the -I folders given), so "../node/node.h", "ns.h" through
   -Inetstack and a symlink all count for what they point at. An include
   whose operand is not a literal ("#include HEADER") is refused outright:
   it cannot be checked. Headers named *_int.h, *_priv.h, *internal.h and
   ns_hooks.h are private to their own folder.
2. What the compiler read (--objs): each object's dependency file (.d,
   written by -MMD) lists every project header the compiler really
   included, after #if, whatever the spelling; none may be of a layer the
   object's layer may not use.
3. Symbols (--objs): an object of a lower layer may not use a symbol that
   only a higher layer's object defines (a local extern declaration and a
   call need no include at all); and the codecs (proxy/proto/) may call
   nothing outside the project but pure string, memory, address-text and
   libsodium functions: no I/O, no allocation, no event loop.

Tests, fuzzers, benchmarks and tools may use anything.
--self-test first plants a violation of every rule in a scratch tree and
checks that each one is caught, and that a clean tree passes.
"""

import argparse
import os
import re
import shlex
import shutil
import stat
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
BANNED_SYSTEM = {"proto": ("event2/", "event.h", "evdns.h", "evhttp.h", "evutil.h")}
# What the codecs may call outside the project.
PROTO_EXTERNAL_OK = re.compile(r"^(mem[a-z]*|str[a-z]*|snprintf|inet_pton|inet_ntop|"
                               r"sodium_[a-z0-9_]+|__[a-z0-9_]+_chk|__stack_chk_fail)$")
RELAY_EXTERNAL_OK = re.compile(PROTO_EXTERNAL_OK.pattern[:-2] +
                               r"|crypto_box_[a-z_]+|randombytes_buf|crypto_scalarmult[a-z_]*"
                               r"|crypto_generichash_[a-z_]+"
                               r"|crypto_aead_chacha20poly1305_ietf_[a-z_]+)$")
# Pure codec folders inside a layer: (folder, what they may call outside).
DISCO_EXTERNAL_OK = re.compile(PROTO_EXTERNAL_OK.pattern[:-2] +
                               r"|crypto_box_[a-z_]+|randombytes_buf)$")
PURE_FOLDERS = [("proxy/proto", PROTO_EXTERNAL_OK), ("core/relay", RELAY_EXTERNAL_OK),
                ("core/stun", PROTO_EXTERNAL_OK), ("core/disco", DISCO_EXTERNAL_OK)]


# Files in a pure folder that are not codecs (see the top).
NOT_PURE_RE = re.compile(r"^core/relay/client(_[a-z]+)?\.[cho]$")


def pure_rule(rel):
    """The external-call rule of a pure codec folder holding rel, or None."""
    if NOT_PURE_RE.match(rel):
        return None
    for folder, rule in PURE_FOLDERS:
        if rel.startswith(folder + "/"):
            return folder, rule
    return None
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
        for d, full in zip(incdirs, self.incdirs):
            if not os.path.isdir(full):
                self.bad(d, "is not a folder (an -I folder given to the check)")

    def rel(self, path):
        p = os.path.realpath(path)
        if p == self.root or p.startswith(self.root + os.sep):
            return os.path.relpath(p, self.root)
        return None  # outside the project: a system header

    def bad(self, where, why):
        p = "%s: %s" % (where, why)
        if p not in self.problems:
            self.problems.append(p)

    def resolve(self, src, name, quoted):
        dirs = ([os.path.dirname(src)] if quoted else []) + self.incdirs
        for d in dirs:
            cand = os.path.join(d, name)
            if os.path.isfile(cand):
                return cand
        return None  # a system header (or missing: the compiler says so)

    def files(self):
        """Every regular file under the layer folders (an included file need
        not be named .c or .h); a linked folder is refused, as its files
        would count for the folder it points at."""
        seen = set()
        for _, folder in LAYERS:
            top = os.path.join(self.root, folder)
            for d, dirs, names in os.walk(top):
                for x in dirs:
                    if os.path.islink(os.path.join(d, x)):
                        self.bad(os.path.relpath(os.path.join(d, x), self.root),
                                 "is a linked folder: its files would escape their layer")
                for f in sorted(names):
                    full = os.path.join(d, f)
                    if full in seen or f.endswith((".md", ".ini")):
                        continue
                    seen.add(full)
                    try:
                        st = os.stat(full)
                    except OSError:
                        st = None
                    if st is None or stat.S_ISREG(st.st_mode):
                        yield full

    def check_file(self, path):
        rel_as_placed = os.path.relpath(path, self.root)
        layer = layer_of(rel_as_placed)
        rel_real = self.rel(path)
        if rel_real is None or layer_of(rel_real) != layer:
            self.bad(rel_as_placed, "is a link to %s, outside its layer (%s)"
                     % (rel_real or os.path.realpath(path), layer))
            return
        try:
            with open(path, encoding="utf-8-sig", errors="replace") as f:
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
                norm = os.path.normpath(name)
                pure = pure_rule(rel_as_placed)
                for prefix in BANNED_SYSTEM["proto"] if pure else ():
                    if norm.startswith(prefix) or norm == prefix:
                        self.bad(where, "includes <%s>: %s/ does no I/O"
                                 % (name, pure[0]))
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

    def objects(self, objdir, objs):
        """(object, layer) for the objects the build lists."""
        out = []
        for p in objs:
            rel = os.path.relpath(p, objdir)
            layer = layer_of(rel[:-2]) if rel.endswith(".o") else None
            if layer in ALLOWED:
                out.append((p, layer))
        if not out:
            self.bad(objdir, "no objects to check (build first)")
        return out

    def check_depfiles(self, objdir, objs):
        for p, layer in objs:
            dep = p[:-2] + ".d"
            where = os.path.relpath(dep, objdir)
            try:
                with open(dep, encoding="utf-8", errors="replace") as f:
                    text = f.read().replace("\\\n", " ")
            except OSError as e:
                self.bad(where, "no dependency file (%s): build with -MMD" % e.strerror)
                continue
            first = text.split("\n")[0]  # the object's rule; -MP adds the rest
            deps = first.split(":", 1)[1].split() if ":" in first else []
            for d in deps:
                trel = self.rel(os.path.join(self.root, d))
                tlayer = layer_of(trel) if trel else None
                if not tlayer or tlayer in ALLOWED[layer] or \
                        trel in EXTRA_FILES.get(layer, ()):
                    continue
                self.bad(where, "the compiler read %s, but %s may not depend on %s"
                         % (trel, layer, tlayer))

    def check_symbols(self, objdir, objs, extra_libs):
        defined = {}  # symbol -> the layers whose objects define it
        for lib in extra_libs:
            for sym in nm(["--defined-only", lib]):
                defined.setdefault(sym, set()).add("lwip")
        for p, layer in objs:
            for sym in nm(["--defined-only", p]):
                defined.setdefault(sym, set()).add(layer)
        for p, layer in objs:
            where = os.path.relpath(p, objdir)
            pure = pure_rule(where)
            for sym in nm(["-u", p]):
                owners = defined.get(sym)
                if owners is None:
                    if pure and not pure[1].match(sym):
                        self.bad(where, "calls %s: the codecs do no I/O and no "
                                 "allocation" % sym)
                    continue
                if not owners & ALLOWED[layer]:
                    owner = sorted(owners)[0]
                    self.bad(where, "uses %s, defined in %s, but %s may not depend "
                             "on %s" % (sym, owner, layer, owner))


def nm(args):
    r = subprocess.run(["nm", "-P", "--no-sort"] + args, capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise SystemExit("check-layout: nm %s failed: %s" % (" ".join(args),
                                                              r.stderr.strip()))
    syms = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].endswith(":"):
            if parts[1].islower() and parts[1] not in "uvwi":
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
    "core/relay/client.c": '#include <event2/event.h>\n#include "core/util/log.h"\n',
    "tests/unit/t.c": '#include "proxy/internal.h"\n#include "node/node_int.h"\n',
}
INCDIRS = [".", "netstack", "third_party/src/lwip/src/include"]


def self_test(cc):
    cases = []  # (what, files, a phrase the report must hold)
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
            cases.append(("%s uses %s" % (layer, other), {src: '#include "%s"\n' % hdr},
                          "%s:1: includes %s" % (src, "" if other == "lwip" else hdr)))
    up = "core may not depend on node"
    cases += [
        ("relative path up", {"core/wg/x.c": '#include "../../node/node.h"\n'},
         "core/wg/x.c:1: includes node/node.h, but " + up),
        ("a path through an allowed folder",
         {"proxy/x.c": '#include "netstack/../node/node.h"\n'},
         "proxy/x.c:1: includes node/node.h, but proxy may not depend on node"),
        ("a bare name through -Inetstack", {"core/x.c": '#include "ns.h"\n'},
         "core/x.c:1: includes netstack/ns.h, but core may not depend on netstack"),
        ("a directive after a comment", {"core/x.c": '/* c */ #include "node/node.h"\n'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("spaces and a continued line", {"core/x.c": '#  include \\\n "node/node.h"\n'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("a byte-order mark", {"core/x.c": '\ufeff#include "node/node.h"\n'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("a digraph", {"core/x.c": '%:include "node/node.h"\n'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("include_next", {"core/x.c": '#include_next "node/node.h"\n'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("import", {"core/x.c": '#import "node/node.h"\n'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("a computed name", {"core/x.c": '#define H "core/util/log.h"\n#include H\n'},
         "core/x.c:2: include of a computed name"),
        ("no newline at the end", {"core/x.c": '#include "node/node.h"'},
         "core/x.c:1: includes node/node.h, but " + up),
        ("a file without a C extension", {"core/x.def.in": '#include "node/node.h"\n'},
         "core/x.def.in:1: includes node/node.h, but " + up),
        ("a symlink into a higher layer", {"core/n.h": "->node/node.h"},
         "core/n.h: is a link to node/node.h"),
        ("a linked folder", {"core/dns": "->node/dns"}, "core/dns: is a linked folder"),
        ("proto uses the proxy runtime", {"proxy/proto/x.c": '#include "../internal.h"\n'},
         "proxy/proto/x.c:1: includes proxy/internal.h, but proto may not depend on proxy"),
        ("proto uses libevent", {"proxy/proto/x.c": "#include <event2/../event2/event.h>\n"},
         "proxy/proto/x.c:1: includes <event2/../event2/event.h>"),
        ("the relay codec uses libevent", {"core/relay/x.c": "#include <event2/event.h>\n"},
         "core/relay/x.c:1: includes <event2/event.h>: core/relay/ does no I/O"),
        ("the STUN codec uses libevent", {"core/stun/x.c": "#include <event2/util.h>\n"},
         "core/stun/x.c:1: includes <event2/util.h>: core/stun/ does no I/O"),
        ("proto uses a netstack header other than ns.h",
         {"proxy/proto/x.c": '#include "netstack/ns_priv.h"\n'},
         "proxy/proto/x.c:1: includes netstack/ns_priv.h, but proto may not depend"),
        ("a private header of proxy/ from node/",
         {"node/x.c": '#include "proxy/internal.h"\n'},
         "node/x.c:1: includes proxy/internal.h, which is private to proxy/"),
        ("a private header of node/ from cli/", {"cli/x.c": '#include "node/node_int.h"\n'},
         "cli/x.c:1: includes node/node_int.h, which is private to node/"),
        ("a private header of core/util/ from core/wg/",
         {"core/wg/x.c": '#include "core/util/u_int.h"\n'},
         "core/wg/x.c:1: includes core/util/u_int.h, which is private to core/util/"),
        ("a private netstack header from proxy/",
         {"proxy/x.c": '#include "netstack/ns_priv.h"\n'},
         "proxy/x.c:1: includes netstack/ns_priv.h, which is private to netstack/"),
    ]
    ok = True
    with tempfile.TemporaryDirectory(prefix="check-layout.") as tmp:
        tree = os.path.join(tmp, "t")
        plant(tree, CLEAN)
        c = Checker(tree, INCDIRS)
        c.check_includes()
        if c.problems:
            print("self-test: the clean tree was refused:\n  " + "\n  ".join(c.problems))
            ok = False
        extra_hdrs = {"cli/cli.h": "\n", "servers/control/s.h": "\n", "node/dns/d.h": "\n"}
        for what, files, phrase in cases:
            plant(tree, dict(CLEAN, **extra_hdrs, **files))
            c = Checker(tree, INCDIRS)
            c.check_includes()
            if not any(phrase in p for p in c.problems):
                print("self-test: missed: %s (want '%s', got %s)" % (what, phrase, c.problems))
                ok = False
        ok = self_test_objects(cc, tmp, tree) and ok
    print("check-layout: self-test %s (%d planted include violations, a clean tree, "
          "what the compiler read, symbols)" % ("ok" if ok else "FAILED", len(cases)))
    return ok


def self_test_objects(cc, tmp, tree):
    """The checks on a build: compile a few planted files as the Makefile
    does (-MMD) and look for exactly the violations planted."""
    plant(tree, dict(CLEAN, **{
        # the compiler reads node/node.h; the text scan sees a computed name
        "core/x.c": '#define H "node/node.h"\n#include H\nextern int node_fn(void);\n'
                    "int core_fn(void) { return node_fn(); }\n",
        "node/y.c": "int node_fn(void) { return 1; }\n",
        "node/z.c": "extern int core_fn(void);\nint node_g(void) { return core_fn(); }\n",
        "proxy/proto/p.c": "#include <stdlib.h>\n#include <string.h>\n"
                           "void *p_dup(const char *s) { void *p = malloc(4); "
                           "if (p) memcpy(p, s, 4); return p; }\n",
        "core/stun/s.c": "#include <stdio.h>\n"
                         "int s_log(const char *s) { return puts(s); }\n",
    }))
    objdir = os.path.join(tmp, "obj")
    objs = []
    for src in ("core/x.c", "node/y.c", "node/z.c", "proxy/proto/p.c", "core/stun/s.c"):
        obj = os.path.join(objdir, src[:-2] + ".o")
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        subprocess.run(shlex.split(cc) + ["-I", tree, "-MMD", "-c", src, "-o", obj],
                       cwd=tree, check=True)
        objs.append(obj)
    c = Checker(tree, INCDIRS)
    listed = c.objects(objdir, objs)
    c.check_depfiles(objdir, listed)
    c.check_symbols(objdir, listed, [])
    want = ["core/x.d: the compiler read node/node.h, but core may not depend on node",
            "core/x.o: uses node_fn, defined in node, but core may not depend on node",
            "proxy/proto/p.o: calls malloc: the codecs do no I/O and no allocation",
            "core/stun/s.o: calls puts: the codecs do no I/O and no allocation"]
    clean = ("node/y", "node/z")
    if any(w not in c.problems for w in want) or \
            any(p.startswith(clean) for p in c.problems):
        print("self-test: objects: want %s\n  got %s" % (want, c.problems))
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--incdir", action="append", default=[],
                    help="an -I folder, relative to the root (repeat)")
    ap.add_argument("--objdir", help="the build's object folder (BUILD/obj)")
    ap.add_argument("--lib", action="append", default=[],
                    help="an archive whose symbols belong to lwIP")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("objs", nargs="*", help="the objects the build links (under --objdir)")
    a = ap.parse_args()
    ok = True
    if a.self_test:
        ok = self_test(a.cc)
    c = Checker(a.root, a.incdir or ["."])
    c.check_includes()
    if a.objdir:
        listed = c.objects(a.objdir, a.objs)
        c.check_depfiles(a.objdir, listed)
        c.check_symbols(a.objdir, listed, a.lib)
    for p in c.problems:
        print(p)
    if c.problems:
        print("check-layout: FAILED: a lower layer depends on a higher one "
              "(DESIGN.md, Layout)")
        return 1
    print("check-layout: %s (core < config, netstack < proxy/proto < proxy < node < cli;"
          " servers on config, core)%s" % ("ok" if ok else "FAILED",
                                          "" if a.objdir else "; includes only"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
