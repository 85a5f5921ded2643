#!/usr/bin/env python3
"""A tiny HTTP/1.1 file server on 127.0.0.1 for tests/test_pull.sh.

Serves files under ROOT with Range support (206 / 416), and two faults:
  /break/<path>    the first GET of each path sends the full Content-Length,
                   half of the body, then drops the connection; later GETs
                   behave normally (so a client must resume)
  /norange/<path>  ignores Range headers and always answers 200 with the whole file
Every request is logged to LOG as "METHOD PATH RANGE STATUS".

usage: http_server.py ROOT PORTFILE LOG   (writes the chosen port to PORTFILE)
"""
import os
import re
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

ROOT, PORTFILE, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
broken = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def log(self, status):
        with open(LOG, "a") as f:
            f.write("%s %s %s %d\n" % (self.command, self.path, self.headers.get("Range", "-"), status))

    def do_GET(self):
        path = self.path.split("?")[0]
        mode = None
        for m in ("/break/", "/norange/"):
            if path.startswith(m):
                mode, path = m.strip("/"), "/" + path[len(m):]
        full = os.path.normpath(os.path.join(ROOT, path.lstrip("/")))
        if not full.startswith(os.path.abspath(ROOT)) or not os.path.isfile(full):
            self.log(404)
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not found")
            return
        data = open(full, "rb").read()
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and mode != "norange":
            m = re.match(r"bytes=(\d+)-$", rng)
            if m:
                start = int(m.group(1))
                if start >= len(data):
                    self.log(416)
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % len(data))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        body = data[start:]
        self.log(status)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        if mode == "break" and self.path not in broken:
            broken.add(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


srv = Server(("127.0.0.1", 0), Handler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
