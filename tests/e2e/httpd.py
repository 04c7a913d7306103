#!/usr/bin/env python3
"""Small HTTP server for the end-to-end tests and the demo.

GET  serves files from DIR (like python3 -m http.server).
GET /early-hints/PATH first sends "103 Early Hints", waits a second, then
serves PATH: an interim response a proxy must not let a client take for
the final one.
PUT or POST reads the body (Content-Length required) and answers with
"<sha256 hex> <byte count>\n", so a client can check an upload end to end.

usage: httpd.py BIND_ADDR PORT DIR
"""
import hashlib
import http.server
import os
import sys
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _upload(self):
        length = self.headers.get("Content-Length")
        if length is None:
            self.send_error(411, "Content-Length required")
            return
        left = int(length)
        h = hashlib.sha256()
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        body = ("%s %d\n" % (h.hexdigest(), int(length) - left)).encode()
        self.send_response(200 if left == 0 else 400)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = _upload
    do_POST = _upload

    def do_GET(self):
        if self.path.startswith("/early-hints/"):
            self.path = self.path[len("/early-hints"):]
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\n"
                             b"Link: <" + self.path.encode() + b">; rel=preload\r\n\r\n")
            self.wfile.flush()
            time.sleep(1.0)
        super().do_GET()

    def log_message(self, fmt, *args):
        sys.stderr.write("httpd: %s %s\n" % (self.address_string(), fmt % args))


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.chdir(root)
    server = http.server.ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    sys.stderr.write("httpd: serving %s on %s:%d\n" % (root, addr, port))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
