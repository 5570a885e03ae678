"""The asynchronous features of README.md (issue 4): webhook_v2 and legacy
webhooks (signatures, retries), GET /prompt/{id}, the event streams,
DELETE /prompt/{id} and POST /interrupt, cancel on client disconnect, and the
job history limits.

Most tests share one supervised sidecar (AsyncTests); configurations that
change behaviour for everything get an instance of their own. Waits poll a
condition against a deadline; webhook arrivals are signalled by the receiver
(webhooks.py). Signatures are verified by the standardwebhooks npm package
(test/node/verify-webhook.js), installed with `npm ci --prefix test/node`.

A "blocker" is a 2000-step sampler (40 s at --step-time 0.02) that keeps
ComfyUI busy so that the jobs submitted after it stay queued; it is ended by
interrupting it in the emulator directly (not through the sidecar)."""
import base64
import concurrent.futures
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import time
import uuid

import graphs
import harness
import webhooks
from harness import SidecarTestCase, decode_image, poll

SECRET_KEY = os.urandom(32)
SECRET_B64 = base64.b64encode(SECRET_KEY).decode("ascii")
SECRET_WHSEC = "whsec_" + SECRET_B64
URL_TOKEN = "SECRET123"
STEP_TIME = 0.02
BLOCKER_STEPS = 2000
BACKOFF_S = 0.2     # WEBHOOK_BACKOFF_MS: retries after ~0.2 s, then ~0.4 s (+-20 %)

NEW_VARS = ("WEBHOOK_SECRET", "PROMPT_WEBHOOK_RETRIES", "WEBHOOK_TIMEOUT_S",
            "WEBHOOK_MAX_TOTAL_S", "WEBHOOK_BACKOFF_MS", "JOB_HISTORY_MAX", "JOB_HISTORY_TTL_S",
            "CANCEL_ON_DISCONNECT", "SSE_HEARTBEAT_S")

ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
FINAL_EVENTS = ("completed", "failed", "cancelled")

BASE_ENV = {
    "READ_OUTPUT_DIR": "false",  # some tests cancel while /view is in flight
    "WEBHOOK_SECRET": SECRET_WHSEC,
    "PROMPT_WEBHOOK_RETRIES": "3",
    "WEBHOOK_TIMEOUT_S": "1",
    "WEBHOOK_MAX_TOTAL_S": "20",
    "WEBHOOK_BACKOFF_MS": str(int(BACKOFF_S * 1000)),
    "JOB_HISTORY_MAX": "1000",
    "JOB_HISTORY_TTL_S": "3600",
    "CANCEL_ON_DISCONNECT": "true",
    "SSE_HEARTBEAT_S": "1",
}

_seed = [random.randrange(1, 1 << 30)]


def seed():
    """A fresh seed, so that the emulator never serves a sampler from its cache."""
    _seed[0] += 1
    return _seed[0]


