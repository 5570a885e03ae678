"""Observability (issue 7): GET /metrics after real traffic, JSON logs, and
SaladCloud's deletion cost.

- MetricsTest drives one supervised sidecar through successful /prompt and
  /workflow jobs, 400s and 404s, a runtime error, webhooks delivered and
  failed, two jobs held in ComfyUI by a hang fault (scraped while they are in
  flight) and a ComfyUI crash with ALWAYS_RESTART_COMFYUI=true. Every
  request goes through one helper that counts (route, status) and the bytes
  received, so the counters are checked exactly. The exposition is parsed by
  an independent parser from the npm registry (parse-prometheus-text-format,
  test/node/parse-metrics.js; `npm ci --prefix test/node`).
- JsonLogTest runs a sidecar with LOG_FORMAT=json whose ComfyUI child (a
  wrapper that execs the emulator) first prints invalid UTF-8, quotes and
  control characters: every line must be a JSON object, and a job's lines
  carry its id in "req".
- MemoryTrimTest: a sidecar gives memory back once ready and after
  IDLE_TRIM_S without a job (src/mem.c): counted in /metrics, its mapped
  library pages end well below those of an identical sidecar with
  IDLE_TRIM_S=0, and jobs after a trim still return the right images.
- SaladTest plays SaladCloud's instance metadata service with the webhook
  receiver: with SALAD_MACHINE_ID set the queue depth arrives there as the
  deletion cost; without any SALAD_* variable nothing is sent.

Nothing waits with a fixed sleep: every wait polls a condition against a
deadline, or waits on the receiver's condition variable.
"""
import json
import math
import os
import random
import re
import shutil
import subprocess
import time

import graphs
import harness
import webhooks
from harness import SidecarTestCase, poll

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NODE_DIR = os.path.join(REPO, "test", "node")
PARSE_JS = os.path.join(NODE_DIR, "parse-metrics.js")
WORKFLOW_DIR = os.path.join(REPO, "comfy-workflows")
WEB_DIR = os.path.join(REPO, "web")

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
P = "comfy_sidecar_"

COUNTERS = ("http_requests_total", "http_response_bytes_total", "jobs_total",
            "comfyui_restarts_total", "webhook_deliveries_total", "webhook_attempts_total",
            "memory_trims_total")
GAUGES = ("queue_depth", "jobs_in_flight", "comfyui_up", "websocket_up", "ready",
          "waiting_requests", "webhooks_pending")
HISTOGRAMS = ("job_queue_wait_seconds", "job_execution_seconds", "job_total_seconds")

_color = [random.randrange(1, 1 << 20)]


def graph(prefix="obs"):
    """A fast EmptyImage -> SaveImage graph that ComfyUI cannot serve from its
    cache (a fresh colour each time), so that node faults really fire."""
    _color[0] += 1
    return graphs.empty_image(32, 32, color=_color[0], prefix=prefix)


# ------------------------------------------------------------------ parsing

def parser_problem():
    if not shutil.which("node"):
        return "node (Node.js) is not on PATH; the Prometheus parser needs it"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "parse-prometheus-text-format")):
        return ("test/node/node_modules/parse-prometheus-text-format is missing: run "
                "`npm ci --prefix test/node`")
    return None


