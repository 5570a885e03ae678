"""Webhook receiver and Standard Webhooks verifier for the integration tests
of comfy-sidecar's asynchronous features (test_async.py).

WebhookReceiver is a threaded HTTP server on 127.0.0.1 that records every
request (arrival time, method, path, query, headers, raw body) and answers
from a per-path plan:

    rx = WebhookReceiver(plans={"/retry": [500, 500, 200],
                                "/slow": ["hang", 200],
                                "/limit": [{"status": 429, "headers": {"Retry-After": "1"}}, 200]})
    url = rx.url("/retry", token="x")        # http://127.0.0.1:PORT/retry?token=x
    hits = rx.wait_for(3, path="/retry", timeout=10)

A plan entry is an int (status, empty JSON body), a dict {"status", "headers",
"body"}, or "hang" (read the request, never answer until close()). Once a
plan is used up, its last entry repeats; paths without a plan get 200.
Arrival is signalled with a threading.Condition: wait_for() returns as soon as
the n-th matching request is recorded, nothing sleeps for a fixed time.

verify_standard_webhook() runs test/node/verify-webhook.js, which verifies
with the `standardwebhooks` npm package (independent of the sidecar's HMAC
code). Missing node / node_modules raise AssertionError (a test failure, not
a skip): `npm ci --prefix test/node` installs them.
"""
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NODE_DIR = os.path.join(REPO, "test", "node")
VERIFY_JS = os.path.join(NODE_DIR, "verify-webhook.js")


class Hit:
    """One request the receiver got."""

    def __init__(self, t, method, raw_path, headers, body, answered):
        self.t = t                      # time.monotonic() when the body was read
        self.wall = time.time()
        self.method = method
        self.raw_path = raw_path
        parts = urllib.parse.urlsplit(raw_path)
        self.path = parts.path
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.headers = headers          # {lower-case name: value}
        self.body = body                # bytes
        self.answered = answered        # the plan entry used
        try:
            self.json = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def __repr__(self):
        return "<Hit %s %s %r answered=%r>" % (self.method, self.raw_path, self.body[:300],
                                               self.answered)


class WebhookReceiver:
    def __init__(self, plans=None, default=200):
        self.plans = {k: list(v) for k, v in (plans or {}).items()}
        self.default = default
        self.hits = []
        self.cond = threading.Condition()
        self.release = threading.Event()    # ends "hang" answers
        self._counts = {}
        rx = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):   # quiet
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._read_chunked()
                else:
                    body = self.rfile.read(n) if n else b""
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                entry = rx._next_entry(urllib.parse.urlsplit(self.path).path)
                hit = Hit(time.monotonic(), self.command, self.path, hdrs, body, entry)
                with rx.cond:
                    rx.hits.append(hit)
                    rx.cond.notify_all()
                if entry == "hang":
                    rx.release.wait(120)
                    self.close_connection = True
                    return
                if isinstance(entry, int):
                    entry = {"status": entry}
                status = entry.get("status", 200)
                out = entry.get("body")
                if out is None:
                    out = b'{"ok": true}' if status < 400 else b'{"error": "planned"}'
                elif isinstance(out, str):
                    out = out.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    for k, v in (entry.get("headers") or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

            def _read_chunked(self):
                data = b""
                while True:
                    line = self.rfile.readline()
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()

            do_POST = _handle
            do_PUT = _handle
            do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _next_entry(self, path):
        with self.cond:
            i = self._counts.get(path, 0)
            self._counts[path] = i + 1
            plan = self.plans.get(path)
            if not plan:
                return self.default
            return plan[min(i, len(plan) - 1)]

    def url(self, path="/hook", token=None, host="127.0.0.1"):
        u = "http://%s:%d%s" % (host, self.port, path)
        if token is not None:
            u += "?" + urllib.parse.urlencode({"token": token})
        return u

    def matching(self, path=None):
        with self.cond:
            return [h for h in self.hits if path is None or h.path == path]

    def wait_for(self, n, path=None, timeout=10.0):
        """Block until at least n requests (to path, if given) arrived; return them.
        AssertionError at the deadline, listing what did arrive."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [h for h in self.hits if path is None or h.path == path]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "webhook receiver: expected %d request(s)%s within %.1fs, got %d: %r"
                        % (n, " to %s" % path if path else "", timeout, len(got), got))
                self.cond.wait(left)

    def assert_no_more(self, n, path=None, window=1.0):
        """Fail if more than n requests (to path) arrive within the window. Used to
        show the absence of an extra delivery; returns at once when one arrives."""
        deadline = time.monotonic() + window
        with self.cond:
            while True:
                got = [h for h in self.hits if path is None or h.path == path]
                if len(got) > n:
                    raise AssertionError("webhook receiver: expected exactly %d request(s)%s, "
                                         "got %d: %r" % (n, " to %s" % path if path else "",
                                                         len(got), got))
                left = deadline - time.monotonic()
                if left <= 0:
                    return got
                self.cond.wait(left)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------ verification --

def verifier_problem():
    """None when node and the standardwebhooks package are usable, else why not."""
    if not shutil.which("node"):
        return "node (Node.js) is not on PATH; the webhook signature verifier needs it"
    if not os.path.exists(VERIFY_JS):
        return "%s is missing" % VERIFY_JS
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "standardwebhooks")):
        return ("%s/node_modules/standardwebhooks is missing: run `npm ci --prefix test/node` "
                "(the webhook signature tests need the standardwebhooks npm package)" % NODE_DIR)
    return None


def verify_standard_webhook(secret, headers, body):
    """(ok, message): does new Webhook(secret).verify(body, headers) succeed?
    headers: {name: value}; body: the raw bytes as received."""
    problem = verifier_problem()
    if problem:
        raise AssertionError(problem)
    want = ("webhook-id", "webhook-timestamp", "webhook-signature")
    hdrs = {k: v for k, v in headers.items() if k.lower() in want}
    import base64
    payload = json.dumps({"secret": secret, "headers": hdrs,
                          "body_base64": base64.b64encode(body).decode("ascii")})
    p = subprocess.run(["node", VERIFY_JS], input=payload.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    msg = (p.stdout + p.stderr).decode("utf-8", "replace").strip()
    if p.returncode not in (0, 1):
        raise AssertionError("verify-webhook.js exited %d: %s" % (p.returncode, msg))
    return p.returncode == 0, msg