def new_id(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class AsyncSidecar(harness.Sidecar):
    """harness.Sidecar that also keeps the issue-4 variables of the developer's
    shell out of the sidecar's environment."""

    def sidecar_env(self):
        env = super().sidecar_env()
        for k in NEW_VARS:
            if k not in self.extra_env:
                env.pop(k, None)
        return env


# ------------------------------------------------------------------ SSE ----

class SSEStream:
    """A minimal HTTP/1.1 + Server-Sent Events client on a raw socket: handles
    chunked and identity bodies, parses event:/data:/id: fields and comments as
    the WHATWG spec says, and yields each item as it arrives."""

    def __init__(self, port, path, method="GET", body=None, headers=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        hdrs = {"Host": "127.0.0.1:%d" % port, "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
            hdrs["Content-Length"] = str(len(data))
        head = "%s %s HTTP/1.1\r\n" % (method, path)
        head += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.sock.sendall(head.encode() + data)
        self.t0 = time.monotonic()
        self.raw = b""
        self.text = b""          # decoded body not yet parsed into lines
        self.body_all = b""      # every decoded body byte
        self.done = False        # the body is complete (or the connection closed)
        self.items = []
        self._ev = {"event": "", "data": [], "id": None}
        self._chunk_left = None
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            if not self._recv_raw(deadline):
                raise AssertionError("connection closed before the response headers: %r"
                                     % self.raw[:300])
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        cl = self.headers.get("content-length")
        self.length_left = int(cl) if cl is not None and not self.chunked else None
        self._decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_raw(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("event stream: timed out waiting for data")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise AssertionError("event stream: timed out waiting for data")
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.raw += data
        return True

    def _emit(self, b):
        self.text += b
        self.body_all += b

    def _decode(self):
        if self.chunked:
            while True:
                if self._chunk_left is None:
                    if b"\r\n" not in self.raw:
                        return
                    line, self.raw = self.raw.split(b"\r\n", 1)
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.done = True
                        return
                    self._chunk_left = size
                take = self.raw[:self._chunk_left]
                self._emit(take)
                self.raw = self.raw[len(take):]
                self._chunk_left -= len(take)
                if self._chunk_left:
                    return
                if len(self.raw) < 2:
                    self._chunk_left = 0
                    return
                self.raw = self.raw[2:]      # CRLF after the chunk
                self._chunk_left = None
        elif self.length_left is not None:
            take = self.raw[:self.length_left]
            self._emit(take)
            self.raw = self.raw[len(take):]
            self.length_left -= len(take)
            if self.length_left == 0:
                self.done = True
        else:
            self._emit(self.raw)
            self.raw = b""

    def _fix_pending_crlf(self):
        # a chunk's trailing CRLF may have been split across reads
        if self.chunked and self._chunk_left == 0 and len(self.raw) >= 2:
            self.raw = self.raw[2:]
            self._chunk_left = None

    def _line(self):
        for i, c in enumerate(self.text):
            if c == 0x0A or c == 0x0D:
                if c == 0x0D and i + 1 == len(self.text) and not self.done:
                    return None              # maybe \r\n split across reads
                line = self.text[:i]
                j = i + 1
                if c == 0x0D and j < len(self.text) and self.text[j] == 0x0A:
                    j += 1
                self.text = self.text[j:]
                return line.decode("utf-8")
        return None

    def _parse(self):
        while True:
            line = self._line()
            if line is None:
                return None
            if line == "":
                ev = self._ev
                self._ev = {"event": "", "data": [], "id": ev["id"]}
                if ev["data"]:
                    data = "\n".join(ev["data"])
                    try:
                        js = json.loads(data)
                    except ValueError:
                        js = None
                    return {"kind": "event", "event": ev["event"] or "message", "data": data,
                            "json": js, "id": ev["id"], "t": time.monotonic()}
                continue
            if line.startswith(":"):
                return {"kind": "comment", "text": line[1:].strip(), "t": time.monotonic()}
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "event":
                self._ev["event"] = value
            elif name == "data":
                self._ev["data"].append(value)
            elif name == "id":
                self._ev["id"] = value

    def next_item(self, timeout):
        """The next event or comment, None when the stream has ended. AssertionError
        when nothing arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            item = self._parse()
            if item is not None:
                self.items.append(item)
                return item
            if self.done:
                return None
            if not self._recv_raw(deadline):
                self.done = True
                continue
            self._fix_pending_crlf()
            self._decode()

    def next_event(self, timeout):
        """The next event (comments are recorded in self.items and skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.next_item(max(0.01, deadline - time.monotonic()))
            if item is None or item["kind"] == "event":
                return item

    def read_to_end(self, timeout):
        """Every remaining item until the stream ends; AssertionError if it does not
        end in time."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            try:
                item = self.next_item(max(0.01, deadline - time.monotonic()))
            except AssertionError:
                raise AssertionError("event stream did not end within %.1fs; got %r"
                                     % (timeout, [summ(i) for i in self.items]))
            if item is None:
                return out
            out.append(item)

    def body_json(self, timeout=10):
        """For a non-stream answer: the whole body as JSON."""
        deadline = time.monotonic() + timeout
        while not self.done:
            if not self._recv_raw(deadline):
                break
            self._fix_pending_crlf()
            self._decode()
        try:
            return json.loads(self.body_all.decode("utf-8"))
        except ValueError:
            return None

    def events(self):
        return [i for i in self.items if i["kind"] == "event"]


def summ(item):
    if item["kind"] == "comment":
        return ":" + item["text"]
    js = item.get("json")
    if isinstance(js, dict):
        js = {k: (v if k not in ("images", "prompt", "stats") else "...") for k, v in js.items()}
    return (item["event"], js if js is not None else item["data"][:200])


# ------------------------------------------------------------------ base ---

class AsyncCase(SidecarTestCase):
    sc = None

    # -- per-test executor, cleaned up --------------------------------------
    def pool(self):
        if not hasattr(self, "_pool") or self._pool_owner is not self._testMethodName:
            self._pool = concurrent.futures.ThreadPoolExecutor(8)
            self._pool_owner = self._testMethodName
            self.addCleanup(self._pool.shutdown, True)
            self.addCleanup(self.drain_emulator)     # runs before the pool shutdown
        return self._pool

    def start_sync(self, body, timeout=40, sc=None):
        sc = sc or self.sc
        return self.pool().submit(sc.post_prompt, body, timeout)

    def receiver(self, plans=None, default=200):
        rx = webhooks.WebhookReceiver(plans=plans, default=default)
        self.addCleanup(rx.close)
        return rx

    def drain_emulator(self, sc=None):
        """End whatever ComfyUI still runs or queues (after a failed test)."""
        sc = sc or self.sc
        if sc is None or sc.stopped:
            return
        try:
            st = sc.emu_state()
            if st.get("running") or st.get("pending"):
                sc.emu_reset()
                sc.emu("POST", "/queue", {"clear": True})
                sc.emu("POST", "/interrupt", {})
                poll(lambda: (lambda s: not s.get("running") and not s.get("pending"))(
                    sc.emu_state()), 10, what="the emulator to go idle")
        except Exception:
            pass

    # -- emulator observations ----------------------------------------------
    def find_pid(self, rid, sc=None, timeout=10):
        """ComfyUI's prompt_id of the job whose rewritten filename_prefix holds rid."""
        sc = sc or self.sc

        def look():
            for rec in sc.emu_prompts():
                body = rec.get("body") or {}
                for node in (body.get("prompt") or {}).values():
                    p = (node.get("inputs") or {}).get("filename_prefix") if isinstance(node, dict) else None
                    if isinstance(p, str) and (p.startswith(rid + "_") or ("/" + rid + "_") in p
                                               or p == rid):
                        return rec.get("prompt_id")
            return None
        return poll(look, timeout, what="ComfyUI to receive job %s" % rid)

    def emu_prompt_count(self, rid, sc=None):
        sc = sc or self.sc
        n = 0
        for rec in sc.emu_prompts():
            body = rec.get("body") or {}
            for node in (body.get("prompt") or {}).values():
                p = (node.get("inputs") or {}).get("filename_prefix") if isinstance(node, dict) else None
                if isinstance(p, str) and rid in p:
                    n += 1
                    break
        return n

    def wait_running(self, pid, sc=None, timeout=10):
        sc = sc or self.sc
        poll(lambda: sc.emu_state().get("running") == pid, timeout,
             what="prompt %s to run in the emulator" % pid)

    def wait_pending(self, pid, sc=None, timeout=10):
        sc = sc or self.sc
        poll(lambda: pid in (sc.emu_state().get("pending") or []), timeout,
             what="prompt %s to be queued in the emulator" % pid)

    def interrupt_requests(self, pid, sc=None):
        sc = sc or self.sc
        return [q for q in sc.emu_requests()
                if q["method"] == "POST" and q["path"] in ("/interrupt", "/api/interrupt")
                and isinstance(q.get("body"), dict) and q["body"].get("prompt_id") == pid]

    def queue_delete_requests(self, pid, sc=None):
        sc = sc or self.sc
        return [q for q in sc.emu_requests()
                if q["method"] == "POST" and q["path"] in ("/queue", "/api/queue")
                and isinstance(q.get("body"), dict)
                and pid in (q["body"].get("delete") or [])]

    def output_files(self, rid, sc=None):
        sc = sc or self.sc
        out = []
        for root, _, files in os.walk(os.path.join(sc.dir, "output")):
            out += [os.path.join(root, f) for f in files if rid in f]
        return out

    # -- sidecar job status -------------------------------------------------
    def status(self, rid, sc=None, query=""):
        sc = sc or self.sc
        return sc.get("/prompt/%s%s" % (rid, query))

    def wait_status(self, rid, statuses, sc=None, timeout=10, pred=None):
        statuses = (statuses,) if isinstance(statuses, str) else statuses
        last = [None]

        def check():
            r = self.status(rid, sc)
            last[0] = r
            if r.status == 200 and isinstance(r.json, dict) and r.json.get("status") in statuses \
                    and (pred is None or pred(r.json)):
                return r
            return None
        try:
            return poll(check, timeout, what="GET /prompt/%s status in %r" % (rid, statuses))
        except AssertionError as e:
            raise AssertionError("%s; last answer %r" % (e, last[0]))

    def wait_webhook_state(self, rid, state, sc=None, timeout=10):
        return self.wait_status(rid, ("completed", "failed", "cancelled"), sc, timeout,
                                pred=lambda j: isinstance(j.get("webhook"), dict)
                                and j["webhook"].get("state") == state).json

    # -- the blocker --------------------------------------------------------
    @contextlib.contextmanager
    def blocker(self, sc=None):
        """A long job that occupies ComfyUI; yields (rid, pid, future)."""
        sc = sc or self.sc
        rid = new_id("blocker")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            32, 32, seed=seed(), steps=BLOCKER_STEPS, prefix="blk")}, sc=sc, timeout=60)
        pid = self.find_pid(rid, sc)
        try:
            self.wait_running(pid, sc)
            yield rid, pid, fut
        finally:
            sc.emu("POST", "/interrupt", {"prompt_id": pid})
            try:
                fut.result(20)
            except Exception:
                pass

    # -- webhook checks -----------------------------------------------------
    def assert_signed(self, hit, secrets=(SECRET_WHSEC, SECRET_B64), rid=None):
        h = hit.headers
        for k in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            self.assertIn(k, h, "webhook without the %s header: %r" % (k, h))
        if rid is not None:
            self.assertEqual(h["webhook-id"], rid, "webhook-id is not the job's id")
        self.assertRegex(h["webhook-timestamp"], r"^\d+$")
        self.assertLess(abs(int(h["webhook-timestamp"]) - hit.wall), 10,
                        "webhook-timestamp %s is not now (%d)" % (h["webhook-timestamp"], hit.wall))
        self.assertRegex(h["webhook-signature"], r"^v1,[A-Za-z0-9+/]+={0,2}( |$)")
        self.assertIn("application/json", h.get("content-type", ""))
        for s in secrets:
            ok, msg = webhooks.verify_standard_webhook(s, h, hit.body)
            self.assertTrue(ok, "standardwebhooks (secret form %s...) rejects the delivery: %s"
                            % (s[:8], msg))
        # and the verifier does reject a body that was not signed
        ok, _ = webhooks.verify_standard_webhook(secrets[0], h, hit.body + b" ")
        self.assertFalse(ok, "the verifier accepted a tampered body")

    def assert_no_secret(self, what, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for s in (URL_TOKEN, SECRET_B64, SECRET_WHSEC):
            self.assertNotIn(s, text, "a secret (%s...) appears in %s" % (s[:8], what))

    def assert_images(self, images, sizes, where):
        self.assertIsInstance(images, list, where)
        self.assertEqual(len(images), len(sizes), where)
        got = []
        raws = []
        for s in images:
            raw, size = decode_image(self, s)
            got.append(size)
            raws.append(raw)
        self.assertEqual(got, [tuple(x) for x in sizes], where)
        return raws

    def assert_job_ok_body(self, body, rid, pfx, sizes, where):
        """A completed job's data (webhook, SSE completed, status): filenames and stats."""
        self.assertEqual(body.get("id"), rid, where)
        fns = body.get("filenames")
        self.assertIsInstance(fns, list, where)
        self.assertEqual(len(fns), len(sizes), "%s: filenames %r" % (where, fns))
        for fn in fns:
            self.assertRegex(fn, r"^%s_%s_\d{5}_\.png$" % (re.escape(rid), pfx), where)
        stats = body.get("stats")
        self.assertIsInstance(stats, dict, where)
        self.assertTrue(is_number(stats.get("total_time")), "%s: stats %r" % (where, stats))
        self.assertIsInstance(stats.get("comfy_execution"), dict, "%s: stats %r" % (where, stats))


    def check_stream(self, items, rid, final, where, previews=False):
        """Order and shape of the events of one job's stream."""
        evs = [i for i in items if i["kind"] == "event"]
        names = [e["event"] for e in evs]
        self.assertTrue(evs, "%s: no event" % where)
        for e in evs:
            self.assertIsInstance(e["json"], dict, "%s: data is not a JSON object: %r"
                                  % (where, e["data"][:200]))
            self.assertEqual(e["json"].get("id"), rid, "%s: %r" % (where, summ(e)))
        self.assertEqual(names[-1], final, "%s: %r" % (where, [summ(e) for e in evs]))
        self.assertEqual(sum(n in FINAL_EVENTS for n in names), 1, "%s: %r" % (where, names))
        allowed = {"queued", "started", "progress"} | {final}
        if previews:
            allowed.add("preview")
        self.assertTrue(set(names) <= allowed, "%s: unexpected events %r" % (where, names))
        if "queued" in names:
            self.assertEqual(names.index("queued"), 0, "%s: queued not first: %r" % (where, names))
            for e in evs:
                if e["event"] == "queued":
                    self.assertTrue(is_number(e["json"].get("position")), summ(e))
        if "started" in names:
            self.assertEqual(names.count("started"), 1, "%s: %r" % (where, names))
            for n in ("progress",):
                if n in names:
                    self.assertLess(names.index("started"), names.index(n),
                                    "%s: progress before started: %r" % (where, names))
        last = {}
        last_overall = -1
        for e in evs:
            if e["event"] != "progress":
                continue
            d = e["json"]
            for k in ("node", "value", "max", "overall"):
                self.assertIn(k, d, "%s: progress without %s: %r" % (where, k, d))
            self.assertLessEqual(d["value"], d["max"], d)
            self.assertTrue(0 <= d["overall"] <= 1, d)
            self.assertGreaterEqual(d["value"], last.get(str(d["node"]), -1),
                                    "%s: progress of node %s goes back: %r" % (where, d["node"], d))
            self.assertGreaterEqual(d["overall"] + 1e-9, last_overall,
                                    "%s: overall goes back: %r" % (where, d))
            last[str(d["node"])] = d["value"]
            last_overall = d["overall"]
        return evs

    def open_events(self, rid, query=""):
        s = SSEStream(self.sc.port, "/prompt/%s/events%s" % (rid, query))
        self.addCleanup(s.close)
        return s


# ============================================================ shared instance

class AsyncTests(harness.SharedSidecarMixin, AsyncCase):

    @classmethod
    def make_sidecar(cls):
        return AsyncSidecar("async", emu_args=["--step-time", str(STEP_TIME)],
                            env=dict(BASE_ENV, COMFY_TIMEOUT_S="5"))

    def setUp(self):
        if self.sc.proc.poll() is not None:
            self.fail("the shared sidecar has exited (status %s)" % self.sc.proc.returncode)
        self.drain_emulator()
        super().setUp()

    # ---------------------------------------------------------- webhook_v2 ---
    def test_v2_success_signed_no_secret_leak(self):
        rx = self.receiver()
        rid = new_id("v2ok")
        graph = graphs.ksampler(72, 40, seed=seed(), steps=3, prefix="ks")
        url = rx.url("/v2", token=URL_TOKEN)
        r = self.sc.post_prompt({"id": rid, "prompt": graph, "webhook_v2": url})
        self.assertEqual(r.status, 202, r)
        expected_prompt = graphs.with_prefix(graph, {"9": "%s_ks" % rid})
        self.assertEqual(r.json.get("id"), rid, r)
        self.assertEqual(r.json.get("status"), "ok", r)
        self.assertEqual(r.json.get("prompt"), expected_prompt, r)
        self.assert_no_secret("the 202 answer", r.data)
        # 202 "as soon as ComfyUI has accepted the graph": it has it already
        self.assertEqual(self.emu_prompt_count(rid), 1, "ComfyUI did not have the job at the 202")

        hit = rx.wait_for(1, timeout=15)[0]
        self.assertEqual(hit.method, "POST")
        self.assertEqual(hit.path, "/v2")
        self.assertEqual(hit.query.get("token"), URL_TOKEN, "the webhook URL's query was not kept")
        self.assert_signed(hit, rid=rid)
        b = hit.json
        self.assertIsInstance(b, dict, hit)
        self.assertEqual(b.get("type"), "prompt.complete", b.get("type"))
        self.assertRegex(str(b.get("timestamp")), ISO_RE)
        self.assertEqual(b.get("prompt"), expected_prompt)
        self.assert_job_ok_body(b, rid, "ks", [(72, 40)], "webhook body")
        raws = self.assert_images(b.get("images"), [(72, 40)], "webhook images")
        self.assert_no_secret("the webhook body", hit.body)
        # the bytes are ComfyUI's file
        fn = b["filenames"][0]
        self.assertEqual(raws[0], self.sc.emu("GET", "/view?filename=%s&type=output" % fn).data)

        # exactly one delivery; the status shows it
        st = self.wait_webhook_state(rid, "delivered")
        self.assertEqual(st["status"], "completed", st)
        self.assertEqual(st["webhook"].get("kind"), "v2", st)
        self.assertEqual(st["webhook"].get("attempts"), 1, st)
        self.assert_no_secret("GET /prompt/{id}", json.dumps(st))
        rx.assert_no_more(1, window=0.5)
        self.assert_no_secret("the sidecar log", self.sc.log_text())

    def test_v2_runtime_error_prompt_failed(self):
        rx = self.receiver()
        rid = new_id("v2fail")
        msg = "emulated boom %s" % uuid.uuid4().hex[:6]
        self.sc.emu_fault(mode="runtime_error", node="3", message=msg, exception_type="RuntimeError")
        graph = graphs.ksampler(32, 32, seed=seed(), steps=3, prefix="vf")
        r = self.sc.post_prompt({"id": rid, "prompt": graph, "webhook_v2": rx.url("/v2f")})
        self.assertEqual(r.status, 202, r)
        hit = rx.wait_for(1, timeout=15)[0]
        self.assert_signed(hit, rid=rid)
        b = hit.json
        self.assertEqual(b.get("type"), "prompt.failed", b)
        self.assertEqual(b.get("id"), rid, b)
        self.assertRegex(str(b.get("timestamp")), ISO_RE)
        self.assertEqual(b.get("prompt"), graphs.with_prefix(graph, {"9": "%s_vf" % rid}))
        self.assertIsInstance(b.get("error"), str, b)
        self.assertIn(msg, b["error"], "ComfyUI's exception text is not in the error")
        self.assertEqual(b.get("http_status"), 500, b)
        self.assertNotIn("images", b, "a failed webhook carries images")
        self.assertIsInstance(b.get("details"), dict, "prompt.failed without details: %r" % b)
        st = self.wait_webhook_state(rid, "delivered")
        self.assertEqual(st["status"], "failed", st)
        rx.assert_no_more(1, window=0.5)

    def test_v2_validation_error_is_synchronous(self):
        rx = self.receiver()
        for field in ("webhook_v2", "webhook"):
            with self.soft(field):
                rid = new_id("v2val")
                graph = graphs.ksampler(32, 32, seed=seed(), steps=2, prefix="vv",
                                        ckpt="does-not-exist.safetensors")
                r = self.sc.post_prompt({"id": rid, "prompt": graph, field: rx.url("/val")})
                j = self.assertError(r, 400, location="prompt.4.inputs.ckpt_name")
                self.assertEqual(j.get("error_type"), "prompt_outputs_failed_validation", j)
        rx.assert_no_more(0, window=0.7)

    # --------------------------------------------------------- legacy -------
    def test_legacy_webhook_one_post_per_image(self):
        rx = self.receiver()
        rid = new_id("legacy")
        graph = graphs.multi_save([("2", 20, 10, "la"), ("9", 30, 12, "lb")])
        r = self.sc.post_prompt({"id": rid, "prompt": graph, "webhook": rx.url("/v1")})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json.get("id"), rid, r)
        self.assertEqual(r.json.get("status"), "ok", r)
        hits = rx.wait_for(2, timeout=15)
        sizes = set()
        names = set()
        for hit in hits:
            b = hit.json
            self.assertIsInstance(b, dict, hit)
            self.assertEqual(b.get("event"), "output.complete", b)
            self.assertEqual(b.get("id"), rid, b)
            self.assertIsInstance(b.get("filename"), str, b)
            self.assertRegex(b["filename"], r"^%s_(la|lb)_\d{5}_\.png$" % re.escape(rid))
            _, size = decode_image(self, b.get("image"))
            sizes.add(size)
            names.add(b["filename"])
            self.assertIsInstance(b.get("prompt"), dict, b)
            self.assertIsInstance(b.get("stats"), dict, b)
            self.assertNotIn("webhook-signature", hit.headers, "the legacy webhook is signed")
        self.assertEqual(sizes, {(20, 10), (30, 12)})
        self.assertEqual(len(names), 2, names)
        rx.assert_no_more(2, window=0.5)

    def test_legacy_webhook_failure(self):
        rx = self.receiver()
        rid = new_id("legfail")
        msg = "legacy boom %s" % uuid.uuid4().hex[:6]
        self.sc.emu_fault(mode="runtime_error", node="3", message=msg)
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.ksampler(32, 32, seed=seed(), steps=2,
                                                                      prefix="lf"),
                                 "webhook": rx.url("/v1f")})
        self.assertEqual(r.status, 202, r)
        b = rx.wait_for(1, timeout=15)[0].json
        self.assertEqual(b.get("event"), "prompt.failed", b)
        self.assertEqual(b.get("id"), rid, b)
        self.assertIsInstance(b.get("prompt"), dict, b)
        self.assertIsInstance(b.get("error"), str, b)
        self.assertIn(msg, b["error"])
        rx.assert_no_more(1, window=0.5)

    def test_webhook_url_schemes_refused(self):
        before = len(self.sc.emu_prompts())
        for field in ("webhook_v2", "webhook"):
            for bad in ("ftp://x", "not a url", "file:///etc/passwd", "", 42, ["http://a/"]):
                with self.soft(repr((field, bad))):
                    r = self.sc.post_prompt({"prompt": graphs.empty_image(8, 8), field: bad})
                    self.assertError(r, 400, location=field)
        with self.soft("ComfyUI untouched"):
            self.assertEqual(len(self.sc.emu_prompts()), before, "a refused request reached ComfyUI")

    def test_https_url_accepted(self):
        port = harness.free_port()      # nothing listens: the delivery fails, the URL is fine
        rid = new_id("https")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(8, 8, prefix="hs"),
                                 "webhook_v2": "https://127.0.0.1:%d/x" % port})
        self.assertEqual(r.status, 202, r)
        st = self.wait_webhook_state(rid, "failed", timeout=15)
        self.assertEqual(st["webhook"].get("attempts"), 3, st)

    def test_url_userinfo_never_shown(self):
        # A password in the webhook URL is a secret too: it must not show in
        # the log, the status or the webhook. Refusing such a URL is fine.
        rx = self.receiver()
        rid = new_id("uinfo")
        url = "http://hookuser:PASSWD999@127.0.0.1:%d/ui" % rx.port
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(8, 8, prefix="ui"),
                                 "webhook_v2": url})
        if r.status == 400:
            self.assertError(r, 400, location="webhook_v2")
            return
        self.assertEqual(r.status, 202, r)
        self.assertNotIn("PASSWD999", r.data.decode())
        hit = rx.wait_for(1, timeout=15)[0]
        self.assertNotIn(b"PASSWD999", hit.body)
        st = self.wait_webhook_state(rid, "delivered")
        self.assertNotIn("PASSWD999", json.dumps(st))
        self.assertNotIn("PASSWD999", self.sc.log_text(), "the URL's password is in the log")

    def test_v2_many_concurrent(self):
        rx = self.receiver()
        jobs = {new_id("many%02d" % i): (8 + i, 5 + (i * 3) % 17) for i in range(24)}

        def one(item):
            rid, (w, h) = item
            return rid, self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(
                w, h, color=w * 977, prefix="m"), "webhook_v2": rx.url("/many")}, timeout=30)
        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            answers = list(ex.map(one, jobs.items()))
        bad = [(rid, r.status) for rid, r in answers if r.status != 202]
        self.assertEqual(bad, [])
        hits = rx.wait_for(len(jobs), path="/many", timeout=20)
        by_id = {}
        for hit in hits:
            rid = hit.headers.get("webhook-id")
            self.assertIn(rid, jobs, hit)
            self.assertNotIn(rid, by_id, "two webhooks for %s" % rid)
            by_id[rid] = hit
            self.assertEqual(hit.json.get("id"), rid, "webhook-id and body id differ")
            self.assertEqual(hit.json.get("type"), "prompt.complete", hit)
            self.assert_images(hit.json.get("images"), [jobs[rid]], "images of %s" % rid)
        self.assert_signed(hits[0], secrets=(SECRET_WHSEC,))
        rx.assert_no_more(len(jobs), path="/many", window=0.5)

    # --------------------------------------------------------- retries ------
    def test_retry_5xx_backoff_grows(self):
        rx = self.receiver(plans={"/r": [503, 408, 200]})
        rid = new_id("retry")
        url = rx.url("/r", token=URL_TOKEN)
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 16, prefix="rt"),
                                 "webhook_v2": url})
        self.assertEqual(r.status, 202, r)
        hits = rx.wait_for(3, timeout=15)
        for h in hits:
            self.assert_signed(h, secrets=(SECRET_WHSEC,), rid=rid)
        gap1, gap2 = hits[1].t - hits[0].t, hits[2].t - hits[1].t
        # Jitter is ±20 %; the receiver times arrivals, a few ms off the
        # sidecar's own timer, hence the small slack below 0.8.
        self.assertGreaterEqual(gap1, BACKOFF_S * 0.75, "first retry after %.3fs < backoff" % gap1)
        self.assertGreaterEqual(gap2, 2 * BACKOFF_S * 0.75, "second retry after %.3fs < twice the "
                                "backoff" % gap2)
        self.assertGreater(gap2, gap1, "backoff does not grow: gaps %.3f, %.3f" % (gap1, gap2))
        self.assertLess(gap2, 2.0, "second retry came late: %.3f" % gap2)
        st = self.wait_webhook_state(rid, "delivered")
        self.assertEqual(st["webhook"].get("attempts"), 3, st)
        self.assertEqual(st["webhook"].get("last_status"), 200, st)
        rx.assert_no_more(3, window=0.5)
        log = self.sc.log_text()
        where = "127.0.0.1:%d/r" % rx.port
        lines = [l for l in log.splitlines() if where in l]
        self.assertGreaterEqual(len(lines), 3, "not every attempt is logged with its URL (%s)"
                                % where)
        self.assert_no_secret("the sidecar log", log)

    def test_legacy_webhook_retried(self):
        rx = self.receiver(plans={"/l5": [502, 200]})
        rid = new_id("legretry")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(10, 10, prefix="lr"),
                                 "webhook": rx.url("/l5")})
        self.assertEqual(r.status, 202, r)
        hits = rx.wait_for(2, timeout=10)
        self.assertEqual(hits[0].body, hits[1].body, "the retry sent another body")
        self.assertEqual(hits[1].json.get("event"), "output.complete")
        rx.assert_no_more(2, window=0.5)

    def test_no_retry_on_400(self):
        rx = self.receiver(plans={"/bad": [400, 200]})
        rid = new_id("r400")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 16, prefix="r4"),
                                 "webhook_v2": rx.url("/bad")})
        self.assertEqual(r.status, 202, r)
        rx.wait_for(1, timeout=15)
        st = self.wait_webhook_state(rid, "failed")
        self.assertEqual(st["webhook"].get("attempts"), 1, st)
        self.assertEqual(st["webhook"].get("last_status"), 400, st)
        self.assertEqual(st["status"], "completed", "the job itself succeeded: %r" % st)
        rx.assert_no_more(1, window=0.6)

    def test_429_retry_after_honoured(self):
        rx = self.receiver(plans={"/lim": [{"status": 429, "headers": {"Retry-After": "1"}}, 200]})
        rid = new_id("r429")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 16, prefix="r9"),
                                 "webhook_v2": rx.url("/lim")})
        self.assertEqual(r.status, 202, r)
        rx.wait_for(1, timeout=15)
        # waiting for the retry: the status says so (a 1 s window)
        j = self.wait_status(rid, "completed", timeout=0.9,
                             pred=lambda j: (j.get("webhook") or {}).get("state") == "retrying").json
        self.assertEqual(j["webhook"].get("last_status"), 429, j)
        hits = rx.wait_for(2, timeout=15)
        gap = hits[1].t - hits[0].t
        self.assertGreaterEqual(gap, 0.9, "Retry-After: 1 not honoured: retried after %.3fs" % gap)
        self.assertLess(gap, 3.0, "retried after %.3fs" % gap)
        st = self.wait_webhook_state(rid, "delivered")
        self.assertEqual(st["webhook"].get("attempts"), 2, st)

    def test_429_retry_after_http_date(self):
        # RFC 9110 10.2.3: Retry-After is delay-seconds or an HTTP-date
        import email.utils
        when = email.utils.formatdate(time.time() + 2.5, usegmt=True)
        rx = self.receiver(plans={"/limd": [{"status": 429, "headers": {"Retry-After": when}}, 200]})
        rid = new_id("r429d")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 16, prefix="rd"),
                                 "webhook_v2": rx.url("/limd")})
        self.assertEqual(r.status, 202, r)
        hits = rx.wait_for(2, timeout=15)
        gap = hits[1].t - hits[0].t
        self.assertGreaterEqual(gap, 1.4, "Retry-After: %s (about 2.5 s ahead) not honoured: "
                                "retried after %.3fs" % (when, gap))
        self.wait_webhook_state(rid, "delivered")

    def test_hanging_receiver_times_out_and_retries(self):
        rx = self.receiver(plans={"/hang": ["hang", 200]})
        rid = new_id("rhang")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 16, prefix="rh"),
                                 "webhook_v2": rx.url("/hang")})
        self.assertEqual(r.status, 202, r)
        rx.wait_for(1, timeout=10)
        # the first attempt hangs for WEBHOOK_TIMEOUT_S=1: the status says "delivering"
        self.wait_status(rid, "completed", timeout=0.8,
                         pred=lambda j: (j.get("webhook") or {}).get("state") == "delivering")
        hits = rx.wait_for(2, timeout=10)
        gap = hits[1].t - hits[0].t
        self.assertGreaterEqual(gap, 0.9, "the hung attempt was abandoned after %.3fs, before "
                                          "WEBHOOK_TIMEOUT_S=1" % gap)
        self.assertLess(gap, 3.5, "no per-attempt timeout: retried after %.3fs" % gap)
        st = self.wait_webhook_state(rid, "delivered")
        self.assertEqual(st["webhook"].get("attempts"), 2, st)

    def test_receiver_down_fails_after_budget(self):
        port = harness.free_port()     # nothing listens there
        rid = new_id("rdown")
        url = "http://127.0.0.1:%d/down?token=%s" % (port, URL_TOKEN)
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 16, prefix="rd"),
                                 "webhook_v2": url})
        self.assertEqual(r.status, 202, r)
        st = self.wait_webhook_state(rid, "failed", timeout=15)
        wh = st["webhook"]
        self.assertEqual(wh.get("attempts"), 3, st)
        self.assertIsInstance(wh.get("last_error"), str, st)
        self.assertTrue(wh["last_error"], st)
        self.assertEqual(st["status"], "completed", st)
        self.assert_no_secret("GET /prompt/{id}", json.dumps(st))

        def failed_line():
            return [l for l in self.sc.log_text().splitlines()
                    if "webhook" in l.lower() and "fail" in l.lower()
                    and (rid in l or "/down" in l)]
        lines = poll(failed_line, 5, what="a log line saying the delivery of %s failed" % rid)
        self.assertTrue(lines)
        self.assert_no_secret("the sidecar log", self.sc.log_text())

    # --------------------------------------------------------- job status ---
    def test_status_queued_running_completed(self):
        with self.blocker() as (brid, bpid, bfut):
            # the blocker runs: status running with progress
            def progressing():
                r = self.status(brid)
                j = r.json if r.status == 200 else {}
                p = j.get("progress") or {}
                return j if j.get("status") == "running" and is_number(p.get("value")) \
                    and p["value"] >= 1 else None
            j = poll(progressing, 10, what="the blocker to show progress")
            p = j["progress"]
            with self.soft("running"):
                self.assertEqual(j.get("id"), brid, j)
                self.assertEqual(str(p.get("node")), "3", j)
                self.assertEqual(p.get("max"), BLOCKER_STEPS, j)
                self.assertLessEqual(p["value"], p["max"], j)
                self.assertTrue(is_number(p.get("overall")) and 0 <= p["overall"] <= 1, j)
                self.assertRegex(str(j.get("created_at")), ISO_RE)
                self.assertRegex(str(j.get("started_at")), ISO_RE)
                self.assertIsNone(j.get("finished_at"), j)
            # two jobs behind it
            rid_b, rid_c = new_id("qb"), new_id("qc")
            gb = graphs.ksampler(48, 24, seed=seed(), steps=5, prefix="qb")
            fut_b = self.start_sync({"id": rid_b, "prompt": gb})
            self.wait_pending(self.find_pid(rid_b))
            fut_c = self.start_sync({"id": rid_c, "prompt": graphs.empty_image(8, 8, prefix="qc")})
            self.wait_pending(self.find_pid(rid_c))
            sb = self.wait_status(rid_b, "queued").json
            sc_ = self.wait_status(rid_c, "queued").json
            with self.soft("queued"):
                self.assertEqual(sb.get("queue_position"), 0, sb)
                self.assertEqual(sc_.get("queue_position"), 1, sc_)
                self.assertRegex(str(sb.get("created_at")), ISO_RE)
                self.assertIsNone(sb.get("started_at"), sb)
                self.assertIsNone(sb.get("webhook"), "webhook shown for a job without one")
        # the blocker was interrupted in ComfyUI: failed, error = the sync body
        rb = bfut.result(20)
        sblk = self.wait_status(brid, "failed").json
        with self.soft("failed (interrupted)"):
            self.assertEqual(rb.status, 500, rb)
            self.assertEqual(sblk.get("http_status"), 500, sblk)
            self.assertEqual(sblk.get("error"), rb.json, "error is not the synchronous body")
            self.assertRegex(str(sblk.get("finished_at")), ISO_RE)
        r = fut_b.result(20)
        self.assertImages(r, [(48, 24)])
        fut_c.result(20)
        st = self.wait_status(rid_b, "completed").json
        with self.soft("completed"):
            self.assertEqual(st.get("filenames"), r.json["filenames"], st)
            self.assertIsInstance(st.get("stats"), dict, st)
            self.assertRegex(str(st.get("finished_at")), ISO_RE)
            self.assertIsNone(st.get("error"), st)
            self.assertNotIn("images", st, "images without ?images=true")
        ri = self.status(rid_b, query="?images=true")
        with self.soft("?images=true"):
            self.assertEqual(ri.status, 200, ri)
            raws = self.assert_images(ri.json.get("images"), [(48, 24)], "status images")
            self.assertEqual(raws[0], base64.b64decode(r.json["images"][0]))

    def test_status_failed_runtime_error(self):
        msg = "status boom %s" % uuid.uuid4().hex[:6]
        self.sc.emu_fault(mode="runtime_error", node="3", message=msg)
        rid = new_id("sfail")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.ksampler(32, 32, seed=seed(), steps=2,
                                                                      prefix="sf")})
        self.assertError(r, 500, location="prompt.3")
        st = self.wait_status(rid, "failed").json
        self.assertEqual(st.get("http_status"), 500, st)
        self.assertEqual(st.get("error"), r.json, "error is not the synchronous body")
        self.assertEqual(st.get("filenames") or [], [], st)

    def test_status_unknown_404(self):
        for path in ("/prompt/no-such-job-%s" % uuid.uuid4().hex[:6],
                     "/prompt/no-such-job-%s/events" % uuid.uuid4().hex[:6]):
            with self.soft(path):
                r = self.sc.get(path)
                self.assertError(r, 404)

    def test_id_reusable_after_finish(self):
        rid = new_id("reuse")
        self.assertImages(self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(
            10, 8, prefix="r1")}), [(10, 8)])
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(12, 8, prefix="r2")})
        self.assertImages(r, [(12, 8)])
        st = self.wait_status(rid, "completed").json
        self.assertEqual(st.get("filenames"), r.json["filenames"], "GET shows the older job")

    def test_closing_event_stream_does_not_cancel(self):
        rid = new_id("sseclose")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=40, prefix="ec")})
        pid = self.find_pid(rid)
        self.wait_running(pid)
        s = self.open_events(rid)
        self.assertEqual(s.status, 200)
        self.assertIsNotNone(s.next_event(5))
        s.close()
        r = fut.result(20)
        self.assertImages(r, [(24, 24)])
        self.assertEqual(self.interrupt_requests(pid), [])
        self.assertEqual(self.wait_status(rid, "completed").json.get("status"), "completed")

    def test_id_in_use_409(self):
        rid = new_id("dup")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            32, 32, seed=seed(), steps=BLOCKER_STEPS, prefix="d1")})
        pid = self.find_pid(rid)
        self.wait_running(pid)
        for extra in ({}, {"webhook_v2": "http://127.0.0.1:9/x"}):
            with self.soft(repr(extra)):
                r = self.sc.post_prompt(dict({"id": rid, "prompt": graphs.empty_image(
                    8, 8, prefix="d2")}, **extra), timeout=10)
                j = self.assertError(r, 409)
                self.assertEqual(j.get("error_type"), "id_in_use", j)
        self.assertEqual(self.emu_prompt_count(rid), 1, "the colliding request reached ComfyUI")
        self.sc.emu("POST", "/interrupt", {"prompt_id": pid})
        r1 = fut.result(20)
        self.assertEqual(r1.status, 500, "the first job was disturbed: %r" % r1)

    # --------------------------------------------------------- SSE -----------
    def test_sse_success_with_heartbeat(self):
        with self.blocker():
            rid = new_id("sse")
            fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
                40, 24, seed=seed(), steps=15, prefix="se")})
            self.wait_pending(self.find_pid(rid))
            s = self.open_events(rid)
            s_img = self.open_events(rid, "?images=true")
            self.assertEqual((s.status, s_img.status), (200, 200))
            self.assertTrue(s.headers.get("content-type", "").startswith("text/event-stream"),
                            s.headers)
            # SSE_HEARTBEAT_S=1: the queued job's quiet stream gets a heartbeat
            deadline = time.monotonic() + 4
            while not any(i["kind"] == "comment" for i in s.items):
                item = s.next_item(max(0.01, deadline - time.monotonic()))
                self.assertIsNotNone(item, "the stream ended while the job was queued")
                self.assertNotIn(item.get("event"), FINAL_EVENTS, summ(item))
            hb = [i for i in s.items if i["kind"] == "comment"]
            self.assertEqual(hb[0]["text"], "heartbeat", hb[0])
            self.assertLessEqual(hb[0]["t"] - s.t0, 2.5, "first heartbeat late")
        items = s.read_to_end(15)
        evs = self.check_stream(s.items, rid, "completed", "GET events")
        names = [e["event"] for e in evs]
        with self.soft("a stream opened on a queued job starts with queued"):
            self.assertEqual(names[0], "queued", names)
            self.assertEqual(evs[0]["json"].get("position"), 0, summ(evs[0]))
        self.assertIn("started", names)
        self.assertIn("progress", names)
        done = evs[-1]["json"]
        self.assert_job_ok_body(done, rid, "se", [(40, 24)], "completed event")
        self.assertNotIn("images", done, "images without ?images=true")
        self.assertEqual(items[-1]["kind"], "event", "items after the final event: %r"
                         % [summ(i) for i in items])
        r = fut.result(20)
        raws = self.assertImages(r, [(40, 24)])
        with self.soft("second stream, ?images=true"):
            s_img.read_to_end(10)
            evs = self.check_stream(s_img.items, rid, "completed", "GET events?images=true")
            got = self.assert_images(evs[-1]["json"].get("images"), [(40, 24)], "completed images")
            self.assertEqual(got, raws)

    def test_sse_many_subscribers(self):
        rid = new_id("ssemany")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            24, 16, seed=seed(), steps=30, prefix="sm")})
        self.wait_running(self.find_pid(rid))
        streams = [self.open_events(rid) for _ in range(20)]
        for st in streams[::2]:        # half of them hang up early
            self.assertEqual(st.status, 200)
            st.close()
        self.assertImages(fut.result(20), [(24, 16)])
        for st in streams[1::2]:
            self.assertEqual(st.status, 200)
            st.read_to_end(10)
            self.check_stream(st.items, rid, "completed", "one of many streams")

    def test_sse_failed(self):
        msg = "sse boom %s" % uuid.uuid4().hex[:6]
        with self.blocker():
            rid = new_id("ssef")
            fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
                24, 24, seed=seed(), steps=4, prefix="sf")})
            self.wait_pending(self.find_pid(rid))
            s = self.open_events(rid)
            self.assertEqual(s.status, 200)
            # armed now: the blocker has been taken already; this job is the next
            self.sc.emu_fault(mode="runtime_error", node="3", message=msg)
        s.read_to_end(15)
        evs = self.check_stream(s.items, rid, "failed", "failed stream")
        d = evs[-1]["json"]
        r = fut.result(20)
        self.assertEqual(r.status, 500, r)
        self.assertEqual(d.get("http_status"), 500, d)
        self.assertEqual(d.get("error"), r.json, "failed event's error is not the sync body")
        self.assertIn(msg, json.dumps(d))

    def test_sse_cancelled_running(self):
        rid = new_id("ssec")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=BLOCKER_STEPS, prefix="sc")})
        self.wait_running(self.find_pid(rid))
        s = self.open_events(rid)
        self.assertEqual(s.status, 200)
        e = s.next_event(5)
        self.assertIsNotNone(e)
        d = self.sc.req("DELETE", "/prompt/%s" % rid)
        self.assertEqual(d.status, 200, d)
        s.read_to_end(10)
        evs = self.check_stream(s.items, rid, "cancelled", "cancelled stream")
        self.assertIsInstance(evs[-1]["json"].get("error"), (str, dict), summ(evs[-1]))
        r = fut.result(20)
        self.assertEqual(r.status, 409, r)

    def test_sse_finished_job_final_event_at_once(self):
        rid = new_id("ssedone")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(12, 10, prefix="sd")})
        self.assertImages(r, [(12, 10)])
        self.wait_status(rid, "completed")
        for query in ("", "?images=true"):
            with self.soft("completed" + query):
                s = self.open_events(rid, query)
                self.assertEqual(s.status, 200)
                items = s.read_to_end(3)
                evs = [i for i in items if i["kind"] == "event"]
                self.assertEqual([e["event"] for e in evs], ["completed"],
                                 [summ(i) for i in items])
                self.assert_job_ok_body(evs[0]["json"], rid, "sd", [(12, 10)], "completed event")
                if query:
                    self.assert_images(evs[0]["json"].get("images"), [(12, 10)], "?images=true")
                self.assertLess(evs[0]["t"] - s.t0, 1.0, "the final event was not sent at once")
        # a failed one
        self.sc.emu_fault(mode="runtime_error", node="3", message="done boom")
        rid2 = new_id("ssedonef")
        r2 = self.sc.post_prompt({"id": rid2, "prompt": graphs.ksampler(16, 16, seed=seed(),
                                                                        steps=2, prefix="df")})
        self.assertEqual(r2.status, 500, r2)
        self.wait_status(rid2, "failed")
        with self.soft("failed"):
            s = self.open_events(rid2)
            items = s.read_to_end(3)
            evs = [i for i in items if i["kind"] == "event"]
            self.assertEqual([e["event"] for e in evs], ["failed"], [summ(i) for i in items])
            self.assertEqual(evs[0]["json"].get("http_status"), 500)

    def test_sse_post_accept_event_stream(self):
        rid = new_id("ssepost")
        graph = graphs.ksampler(56, 32, seed=seed(), steps=10, prefix="sp")
        s = SSEStream(self.sc.port, "/prompt", method="POST", body={"id": rid, "prompt": graph})
        self.addCleanup(s.close)
        self.assertEqual(s.status, 200, s.body_json(2) if s.status != 200 else None)
        self.assertTrue(s.headers.get("content-type", "").startswith("text/event-stream"),
                        s.headers)
        s.read_to_end(15)
        evs = self.check_stream(s.items, rid, "completed", "POST stream")
        names = [e["event"] for e in evs]
        self.assertIn("started", names)
        self.assertIn("progress", names)
        done = evs[-1]["json"]
        self.assert_job_ok_body(done, rid, "sp", [(56, 32)], "completed event")
        self.assert_images(done.get("images"), [(56, 32)], "completed images")
        # errors before the job exists are still plain JSON answers
        s2 = SSEStream(self.sc.port, "/prompt", method="POST", body={"prompt": graph, "nope": 1})
        self.addCleanup(s2.close)
        self.assertEqual(s2.status, 400)
        self.assertEqual((s2.body_json() or {}).get("location"), "nope")

    # --------------------------------------------------------- cancel -------
    def test_delete_queued_job(self):
        with self.blocker():
            rid = new_id("delq")
            fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
                24, 24, seed=seed(), steps=4, prefix="dq")})
            pid = self.find_pid(rid)
            self.wait_pending(pid)
            self.wait_status(rid, "queued")
            d = self.sc.req("DELETE", "/prompt/%s" % rid)
            self.assertEqual(d.status, 200, d)
            self.assertEqual(d.json.get("id"), rid, d)
            self.assertEqual(d.json.get("status"), "cancelled", d)
            r = fut.result(10)
            j = self.assertError(r, 409)
            self.assertEqual(j.get("error_type"), "cancelled", j)
            self.assertTrue(self.queue_delete_requests(pid),
                            "ComfyUI was not asked to delete %s from its queue: %r"
                            % (pid, [q for q in self.sc.emu_requests() if "queue" in q["path"]]))
            q = self.queue_delete_requests(pid)[0]
            self.assertEqual(q["body"], {"delete": [pid]}, q)
            self.assertNotIn(pid, self.sc.emu_state().get("pending") or [])
        poll(lambda: not self.sc.emu_state().get("running"), 10, what="the emulator idle")
        self.assertEqual(self.wait_status(rid, "cancelled").json.get("id"), rid)
        self.assertEqual(self.sc.emu("GET", "/history/%s" % pid).json, {}, "the job ran")
        self.assertEqual(self.output_files(rid), [], "the cancelled job wrote files")
        self.assertEqual(self.interrupt_requests(pid), [], "a queued job was 'interrupted'")

    def test_delete_running_job(self):
        rid = new_id("delr")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=BLOCKER_STEPS, prefix="dr")})
        pid = self.find_pid(rid)
        self.wait_running(pid)
        self.wait_status(rid, "running")
        d = self.sc.req("DELETE", "/prompt/%s" % rid)
        self.assertEqual(d.status, 200, d)
        self.assertEqual(d.json.get("status"), "cancelled", d)
        r = fut.result(10)
        j = self.assertError(r, 409)
        self.assertEqual(j.get("error_type"), "cancelled", j)
        self.assertTrue(self.interrupt_requests(pid), "ComfyUI's /interrupt was not called with "
                        "prompt_id %s: %r" % (pid, [q for q in self.sc.emu_requests()
                                                   if "interrupt" in q["path"]]))
        self.assertLess(r.elapsed, 20, "the job ran to its end")
        st = self.wait_status(rid, "cancelled").json
        self.assertEqual(st.get("id"), rid)
        poll(lambda: self.sc.emu_state().get("running") != pid, 5, what="ComfyUI to stop the job")
        again = self.sc.req("DELETE", "/prompt/%s" % rid)
        self.assertError(again, 409, msg="a second DELETE of a cancelled job: %r" % again)

    def test_interrupt_route(self):
        rid = new_id("intr")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=BLOCKER_STEPS, prefix="ir")})
        pid = self.find_pid(rid)
        self.wait_running(pid)
        r = self.sc.req("POST", "/interrupt", {"id": rid})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"id": rid, "interrupted": "success"})
        res = fut.result(10)
        j = self.assertError(res, 409)
        self.assertEqual(j.get("error_type"), "cancelled", j)
        self.assertTrue(self.interrupt_requests(pid), "ComfyUI's /interrupt was not called")
        self.wait_status(rid, "cancelled")
        unknown = "nobody-%s" % uuid.uuid4().hex[:6]
        r = self.sc.req("POST", "/interrupt", {"id": unknown})
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json, {"id": unknown, "interrupted": "failed"})

    def test_interrupt_route_queued_job(self):
        with self.blocker():
            rid = new_id("intrq")
            fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
                24, 24, seed=seed(), steps=4, prefix="iq")})
            pid = self.find_pid(rid)
            self.wait_pending(pid)
            r = self.sc.req("POST", "/interrupt", {"id": rid})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json, {"id": rid, "interrupted": "success"})
            res = fut.result(10)
            self.assertEqual((res.json or {}).get("error_type"), "cancelled", res)
            self.assertTrue(self.queue_delete_requests(pid), "not deleted from ComfyUI's queue")
        self.wait_status(rid, "cancelled")

    def test_interrupt_bad_bodies(self):
        for body in (b"", b"not json", b"[]", b'{"id": 5}', b"{}"):
            with self.soft(repr(body)):
                r = self.sc.req("POST", "/interrupt", body, headers={"Content-Type": "application/json"})
                self.assertIn(r.status, (400, 404), r)
                self.assertIsInstance(r.json, dict, "not JSON: %r" % r)

    def test_cancel_while_fetching_outputs(self):
        # ComfyUI has finished; the sidecar is still fetching the image (/view
        # answers after 1.5 s). A DELETE now either cancels (200, the client gets
        # 409) or is refused as finished (409, the client gets its images): the
        # two answers must agree, and nothing may crash.
        self.sc.emu_fault(mode="slow_view", delay=1.5)
        rid = new_id("fetchcancel")
        fut = self.start_sync({"id": rid, "prompt": graphs.empty_image(14, 9, prefix="fc")})
        poll(lambda: any(q["path"].endswith("/view") for q in self.sc.emu_requests()
                         if rid in str(q.get("query"))), 10, what="the sidecar to fetch the output")
        d = self.sc.req("DELETE", "/prompt/%s" % rid)
        r = fut.result(20)
        st = self.wait_status(rid, ("completed", "cancelled", "failed")).json
        if d.status == 200:
            self.assertEqual((r.status, (r.json or {}).get("error_type")), (409, "cancelled"), r)
            self.assertEqual(st["status"], "cancelled", st)
        else:
            self.assertEqual(d.status, 409, d)
            self.assertImages(r, [(14, 9)])
            self.assertEqual(st["status"], "completed", st)
        self.assertEqual(self.sc.proc.poll(), None, "the sidecar died")

    def test_delete_finished_409_unknown_404(self):
        rid = new_id("delf")
        self.assertImages(self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(
            8, 8, prefix="df")}), [(8, 8)])
        self.wait_status(rid, "completed")
        r = self.sc.req("DELETE", "/prompt/%s" % rid)
        self.assertError(r, 409)
        self.assertEqual(self.status(rid).json.get("status"), "completed", "DELETE changed it")
        self.assertError(self.sc.req("DELETE", "/prompt/unknown-%s" % uuid.uuid4().hex[:6]), 404)

    def test_cancel_with_webhook_v2(self):
        rx = self.receiver()
        rid = new_id("cwh")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=BLOCKER_STEPS, prefix="cw"), "webhook_v2": rx.url("/c")})
        self.assertEqual(r.status, 202, r)
        self.assertLess(r.elapsed, 5, "the 202 was not answered at once")
        pid = self.find_pid(rid)
        self.wait_running(pid)
        st = self.wait_status(rid, "running").json
        with self.soft("webhook while running"):
            wh = st.get("webhook") or {}
            self.assertEqual((wh.get("kind"), wh.get("state"), wh.get("attempts")),
                             ("v2", "pending", 0), st)
        d = self.sc.req("DELETE", "/prompt/%s" % rid)
        self.assertEqual(d.status, 200, d)
        hit = rx.wait_for(1, timeout=10)[0]
        self.assert_signed(hit, secrets=(SECRET_WHSEC,), rid=rid)
        b = hit.json
        self.assertEqual(b.get("type"), "prompt.failed", b)
        self.assertEqual(b.get("id"), rid)
        self.assertIn("cancel", json.dumps(b.get("error")).lower(), b)
        self.assertEqual(b.get("http_status"), 409, b)
        st = self.wait_webhook_state(rid, "delivered")
        self.assertEqual(st["status"], "cancelled", st)
        rx.assert_no_more(1, window=0.5)

    # --------------------------------------------------------- disconnect ---
    def raw_post(self, body):
        data = json.dumps(body).encode()
        s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=10)
        s.sendall(("POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n" % len(data)).encode() + data)
        return s

    def test_client_disconnect_cancels(self):
        # running job: interrupted
        rid = new_id("disc")
        s = self.raw_post({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=BLOCKER_STEPS, prefix="dc")})
        pid = self.find_pid(rid)
        self.wait_running(pid)
        self.wait_status(rid, "running")
        s.close()
        with self.soft("running job"):
            poll(lambda: self.interrupt_requests(pid), 5,
                 what="ComfyUI's /interrupt for the job whose client hung up")
            self.wait_status(rid, "cancelled", timeout=5)
        # queued job: deleted from ComfyUI's queue
        with self.soft("queued job"):
            with self.blocker():
                rid2 = new_id("discq")
                s2 = self.raw_post({"id": rid2, "prompt": graphs.ksampler(
                    24, 24, seed=seed(), steps=4, prefix="dq")})
                pid2 = self.find_pid(rid2)
                self.wait_pending(pid2)
                s2.close()
                poll(lambda: self.queue_delete_requests(pid2), 5,
                     what="ComfyUI's /queue delete for the queued job whose client hung up")
                self.wait_status(rid2, "cancelled", timeout=5)