def parse_metrics(text):
    """{family name: family} as parse-prometheus-text-format reads text."""
    problem = parser_problem()
    if problem:
        raise AssertionError(problem)
    p = subprocess.run(["node", PARSE_JS], input=text.encode("utf-8"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise AssertionError("parse-metrics.js exited %d: %s\n--- input ---\n%s" % (
            p.returncode, p.stderr.decode("utf-8", "replace"), text[:3000]))
    fams = json.loads(p.stdout.decode("utf-8"))
    out = {}
    for f in fams:
        if f["name"] in out:
            raise AssertionError("metric family %s appears twice" % f["name"])
        out[f["name"]] = f
    return out


def num(s):
    """A sample value as the text format allows it (parser output is strings)."""
    if not isinstance(s, str) or not re.match(r"^([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN)$", s):
        raise AssertionError("not a Prometheus sample value: %r" % (s,))
    return float(s)


class Scrape:
    """One parsed GET /metrics."""

    def __init__(self, tc, text):
        self.tc = tc
        self.text = text
        self.fams = parse_metrics(text)

    def family(self, short, kind):
        f = self.fams.get(P + short)
        self.tc.assertIsNotNone(f, "no metric family %s%s in:\n%s" % (P, short, self.text[:3000]))
        self.tc.assertEqual(f["type"], kind, "%s%s has type %s" % (P, short, f["type"]))
        self.tc.assertTrue(f.get("help"), "%s%s has no HELP" % (P, short))
        return f

    def value(self, short, kind="GAUGE", **labels):
        f = self.family(short, kind)
        want = {k: str(v) for k, v in labels.items()}
        found = [m for m in f["metrics"] if (m.get("labels") or {}) == want]
        self.tc.assertEqual(len(found), 1, "%s%s%r: %d samples" % (P, short, want, len(found)))
        return num(found[0]["value"])

    def series(self, short, kind="COUNTER"):
        """[(labels, value)] of a family."""
        return [(m.get("labels") or {}, num(m["value"]))
                for m in self.family(short, kind)["metrics"]]

    def histogram(self, short):
        """(buckets [(le, count)] sorted by le, count, sum), checked for shape."""
        f = self.family(short, "HISTOGRAM")
        self.tc.assertEqual(len(f["metrics"]), 1, short)
        m = f["metrics"][0]
        buckets = sorted(((num(le), num(c)) for le, c in m["buckets"].items()),
                         key=lambda x: x[0])
        count, total = num(m["count"]), num(m["sum"])
        self.tc.assertGreaterEqual(len(buckets), 2, short)
        self.tc.assertEqual(buckets[-1][0], math.inf, "%s: no +Inf bucket" % short)
        self.tc.assertEqual(buckets[-1][1], count, "%s: +Inf bucket != _count" % short)
        for (le1, c1), (le2, c2) in zip(buckets, buckets[1:]):
            self.tc.assertLessEqual(c1, c2, "%s: buckets not cumulative at le=%g..%g: %r"
                                    % (short, le1, le2, buckets))
        for _, c in buckets:
            self.tc.assertEqual(c, int(c), short)
        self.tc.assertGreaterEqual(total, 0, short)
        return buckets, count, total


# ------------------------------------------------------------------ traffic

class Traffic:
    """Every request of a test goes through here: (route label, status)
    counts and the body bytes received, to compare with the counters."""

    def __init__(self, sc):
        self.sc = sc
        self.counts = {}
        self.bytes = 0

    @staticmethod
    def route(path):
        path = path.split("?", 1)[0]
        if path in ("/health", "/ready", "/prompt", "/interrupt", "/metrics", "/docs",
                    "/docs/json", "/openapi.json", "/"):
            return path
        if path.startswith("/prompt/"):
            return "/prompt/{id}/events" if "/" in path[8:] else "/prompt/{id}"
        if path == "/workflow/sdxl/txt2img":
            return path
        if path.startswith("/workflow/"):
            return "/workflow/unknown"
        return "other"

    def call(self, method, path, body=None, headers=None, timeout=60):
        r = self.sc.req(method, path, body=body, headers=headers, timeout=timeout)
        key = (self.route(path), r.status)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.bytes += len(r.data)
        return r

    def scrape(self, tc):
        r = self.call("GET", "/metrics")
        tc.assertEqual(r.status, 200, r)
        ct = r.headers.get("content-type", "")
        tc.assertTrue(ct.startswith("text/plain"), ct)
        tc.assertIn("version=0.0.4", ct)
        return Scrape(tc, r.data.decode("utf-8"))

    def job(self, rid):
        r = self.call("GET", "/prompt/" + rid)
        return r.json if r.status == 200 else None

    def wait_job(self, rid, pred, timeout=20, what=None):
        return poll(lambda: (lambda j: j if j and pred(j) else None)(self.job(rid)), timeout,
                    interval=0.02, what=what or "job %s" % rid)

    def wait_ready(self, timeout=20):
        return poll(lambda: self.call("GET", "/ready", timeout=2).status == 200, timeout,
                    interval=0.05, what="/ready 200")


# ------------------------------------------------------------------ metrics

class MetricsTest(SidecarTestCase):
    def test_metrics_after_real_traffic(self):
        rx = webhooks.WebhookReceiver()
        self.addCleanup(rx.close)
        dead = harness.free_port()
        sc = self.new_sidecar("metrics", start=False, env={
            "ALWAYS_RESTART_COMFYUI": "true",
            "PROMPT_WEBHOOK_RETRIES": "1",
            "WEBHOOK_TIMEOUT_S": "2",
            "WEBHOOK_BACKOFF_MS": "10",
            "WORKFLOW_DIR": WORKFLOW_DIR,
            "WEB_DIR": WEB_DIR,
        })
        t0 = time.monotonic()
        sc.start()
        t = Traffic(sc)
        # Every /ready of this sidecar is ours (503 while ComfyUI starts).
        t.wait_ready()

        # -- idle --------------------------------------------------------------
        s = t.scrape(self)
        self.assertEqual(s.value("queue_depth"), 0)
        self.assertEqual(s.value("jobs_in_flight"), 0)
        self.assertEqual(s.value("comfyui_restarts_total", "COUNTER"), 0)
        self.assertEqual(s.value("ready"), 1)

        # -- successes, client errors ------------------------------------------
        for i in range(2):
            r = t.call("POST", "/prompt", {"prompt": graph(), "id": "ok-%d" % i})
            self.assertEqual(r.status, 200, r)
        r = t.call("POST", "/workflow/sdxl/txt2img",
                   {"input": {"prompt": "a salad", "width": 256, "height": 256, "steps": 2}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(t.call("POST", "/prompt", {"prompt": graph(), "id": "bad id!"}).status,
                         400)
        self.assertEqual(t.call("POST", "/prompt", b"{not json").status, 400)
        self.assertEqual(t.call("POST", "/workflow/sdxl/txt2img", {"input": {}}).status, 400)
        self.assertEqual(t.call("GET", "/prompt/no-such-job").status, 404)
        self.assertEqual(t.call("GET", "/no/such/route").status, 404)
        self.assertEqual(t.call("POST", "/workflow/no/such", {"input": {}}).status, 404)

        # -- a runtime error in ComfyUI ----------------------------------------
        sc.emu_fault(mode="runtime_error", class_type="EmptyImage", message="boom")
        r = t.call("POST", "/prompt", {"prompt": graph(), "id": "rt-err"})
        self.assertEqual(r.status, 500, r)

        # -- webhooks: one delivered, one to a dead port (1 attempt) ------------
        r = t.call("POST", "/prompt", {"prompt": graph(), "id": "hook-ok",
                                       "webhook_v2": rx.url("/ok")})
        self.assertEqual(r.status, 202, r)
        r = t.call("POST", "/prompt", {"prompt": graph(), "id": "hook-dead",
                                       "webhook_v2": "http://127.0.0.1:%d/dead" % dead})
        self.assertEqual(r.status, 202, r)
        t.wait_job("hook-ok", lambda j: (j.get("webhook") or {}).get("state") == "delivered")
        t.wait_job("hook-dead", lambda j: (j.get("webhook") or {}).get("state") == "failed")

        # -- two jobs in flight: one hung in ComfyUI, one queued behind it ------
        sc.emu_fault(mode="hang", class_type="EmptyImage")
        r = t.call("POST", "/prompt", {"prompt": graph(), "id": "long-1",
                                       "webhook_v2": rx.url("/long")})
        self.assertEqual(r.status, 202, r)
        t.wait_job("long-1", lambda j: j["status"] == "running")
        r = t.call("POST", "/prompt", {"prompt": graph(), "id": "long-2",
                                       "webhook_v2": rx.url("/long")})
        self.assertEqual(r.status, 202, r)
        t.wait_job("long-2", lambda j: j["status"] == "queued")
        s = t.scrape(self)
        self.assertEqual(s.value("jobs_in_flight"), 2)
        self.assertEqual(s.value("queue_depth"), 2)
        self.assertEqual(s.value("ready"), 1)
        sc.emu_reset()      # the hung prompt fails as interrupted, the other runs
        t.wait_job("long-1", lambda j: j["status"] == "failed")
        t.wait_job("long-2", lambda j: j["status"] == "completed")
        rx.wait_for(2, path="/long")

        # -- ComfyUI crashes under a job and is restarted -----------------------
        sc.emu_fault(mode="crash", class_type="EmptyImage")
        r = t.call("POST", "/prompt", {"prompt": graph(), "id": "crash"})
        self.assertEqual(r.status, 502, r)
        t.wait_ready(30)

        # -- idle again ---------------------------------------------------------
        def idle():
            s = t.scrape(self)
            return s if (s.value("jobs_in_flight") == 0 and s.value("webhooks_pending") == 0
                         and s.value("queue_depth") == 0) else None
        poll(idle, 10, interval=0.05, what="the sidecar to be idle")
        wall = time.monotonic() - t0
        before = dict(t.counts)
        sent = t.bytes
        s = t.scrape(self)

        # Families and types.
        for name in COUNTERS:
            s.family(name, "COUNTER")
        for name in GAUGES:
            s.family(name, "GAUGE")
        for name in HISTOGRAMS:
            s.family(name, "HISTOGRAM")
        for name, f in s.fams.items():
            self.assertTrue(name.startswith(P), name)
            self.assertNotEqual(f["type"], "UNTYPED", name)

        # Requests by route and status: exactly what this test sent (the
        # scrape being answered is counted once it is complete).
        got = {(l["route"], int(l["status"])): v for l, v in s.series("http_requests_total")}
        for (route, status), v in got.items():
            self.assertEqual(v, int(v))
        self.assertEqual({k: int(v) for k, v in got.items()}, before,
                         "http_requests_total by (route, status)")
        for key in (("/prompt", 200), ("/prompt", 202), ("/prompt", 400), ("/prompt", 500),
                    ("/prompt", 502), ("/workflow/sdxl/txt2img", 200),
                    ("/workflow/sdxl/txt2img", 400), ("/workflow/unknown", 404),
                    ("/prompt/{id}", 404), ("other", 404), ("/metrics", 200),
                    ("/ready", 200), ("/prompt/{id}", 200)):
            self.assertIn(key, got)
        self.assertEqual(got[("/prompt", 202)], 4)
        self.assertEqual(got[("/prompt", 400)], 2)
        self.assertEqual(s.value("http_series_dropped_total", "COUNTER"), 0)
        # Bytes: at least every body this test received before the scrape.
        self.assertGreaterEqual(s.value("http_response_bytes_total", "COUNTER"), sent)
        self.assertGreater(sent, 0)

        # Jobs: 2 + 1 workflow + 2 webhook + long-2 completed; the runtime
        # error, the interrupted hang and the crash failed.
        jobs = {l["outcome"]: v for l, v in s.series("jobs_total")}
        self.assertEqual(jobs, {"completed": 6, "failed": 3, "cancelled": 0, "timeout": 0})
        n_jobs = 9
        for name in HISTOGRAMS:
            buckets, count, total = s.histogram(name)
            self.assertEqual(count, n_jobs, "%s_count: every job started in ComfyUI" % name)
            self.assertGreater(total, 0, name)
            self.assertLess(total, wall * count, name)
        # The queued job waited at least until the hung one was released.
        _, _, qsum = s.histogram("job_queue_wait_seconds")
        _, _, tsum = s.histogram("job_total_seconds")
        _, _, esum = s.histogram("job_execution_seconds")
        self.assertLessEqual(qsum, tsum)
        self.assertLessEqual(esum, tsum)

        # Gauges at rest.
        self.assertEqual(s.value("queue_depth"), 0)
        self.assertEqual(s.value("jobs_in_flight"), 0)
        self.assertEqual(s.value("comfyui_up"), 1)
        self.assertEqual(s.value("websocket_up"), 1)
        self.assertEqual(s.value("ready"), 1)
        self.assertEqual(s.value("waiting_requests"), 0)
        self.assertEqual(s.value("webhooks_pending"), 0)

        # ComfyUI restarts and webhooks.
        self.assertEqual(s.value("comfyui_restarts_total", "COUNTER"), 1)
        hooks = {l["outcome"]: v for l, v in s.series("webhook_deliveries_total")}
        self.assertEqual(hooks, {"delivered": 3, "failed": 1})
        self.assertEqual(s.value("webhook_attempts_total", "COUNTER"), 4)
        self.assertEqual(len(rx.matching()), 3)

        # Info and uptime.
        version = t.call("GET", "/health").json["version"]
        self.assertEqual(s.value("info", version=version), 1)
        self.assertGreaterEqual(s.value("uptime_seconds"), 0)
        self.assertLessEqual(s.value("uptime_seconds"), wall + 1)
        sc.stop()


# ------------------------------------------------------------------ logs

WRAPPER = r'''
import os, sys
# Bytes a real ComfyUI (or a custom node) may print: invalid UTF-8, quotes,
# backslashes, control characters, and valid multi-byte text.
out = sys.stdout.buffer
out.write(b'wrapper: bad \xff\xfe\xc3 utf8 "quoted" back\\slash tab\there bell\x07 caf\xc3\xa9 \xe2\x82\xac\n')
out.write(b'wrapper: overlong \xc0\xaf surrogate \xed\xa0\x80 end\n')
out.flush()
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
'''


class WrappedSidecar(harness.Sidecar):
    """A supervised sidecar whose CMD is a Python wrapper in the temp dir that
    prints awkward bytes on stdout and then execs the emulator."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.wrapper = os.path.join(self.dir, "noisy_comfyui.py")
        with open(self.wrapper, "w") as f:
            f.write(WRAPPER)

    def emulator_argv(self):
        argv = super().emulator_argv()
        return [argv[0], self.wrapper] + argv[1:]


class JsonLogTest(SidecarTestCase):
    def test_json_lines_and_request_ids(self):
        sc = WrappedSidecar("jsonlog", env={"LOG_FORMAT": "json", "LOG_LEVEL": "debug"})
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        rid = "json-log-job-1"
        r = sc.post_prompt({"prompt": graph(), "id": rid})
        self.assertEqual(r.status, 200, r)
        sc.emu_fault(mode="runtime_error", class_type="EmptyImage", message='bad "thing"\n')
        r = sc.post_prompt({"prompt": graph(), "id": "json-log-fail"})
        self.assertEqual(r.status, 500, r)
        sc.stop()

        with open(sc.log_path, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n"))
        lines = raw.split(b"\n")[:-1]
        self.assertGreater(len(lines), 5)
        recs = []
        for i, line in enumerate(lines):
            try:
                text = line.decode("utf-8")     # strict: the line is valid UTF-8
                rec = json.loads(text)
            except (UnicodeDecodeError, ValueError) as e:
                self.fail("log line %d is not a JSON object (%s): %r" % (i + 1, e, line[:300]))
            self.assertIsInstance(rec, dict, line)
            self.assertRegex(rec.get("time", ""), ISO_RE, line)
            self.assertIn(rec.get("level"), ("debug", "info", "warn", "error"), line)
            self.assertIsInstance(rec.get("msg"), str, line)
            self.assertLessEqual(set(rec), {"time", "level", "msg", "req"}, line)
            if "req" in rec:
                self.assertIsInstance(rec["req"], str, line)
            recs.append(rec)

        # The job's lines carry its id.
        mine = [x["msg"] for x in recs if x.get("req") == rid]
        for word in ("submitted", "queued", "done"):
            self.assertTrue(any(word in m for m in mine),
                            "no %r line with req=%s among %r" % (word, rid, mine))
        failed = [x for x in recs if x.get("req") == "json-log-fail"]
        self.assertTrue(any("failed" in x["msg"] and x["level"] == "warn" for x in failed),
                        failed)

        # ComfyUI's own output, forwarded, with the bad bytes replaced.
        child = [x["msg"] for x in recs if x["msg"].startswith("comfyui:")]
        self.assertTrue(any("emulator listening on" in m for m in child), child[:10])
        bad = [m for m in child if "wrapper: bad" in m]
        self.assertEqual(len(bad), 1, child[:10])
        self.assertIn("\ufffd", bad[0])
        self.assertIn("caf\u00e9 \u20ac", bad[0])
        self.assertIn("quoted", bad[0])
        self.assertNotIn("\x07", bad[0])
        over = [m for m in child if "wrapper: overlong" in m]
        self.assertEqual(len(over), 1, child[:10])
        self.assertIn("\ufffd", over[0])
        self.assertIn("end", over[0])


# ------------------------------------------------------------------ SaladCloud

def trims(sc):
    m = re.search(r"^comfy_sidecar_memory_trims_total (\d+)$", sc.get("/metrics").data.decode(), re.M)
    if m is None:
        raise AssertionError("no comfy_sidecar_memory_trims_total in /metrics")
    return int(m.group(1))


def rss_file_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/%d/status" % pid)


class MemoryTrimTest(SidecarTestCase):
    def run_jobs(self, sc, n):
        for k in range(n):
            w = 48 + 8 * k
            r = sc.post_prompt({"prompt": graphs.empty_image(w, 40, color=0x102030 + k)})
            self.assertImages(r, [(w, 40)])

    def test_trim_at_ready_and_when_idle(self):
        trimmed = self.new_sidecar("trim", env={"IDLE_TRIM_S": "1"})
        kept = self.new_sidecar("notrim", env={"IDLE_TRIM_S": "0"})
        self.assertEqual(trims(trimmed), 1, "one trim once ready")
        self.assertEqual(trims(kept), 0)
        self.assertIn("ready: gave back free heap and", trimmed.log_text())

        self.run_jobs(trimmed, 3)
        self.run_jobs(kept, 3)
        poll(lambda: trims(trimmed) == 2, 20, what="the idle trim, 1 s after the last job")
        self.assertIn("idle: gave back free heap and", trimmed.log_text())
        # Both did the same work; only one unmapped the library pages that
        # start-up and the jobs mapped (several MB with libcurl's libraries).
        a, b = rss_file_kb(trimmed.proc.pid), rss_file_kb(kept.proc.pid)
        self.assertLess(a, b - 1024, "RssFile %d kB trimmed vs %d kB kept" % (a, b))
        self.assertEqual(trims(kept), 0)

        # Everything still runs after the trim, and a second idle period
        # trims again.
        self.run_jobs(trimmed, 2)
        poll(lambda: trims(trimmed) == 3, 20, what="the second idle trim")
        self.run_jobs(trimmed, 1)
        self.assertEqual(trimmed.get("/health").status, 200)
        trimmed.stop(expect_code=0)
        kept.stop(expect_code=0)


class SaladSidecar(harness.Sidecar):
    """Only the SALAD_* variables the test gives reach the sidecar."""

    def sidecar_env(self):
        env = {k: v for k, v in super().sidecar_env().items()
               if not k.startswith("SALAD_") or k in self.extra_env}
        return env


class SaladTest(SidecarTestCase):
    def hold_two_jobs(self, sc, rx):
        """Two async jobs in flight (one hung in ComfyUI, one queued behind it)."""
        sc.emu_fault(mode="hang", class_type="EmptyImage")
        for rid in ("salad-1", "salad-2"):
            r = sc.post_prompt({"prompt": graph(), "id": rid, "webhook_v2": rx.url("/hook")})
            self.assertEqual(r.status, 202, r)
        poll(lambda: sc.get("/prompt/salad-2").json.get("status") == "queued", 10,
             what="salad-2 queued")

    def release(self, sc, rx):
        sc.emu_reset()
        rx.wait_for(2, path="/hook", timeout=20)
        poll(lambda: sc.get("/ready").json.get("queue_depth") == 0, 10, what="queue empty")

    def test_deletion_cost_follows_queue_depth(self):
        rx = webhooks.WebhookReceiver()
        self.addCleanup(rx.close)
        sc = SaladSidecar("salad", env={"SALAD_MACHINE_ID": "test",
                                        "SALAD_METADATA_URL": "http://127.0.0.1:%d" % rx.port})
        self.addCleanup(sc.kill_all)
        sc.start_ready()

        def puts():
            return [h for h in rx.matching("/v1/deletion-cost")]

        def costs():
            out = []
            for h in puts():
                self.assertEqual(h.method, "PUT", h)
                self.assertEqual(h.headers.get("metadata"), "true", h)
                self.assertTrue(h.headers.get("content-type", "").startswith("application/json"),
                                h)
                self.assertIsInstance(h.json, dict, h)
                self.assertEqual(set(h.json), {"deletion_cost"}, h)
                self.assertIsInstance(h.json["deletion_cost"], int, h)
                out.append(h.json["deletion_cost"])
            return out

        # The idle instance reports 0 once.
        rx.wait_for(1, path="/v1/deletion-cost", timeout=10)
        self.assertEqual(costs()[0], 0)
        self.hold_two_jobs(sc, rx)
        poll(lambda: any(c >= 1 for c in costs()), 10, what="a deletion cost >= 1")
        self.assertTrue(all(0 <= c <= 2 for c in costs()), costs())
        self.release(sc, rx)
        poll(lambda: costs()[-1] == 0 and any(c >= 1 for c in costs()[:-1]), 10,
             what="the deletion cost back to 0")
        # Sent only on change: no two equal values in a row.
        c = costs()
        self.assertTrue(all(a != b for a, b in zip(c, c[1:])), c)
        self.assertIn("SaladCloud detected", sc.log_text())
        sc.stop()

    def test_no_salad_variables_no_calls(self):
        rx = webhooks.WebhookReceiver()
        self.addCleanup(rx.close)
        sc = SaladSidecar("nosalad", env={"SALAD_METADATA_URL": "http://127.0.0.1:%d" % rx.port})
        self.addCleanup(sc.kill_all)
        sc.start_ready()
        self.hold_two_jobs(sc, rx)
        # With SALAD_* set, the first call comes within a second of start-up and
        # another within a second of the depth changing; here the depth is 2 for
        # as long as this bounded wait on the receiver lasts.
        rx.assert_no_more(0, path="/v1/deletion-cost", window=2.5)
        self.release(sc, rx)
        rx.assert_no_more(0, path="/v1/deletion-cost", window=1.5)
        self.assertEqual([h for h in rx.matching() if h.path != "/hook"], [])
        self.assertNotIn("SaladCloud detected", sc.log_text())
        sc.stop()
