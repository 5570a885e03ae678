"""A small HTTP server on loopback that the media tests download inputs from.

Routes (every request is logged, see hits()):
  GET /f/<name>                 a file registered with add(): its bytes and content type
  GET /redirect/<n>/<rest>      302 to /redirect/<n-1>/<rest> (absolute URL); at n = 0 it
                                serves /<rest> (so /redirect/2/f/a.png is 2 hops, 3 requests)
  GET /relredirect/<rest>       302 with a relative Location: /<rest>
  GET /to?url=U[&code=C]        a redirect (302 or C) to U, whatever U is
  GET /status/<code>            that status with a short text body
  GET /slow/<seconds>/<rest>    waits, then serves /<rest> (ends early when the server stops)
  GET /big/<bytes>              a PNG signature followed by zeros, with Content-Length
  GET /bigchunked/<bytes>       the same, chunked, without Content-Length
  GET /trickle/<seconds>        a PNG signature, then one byte a second (never finishes)

Use: srv = MediaServer().start(); url = srv.add("in.png", data, "image/png"); srv.stop().
host "::1" serves on IPv6 loopback.
"""
import http.server
import socket
import threading
import time
import urllib.parse

PNG_SIG = b"\x89PNG\r\n\x1a\n"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass    # a client that closes early (size limit, time-out) is expected here


class MediaServer:
    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self.port = port
        self.files = {}
        self.log = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None

    # -- setup ----------------------------------------------------------------
    def start(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                with owner.lock:
                    owner.log.append({"method": "GET", "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "time": time.monotonic()})
                try:
                    owner._route(self, self.path)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_HEAD = do_GET

        cls = _Server
        if ":" in self.host:
            cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self.httpd = cls((self.host, self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def base(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (h, self.port)

    def url(self, path):
        return self.base + path

    def add(self, name, data, ctype="application/octet-stream"):
        """Serve data at /f/<name>; returns its URL."""
        self.files[name] = (data, ctype)
        return self.url("/f/" + name)

    # -- log ------------------------------------------------------------------
    def hits(self, prefix=""):
        """Paths requested so far (those starting with prefix)."""
        with self.lock:
            return [e["path"] for e in self.log if e["path"].startswith(prefix)]

    def requests(self):
        with self.lock:
            return list(self.log)

    # -- routing ----------------------------------------------------------------
    def _send(self, h, status, body=b"", ctype="text/plain", headers=None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _redirect(self, h, location, code=302):
        self._send(h, code, b"redirect\n", headers={"Location": location})

    def _route(self, h, path):
        u = urllib.parse.urlsplit(path)
        parts = u.path.split("/")[1:]
        kind = parts[0] if parts else ""
        if kind == "f" and len(parts) >= 2:
            name = "/".join(parts[1:])
            if name not in self.files:
                return self._send(h, 404, b"not found\n")
            data, ctype = self.files[name]
            return self._send(h, 200, data, ctype)
        if kind == "redirect" and len(parts) >= 3 and parts[1].isdigit():
            n = int(parts[1])
            rest = "/".join(parts[2:])
            if u.query:
                rest += "?" + u.query
            if n <= 0:
                return self._route(h, "/" + rest)
            return self._redirect(h, self.url("/redirect/%d/%s" % (n - 1, rest)))
        if kind == "relredirect" and len(parts) >= 2:
            return self._redirect(h, "/" + "/".join(parts[1:]))
        if kind == "to":
            q = urllib.parse.parse_qs(u.query)
            return self._redirect(h, q["url"][0], int(q.get("code", ["302"])[0]))
        if kind == "status" and len(parts) >= 2:
            return self._send(h, int(parts[1]), b"status %s\n" % parts[1].encode())
        if kind == "slow" and len(parts) >= 3:
            self.stopping.wait(float(parts[1]))
            return self._route(h, "/" + "/".join(parts[2:]))
        if kind == "big" and len(parts) >= 2:
            n = int(parts[1])
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(n))
            h.end_headers()
            h.wfile.write(PNG_SIG)
            left = n - len(PNG_SIG)
            chunk = b"\0" * 65536
            while left > 0 and not self.stopping.is_set():
                k = min(left, len(chunk))
                h.wfile.write(chunk[:k])
                left -= k
            return None
        if kind == "bigchunked" and len(parts) >= 2:
            n = int(parts[1])
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            data_left = n
            first = True
            while data_left > 0 and not self.stopping.is_set():
                piece = PNG_SIG if first else b"\0" * min(65536, data_left)
                first = False
                piece = piece[:data_left]
                h.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                data_left -= len(piece)
            h.wfile.write(b"0\r\n\r\n")
            return None
        if kind == "trickle" and len(parts) >= 2:
            total = float(parts[1])
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", "1000000")
            h.end_headers()
            h.wfile.write(PNG_SIG)
            h.wfile.flush()
            t_end = time.monotonic() + total
            while time.monotonic() < t_end and not self.stopping.is_set():
                h.wfile.write(b"\0")
                h.wfile.flush()
                self.stopping.wait(1.0)
            return None
        return self._send(h, 404, b"no such route\n")