# ============================================================ own instances

class AsyncBareSecretTests(AsyncCase):
    """WEBHOOK_SECRET as bare base64 (no whsec_ prefix)."""

    def test_v2_bare_base64_secret(self):
        sc = AsyncSidecar("async-bare", emu_args=["--step-time", str(STEP_TIME)],
                          env=dict(BASE_ENV, WEBHOOK_SECRET=SECRET_B64))
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rx = self.receiver()
        rid = new_id("bare")
        r = sc.post_prompt({"id": rid, "prompt": graphs.empty_image(20, 14, prefix="bs"),
                            "webhook_v2": rx.url("/b", token=URL_TOKEN)})
        self.assertEqual(r.status, 202, r)
        hit = rx.wait_for(1, timeout=15)[0]
        self.assert_signed(hit, secrets=(SECRET_B64, SECRET_WHSEC), rid=rid)
        self.assertEqual(hit.json.get("type"), "prompt.complete", hit)
        self.assert_images(hit.json.get("images"), [(20, 14)], "webhook images")
        self.assert_no_secret("the webhook body", hit.body)
        self.assert_no_secret("the sidecar log", sc.log_text())
        sc.stop(expect_code=0)


class AsyncNoCancelOnDisconnectTests(AsyncCase):

    def test_disconnect_does_not_cancel(self):
        sc = AsyncSidecar("async-nocancel", emu_args=["--step-time", str(STEP_TIME)],
                          env=dict(BASE_ENV, CANCEL_ON_DISCONNECT="false"))
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rid = new_id("keep")
        data = json.dumps({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=50, prefix="kp")}).encode()
        s = socket.create_connection(("127.0.0.1", sc.port), timeout=10)
        s.sendall(("POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n" % len(data)).encode() + data)
        pid = self.find_pid(rid)
        self.wait_running(pid)
        s.close()
        st = self.wait_status(rid, ("completed", "cancelled", "failed"), timeout=15).json
        self.assertEqual(st["status"], "completed", st)
        self.assertEqual(len(st.get("filenames") or []), 1, st)
        self.assertEqual(self.interrupt_requests(pid), [])
        self.assertEqual(self.queue_delete_requests(pid), [])
        sc.stop(expect_code=0)


class AsyncHistoryTests(AsyncCase):

    def test_history_max_2(self):
        sc = AsyncSidecar("async-hist", env=dict(BASE_ENV, JOB_HISTORY_MAX="2"))
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        ids = [new_id("h%d" % i) for i in range(3)]
        for i, rid in enumerate(ids):
            self.assertImages(sc.post_prompt({"id": rid, "prompt": graphs.empty_image(
                8 + i, 8, prefix="h")}), [(8 + i, 8)])
        r = self.status(ids[0])
        self.assertError(r, 404)
        for rid in ids[1:]:
            r = self.status(rid)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json.get("status"), "completed", r)
        sc.stop(expect_code=0)

    def test_history_ttl(self):
        sc = AsyncSidecar("async-ttl", env=dict(BASE_ENV, JOB_HISTORY_TTL_S="1"))
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rid = new_id("ttl")
        self.assertImages(sc.post_prompt({"id": rid, "prompt": graphs.empty_image(8, 8)}), [(8, 8)])
        t_done = time.monotonic()
        r = self.status(rid)
        self.assertEqual(r.status, 200, r)
        poll(lambda: self.status(rid).status == 404, 5, interval=0.1,
             what="the finished job to expire (JOB_HISTORY_TTL_S=1)")
        self.assertGreaterEqual(time.monotonic() - t_done, 0.8, "expired before its TTL")
        sc.stop(expect_code=0)


class AsyncPreviewTests(AsyncCase):

    def test_previews_only_on_request(self):
        sc = AsyncSidecar("async-prev", env=BASE_ENV,
                          emu_args=["--step-time", str(STEP_TIME), "--preview-method", "auto"])
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        with self.blocker(sc):
            rid = new_id("prev")
            fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
                40, 32, seed=seed(), steps=6, prefix="pv")}, sc=sc)
            self.wait_pending(self.find_pid(rid, sc), sc)
            with_p = SSEStream(sc.port, "/prompt/%s/events?previews=true" % rid)
            without = SSEStream(sc.port, "/prompt/%s/events" % rid)
            self.addCleanup(with_p.close)
            self.addCleanup(without.close)
            self.assertEqual((with_p.status, without.status), (200, 200))
        with_p.read_to_end(15)
        without.read_to_end(15)
        self.assertImages(fut.result(20), [(40, 32)])
        self.check_stream(without.items, rid, "completed", "stream without previews")
        evs = self.check_stream(with_p.items, rid, "completed", "stream with previews",
                                previews=True)
        prev = [e["json"] for e in evs if e["event"] == "preview"]
        self.assertTrue(prev, "no preview event with ?previews=true: %r" % [summ(e) for e in evs])
        for d in prev:
            self.assertEqual(str(d.get("node")), "3", d.keys())
            self.assertEqual(d.get("mime"), "image/jpeg", {k: d[k] for k in d if k != "image"})
            raw = base64.b64decode(d.get("image") or "", validate=True)
            self.assertEqual(raw[:2], b"\xff\xd8", "preview is not a JPEG")
        sc.stop(expect_code=0)


class AsyncCrashWebhookTests(AsyncCase):

    def test_comfyui_crash_webhook_failed_502(self):
        sc = AsyncSidecar("async-crash", env=dict(BASE_ENV, ALWAYS_RESTART_COMFYUI="true"),
                          emu_args=["--step-time", str(STEP_TIME)])
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rx = self.receiver()
        sc.emu_fault(mode="crash", at_step=3)
        rid = new_id("crashwh")
        r = sc.post_prompt({"id": rid, "prompt": graphs.ksampler(24, 24, seed=seed(), steps=20,
                                                                 prefix="cr"),
                            "webhook_v2": rx.url("/crash")})
        self.assertEqual(r.status, 202, r)
        hit = rx.wait_for(1, timeout=15)[0]
        self.assert_signed(hit, secrets=(SECRET_WHSEC,), rid=rid)
        self.assertEqual(hit.json.get("type"), "prompt.failed", hit)
        self.assertEqual(hit.json.get("http_status"), 502, hit)
        st = self.wait_webhook_state(rid, "delivered", sc=sc)
        self.assertEqual((st["status"], st.get("http_status")), ("failed", 502), st)
        sc.wait_ready(20)
        sc.stop(expect_code=0)


class AsyncShutdownTests(AsyncCase):

    def test_sigterm_delivers_owed_webhooks(self):
        # "A 202 means a webhook will come, complete or failed, unless the process
        # dies": a SIGTERM is not a death; the job in flight fails and its
        # prompt.failed reaches the receiver before the sidecar exits 0. The
        # job is long, so it outlives a 1 s grace period.
        sc = AsyncSidecar("async-term", env=dict(BASE_ENV, SHUTDOWN_GRACE_S="1"),
                          emu_args=["--step-time", str(STEP_TIME)])
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rx = self.receiver()
        rid = new_id("term")
        r = sc.post_prompt({"id": rid, "prompt": graphs.ksampler(
            24, 24, seed=seed(), steps=BLOCKER_STEPS, prefix="tm"), "webhook_v2": rx.url("/t")})
        self.assertEqual(r.status, 202, r)
        self.wait_running(self.find_pid(rid, sc), sc)
        sc.proc.send_signal(signal.SIGTERM)
        rc = sc.wait_exit(15)
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        hits = rx.matching("/t")
        self.assertEqual(len(hits), 1, "webhooks received before the exit: %r" % hits)
        self.assert_signed(hits[0], secrets=(SECRET_WHSEC,), rid=rid)
        self.assertEqual(hits[0].json.get("type"), "prompt.failed", hits[0])
        sc.stop(expect_code=0)


class AsyncConfigTests(AsyncCase):

    def test_invalid_new_variables_stop_startup(self):
        import test_config
        cases = [("WEBHOOK_SECRET", "not*base64*SECRETVAL"), ("PROMPT_WEBHOOK_RETRIES", "many"),
                 ("WEBHOOK_TIMEOUT_S", "slow"), ("WEBHOOK_MAX_TOTAL_S", "-5"),
                 ("WEBHOOK_BACKOFF_MS", "fast"), ("JOB_HISTORY_MAX", "lots"),
                 ("JOB_HISTORY_TTL_S", "1h"), ("CANCEL_ON_DISCONNECT", "perhaps"),
                 ("SSE_HEARTBEAT_S", "often")]
        d = harness.make_tmpdir("async-config")
        for var, val in cases:
            with self.soft(repr((var, val))):
                env = harness.clean_env({
                    "HOST": "127.0.0.1", "PORT": str(harness.free_port()),
                    "COMFYUI_PORT_HOST": str(harness.free_port()), "CMD": "",
                    "COMFY_HOME": d, "STARTUP_CHECK_INTERVAL_S": "0.1",
                    "STARTUP_CHECK_MAX_TRIES": "100", "LOG_LEVEL": "debug"})
                for k in NEW_VARS:
                    env.pop(k, None)
                env[var] = val
                rc, out, _ = test_config.run_sidecar([], env, timeout=5)
                self.assertIsNotNone(rc, "%s=%s: still running after 5 s" % (var, val))
                self.assertNotEqual(rc, 0, "%s=%s accepted\n%s" % (var, val, out[-1500:]))
                self.assertIn(var, out, "the message does not name %s:\n%s" % (var, out[-1500:]))
                self.assertNotIn("SECRETVAL", out, "the invalid secret is printed")


class AsyncWebhookBudgetTests(AsyncCase):

    def test_max_total_time_bounds_retries(self):
        sc = AsyncSidecar("async-budget", env=dict(
            BASE_ENV, PROMPT_WEBHOOK_RETRIES="10", WEBHOOK_TIMEOUT_S="1",
            WEBHOOK_MAX_TOTAL_S="2", WEBHOOK_BACKOFF_MS="100"))
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rx = self.receiver(plans={"/h": ["hang"]})
        rid = new_id("budget")
        r = sc.post_prompt({"id": rid, "prompt": graphs.empty_image(8, 8, prefix="bg"),
                            "webhook_v2": rx.url("/h")})
        self.assertEqual(r.status, 202, r)
        first = rx.wait_for(1, timeout=10)[0]
        st = self.wait_webhook_state(rid, "failed", timeout=8)
        took = time.monotonic() - first.t
        self.assertLess(took, 3.5, "gave up %.1fs after the first attempt; budget 2 s" % took)
        hits = rx.matching("/h")
        self.assertLessEqual(len(hits), 3, "%d attempts within a 2 s budget of 1 s attempts"
                             % len(hits))
        self.assertGreaterEqual(len(hits), 2, "no retry at all")
        for h in hits:
            self.assertLess(h.t - first.t, 2.2, "an attempt started after the 2 s budget")
        self.assertEqual(st["webhook"].get("attempts"), len(hits), st)
        sc.stop(expect_code=0)

    def test_retry_after_beyond_budget_gives_up(self):
        sc = AsyncSidecar("async-budget2", env=dict(BASE_ENV, WEBHOOK_MAX_TOTAL_S="2"))
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.sc = sc
        rx = self.receiver(plans={"/ra": [{"status": 429, "headers": {"Retry-After": "30"}}, 200]})
        rid = new_id("ra30")
        r = sc.post_prompt({"id": rid, "prompt": graphs.empty_image(8, 8, prefix="ra"),
                            "webhook_v2": rx.url("/ra")})
        self.assertEqual(r.status, 202, r)
        first = rx.wait_for(1, timeout=10)[0]
        st = self.wait_webhook_state(rid, "failed", timeout=5)
        self.assertLess(time.monotonic() - first.t, 2.5, "gave up after the budget, not at once")
        self.assertEqual(st["webhook"].get("attempts"), 1, st)
        self.assertEqual(st["webhook"].get("last_status"), 429, st)
        rx.assert_no_more(1, window=0.3)
        sc.stop(expect_code=0)


if __name__ == "__main__":
    import unittest
    unittest.main()
