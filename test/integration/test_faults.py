"""Hardening (issue 5): overload, job time limits, ComfyUI faults the other
suites do not cover, graceful shutdown, slow and hostile clients.

Every test drives the ComfyUI emulator's knobs (test/emulator/CONTROL.md) and
the sidecar's configuration, and each row of docs/fault-matrix.md names the
test that backs it. Faults already covered elsewhere (crash with and without
restart, websocket drop/silence, /view failing or slow, /prompt 500, client
disconnect, webhook receivers that fail) are referenced in the matrix, not
repeated here.

Nothing waits with a fixed sleep for synchronisation: every wait polls a
condition against a deadline. A few tests measure how long something took
(a timeout must not fire early, a client must be cut off in time); those
bounds are generous enough for a loaded machine.

Run: /usr/bin/python3 test/pyrunner.py test/integration --name integration -k Fault
"""
import json
import os
import select
import signal
import socket
import time

import graphs
import harness
import test_async
from harness import poll
from test_async import BASE_ENV, STEP_TIME, BLOCKER_STEPS, new_id, seed

WORKFLOW_DIR = os.path.join(harness.REPO, "comfy-workflows")
EMULATOR_MARK = "comfyui_emulator.py"


def long_graph(prefix, steps=BLOCKER_STEPS, w=24, h=24):
    """A sampler graph that keeps ComfyUI busy for steps x STEP_TIME seconds."""
    return graphs.ksampler(w, h, seed=seed(), steps=steps, prefix=prefix)


def emulator_pids(sc):
    """Live emulator processes launched for this sidecar (its temp dir is on
    their command line)."""
    return sorted(pid for pid, cmd in harness.find_processes(marker=sc.dir)
                  if EMULATOR_MARK in cmd)


def closed_within(sock, timeout):
    """Wait until the peer closes sock (EOF or reset). Returns (seconds, bytes
    received before the close), or (None, bytes) if still open at the deadline."""
    t0 = time.monotonic()
    got = b""
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, got
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, OSError):
            return time.monotonic() - t0, got
        if not d:
            return time.monotonic() - t0, got
        got += d


def raw_exchange(port, data, timeout):
    """Send raw bytes (stopping quietly if the server closes first), read the
    answer until the server closes. Returns (status, {header: value}, parsed
    JSON body or the raw bytes, seconds until the close or None)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        off = 0
        while off < len(data):
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
            try:
                off += s.send(data[off:off + 65536])
            except (BrokenPipeError, ConnectionResetError):
                break
        took, got = closed_within(s, timeout)
    finally:
        s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = None
    if lines and lines[0].startswith("HTTP/"):
        status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        parsed = body
    return status, headers, parsed, took


class FaultCase(test_async.AsyncCase):
    """AsyncCase (pool, receiver, emulator observations, blocker) with a sidecar
    of the test's own."""

    def own_sidecar(self, name, env=None, emu_args=None, mode="supervised", start=True):
        sc = test_async.AsyncSidecar(
            name, mode=mode,
            emu_args=["--step-time", str(STEP_TIME)] if emu_args is None else emu_args,
            env=dict(BASE_ENV, **(env or {})))
        self.addCleanup(sc.kill_all)
        if start:
            sc.start_ready()
        self.sc = sc
        return sc

    def assertErrorType(self, r, status, error_type, location=None):
        j = self.assertError(r, status, location=location)
        self.assertEqual(j.get("error_type"), error_type, r)
        return j

    def log_lines(self, sc, *words):
        return [l for l in sc.log_text().splitlines() if all(w in l for w in words)]


# =================================================================== overload

class QueueLimitFaultTests(FaultCase):

    def test_queue_full_429_retry_after_and_ready_503(self):
        sc = self.own_sidecar("qfull", env={"MAX_QUEUE_DEPTH": "2",
                                            "WORKFLOW_DIR": WORKFLOW_DIR})
        rx = self.receiver()
        # one long job in flight: below the limit, still ready and accepting
        r1, r2 = new_id("qf1"), new_id("qf2")
        f1 = self.start_sync({"id": r1, "prompt": long_graph("q1")}, timeout=60)
        p1 = self.find_pid(r1)
        self.wait_running(p1)
        rd = sc.get("/ready")
        self.assertEqual(rd.status, 200, "one job of MAX_QUEUE_DEPTH=2 made /ready 503: %r" % rd)
        # the second one fills the queue
        f2 = self.start_sync({"id": r2, "prompt": long_graph("q2")}, timeout=60)
        p2 = self.find_pid(r2)
        self.wait_pending(p2)
        full = poll(status_is(sc, "/ready", 503), 5, what="/ready 503 with a full queue")
        with self.soft("/ready while full"):
            self.assertEqual(full.json.get("status"), "not ready", full)
            self.assertEqual(full.json.get("comfyui"), "up", full)
            self.assertEqual(full.json.get("websocket"), "connected", full)
            self.assertEqual(sc.get("/health").status, 200, "/health must stay 200 when full")
        n_emu = len(sc.emu_prompts())
        tries = (
            ("/prompt", "/prompt", {"id": new_id("qf3"), "prompt": graphs.empty_image(8, 8)}),
            ("/prompt webhook_v2", "/prompt", {"prompt": graphs.empty_image(8, 8),
                                               "webhook_v2": rx.url("/qf")}),
            ("/workflow", "/workflow/sdxl/txt2img", {"input": {"prompt": "a cat", "width": 256,
                                                               "height": 256, "steps": 2}}),
        )
        for label, path, body in tries:
            with self.soft(label):
                r = sc.req("POST", path, body=body, timeout=10)
                j = self.assertErrorType(r, 429, "queue_full")
                self.assertLess(r.elapsed, 2, "the 429 was not immediate")
                ra = r.headers.get("retry-after")
                self.assertIsNotNone(ra, "429 without Retry-After: %r" % r.headers)
                self.assertRegex(ra, r"^\d+$")
                self.assertGreaterEqual(int(ra), 1)
                self.assertEqual(j.get("retry_after"), int(ra), "retry_after field != header")
                self.assertIn("MAX_QUEUE_DEPTH", j["error"], j)
        with self.soft("refused requests stay out of ComfyUI"):
            self.assertEqual(len(sc.emu_prompts()), n_emu)
            self.assertEqual(rx.matching(), [], "a refused webhook job got a webhook")
        # end both jobs in ComfyUI (not through the sidecar): room again
        for pid in (p1, p2):
            sc.emu("POST", "/interrupt", {"prompt_id": pid})
            sc.emu("POST", "/queue", {"delete": [pid]})
        for f in (f1, f2):
            f.result(20)
        ready = sc.wait_ready(10)
        self.assertEqual(ready.status, 200)
        r = sc.post_prompt({"prompt": graphs.empty_image(20, 10, prefix="after")})
        self.assertImages(r, [(20, 10)])
        sc.stop(expect_code=0)

    def test_queue_timeout_504_removed_from_comfyui_queue(self):
        sc = self.own_sidecar("qtimeout", env={"QUEUE_TIMEOUT_S": "1",
                                               "EXECUTION_TIMEOUT_S": "0"})
        rx = self.receiver()
        with self.blocker() as (brid, bpid, bfut):
            rid, wid = new_id("qt"), new_id("qtw")
            t0 = time.monotonic()
            fut = self.start_sync({"id": rid, "prompt": long_graph("qt", steps=4)}, timeout=30)
            w = sc.post_prompt({"id": wid, "prompt": long_graph("qw", steps=4),
                                "webhook_v2": rx.url("/qt")}, timeout=10)
            self.assertEqual(w.status, 202, w)
            pid, wpid = self.find_pid(rid), self.find_pid(wid)
            r = fut.result(20)
            elapsed = time.monotonic() - t0
            with self.soft("synchronous client"):
                j = self.assertErrorType(r, 504, "queue_timeout")
                self.assertIn("QUEUE_TIMEOUT_S", j["error"], j)
                self.assertGreaterEqual(elapsed, 0.9, "queue timeout fired before 1 s")
                self.assertLess(elapsed, 4, "queue timeout fired late")
            with self.soft("removed from ComfyUI's queue"):
                for p in (pid, wpid):
                    poll(lambda: self.queue_delete_requests(p), 5,
                         what="POST /queue {delete: [%s]}" % p)
                    poll(lambda: p not in (sc.emu_state().get("pending") or []), 5,
                         what="prompt %s to leave the emulator's queue" % p)
            with self.soft("webhook"):
                hit = rx.wait_for(1, path="/qt", timeout=10)[0]
                self.assert_signed(hit, secrets=(test_async.SECRET_WHSEC,), rid=wid)
                self.assertEqual(hit.json.get("type"), "prompt.failed", hit)
                self.assertEqual(hit.json.get("http_status"), 504, hit)
                self.assertIn("QUEUE_TIMEOUT_S", json.dumps(hit.json.get("error")), hit)
                rx.assert_no_more(1, path="/qt", window=0.3)
            with self.soft("status"):
                st = self.wait_status(rid, "failed").json
                self.assertEqual(st.get("http_status"), 504, st)
            with self.soft("the running job is not touched"):
                self.assertEqual(sc.emu_state().get("running"), bpid)
                self.assertEqual(self.interrupt_requests(bpid), [])
        r = sc.post_prompt({"prompt": graphs.empty_image(12, 10, prefix="next")})
        self.assertImages(r, [(12, 10)])
        sc.stop(expect_code=0)

    def test_execution_timeout_504_interrupts(self):
        sc = self.own_sidecar("xtimeout", env={"EXECUTION_TIMEOUT_S": "1"})
        rid = new_id("xt")
        t0 = time.monotonic()
        fut = self.start_sync({"id": rid, "prompt": long_graph("xt")}, timeout=30)
        pid = self.find_pid(rid)
        r = fut.result(20)
        elapsed = time.monotonic() - t0
        j = self.assertErrorType(r, 504, "execution_timeout")
        self.assertIn("EXECUTION_TIMEOUT_S", j["error"], j)
        self.assertGreaterEqual(elapsed, 0.9, "execution timeout fired before 1 s")
        self.assertLess(elapsed, 4, "execution timeout fired late")
        poll(lambda: self.interrupt_requests(pid), 5,
             what="POST /interrupt {prompt_id: %s}" % pid)
        poll(lambda: not sc.emu_state().get("running"), 5,
             what="the interrupted prompt to stop in the emulator")
        # the next job runs normally (and is well under the limit)
        r = sc.post_prompt({"prompt": graphs.ksampler(16, 16, seed=seed(), steps=5, prefix="nx")})
        self.assertImages(r, [(16, 16)])
        sc.stop(expect_code=0)


def status_is(sc, path, status):
    def check():
        r = sc.get(path, timeout=2)
        return r if r.status == status else None
    return check


# ============================================================ ComfyUI faults

class HangFaultTests(FaultCase):

    def test_hang_504_and_comfyui_restarted(self):
        sc = self.own_sidecar("hang", env={"HANG_TIMEOUT_S": "2",
                                           "ALWAYS_RESTART_COMFYUI": "true"})
        before = emulator_pids(sc)
        self.assertEqual(len(before), 1, before)
        sc.emu_fault(mode="hang")
        rid = new_id("hang")
        r = sc.post_prompt({"id": rid, "prompt": long_graph("hg", steps=20)}, timeout=30)
        j = self.assertErrorType(r, 504, "hang")
        self.assertIn("HANG_TIMEOUT_S", j["error"], j)
        self.assertGreaterEqual(r.elapsed, 1.9, "hang declared before HANG_TIMEOUT_S")
        self.assertLess(r.elapsed, 6, "hang declared late")
        poll(lambda: self.log_lines(sc, "killing ComfyUI"), 5, what='log line "killing ComfyUI"')
        poll(status_is(sc, "/ready", 503), 5, interval=0.01, what="/ready 503 while ComfyUI restarts")
        ready = sc.wait_ready(20)
        self.assertEqual(ready.json.get("comfyui"), "up", ready)
        after = emulator_pids(sc)
        self.assertEqual(len(after), 1, after)
        self.assertNotEqual(after, before, "ComfyUI was not restarted (same process)")
        self.assertEqual(sc.emu_prompts(), [], "the emulator's prompt log survived the restart?")
        st = self.wait_status(rid, "failed").json
        self.assertEqual(st.get("http_status"), 504, st)
        r = sc.post_prompt({"prompt": graphs.ksampler(16, 16, seed=seed(), steps=3, prefix="ok")})
        self.assertImages(r, [(16, 16)])
        sc.stop(expect_code=0)

    def test_hang_without_restart_exits_nonzero(self):
        sc = self.own_sidecar("hang-norestart", env={"HANG_TIMEOUT_S": "1",
                                                     "ALWAYS_RESTART_COMFYUI": "false"})
        sc.emu_fault(mode="hang")
        r = sc.post_prompt({"prompt": long_graph("hn", steps=20)}, timeout=30)
        self.assertErrorType(r, 504, "hang")
        rc = sc.wait_exit(15)
        self.assertIsNotNone(rc, "the sidecar still runs after killing a hung ComfyUI with "
                                 "ALWAYS_RESTART_COMFYUI=false")
        self.assertNotEqual(rc, 0)
        sc.stop(expect_code=rc)


class ComfyUnreachableFaultTests(FaultCase):

    def test_attached_comfyui_gone_503_then_recovers(self):
        sc = self.own_sidecar("unreach", mode="attached", emu_args=["--step-time", "0"])
        harness._kill(sc.emu_proc.pid)
        sc.emu_proc.wait(5)
        poll(status_is(sc, "/ready", 503), 5, what="/ready 503 once ComfyUI is gone")
        self.assertEqual(sc.get("/health").status, 200, "/health must stay 200")
        r = sc.post_prompt({"prompt": graphs.empty_image(8, 8, prefix="gone")}, timeout=30)
        self.assertError(r, 503)
        self.assertLess(r.elapsed, 5, "the 503 was not immediate")
        self.assertRegex(r.headers.get("retry-after", ""), r"^\d+$", "503 without Retry-After")
        self.assertIsNone(sc.proc.poll(), "the sidecar exited although it only attaches")
        # ComfyUI comes back on the same port: the sidecar notices by itself
        sc.start_emulator()
        sc.wait_ready(20)
        r = sc.post_prompt({"prompt": graphs.empty_image(14, 10, prefix="back")})
        self.assertImages(r, [(14, 10)])
        sc.stop(expect_code=0)


class OomFaultTests(FaultCase):

    def test_oom_500_and_free_called(self):
        sc = self.own_sidecar("oom")
        sc.emu_fault(mode="oom")
        r = sc.post_prompt({"prompt": graphs.ksampler(32, 32, seed=seed(), steps=4, prefix="oom")})
        j = self.assertErrorType(r, 500, "out_of_memory")
        self.assertIn("memory", j["error"].lower(), j)
        self.assertEqual(j.get("location"), "prompt.3", j)

        def free_calls():
            return [q for q in sc.emu_requests()
                    if q["method"] == "POST" and q["path"] in ("/free", "/api/free")]
        calls = poll(free_calls, 5, what="POST /free after the out-of-memory error")
        self.assertEqual(len(calls), 1, calls)
        self.assertIs(calls[0]["body"].get("unload_models"), True, calls)
        self.assertIs(calls[0]["body"].get("free_memory"), True, calls)
        r = sc.post_prompt({"prompt": graphs.ksampler(32, 32, seed=seed(), steps=4, prefix="ok")})
        self.assertImages(r, [(32, 32)])
        # a runtime error that is not an OOM does not free memory
        sc.emu_fault(mode="runtime_error", message="boom")
        r = sc.post_prompt({"prompt": graphs.ksampler(32, 32, seed=seed(), steps=4, prefix="rt")})
        self.assertEqual(r.status, 500, r)
        self.assertNotEqual(r.json.get("error_type"), "out_of_memory", r)
        self.assertEqual(len(free_calls()), 1, "/free called for a plain runtime error")
        sc.stop(expect_code=0)


# ========================================================= graceful shutdown

class ShutdownFaultTests(FaultCase):

    def job_finishes(self, sig):
        sc = self.own_sidecar("drain-%s" % sig.name, env={"SHUTDOWN_GRACE_S": "15",
                                                          "WORKFLOW_DIR": WORKFLOW_DIR})
        rid = new_id("drain")
        # 100 steps x 0.02 s: about 2 s of sampling
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            40, 32, seed=seed(), steps=100, prefix="dr")}, timeout=30)
        self.wait_running(self.find_pid(rid))
        emus = emulator_pids(sc)
        t_sig = time.monotonic()
        sc.proc.send_signal(sig)
        rd = poll(status_is(sc, "/ready", 503), 3, interval=0.01,
                  what="/ready 503 during the drain")
        with self.soft("during the drain"):
            self.assertFalse(fut.done(), "the job ended before /ready said 503")
            self.assertEqual(rd.json.get("status"), "not ready", rd)
            for path, body in (("/prompt", {"prompt": graphs.empty_image(8, 8, prefix="late")}),
                               ("/workflow/sdxl/txt2img", {"input": {"prompt": "x"}})):
                p = sc.req("POST", path, body=body, timeout=5)
                j = self.assertError(p, 503)
                self.assertIn("shutting down", j["error"], j)
            self.assertFalse(fut.done(), "the job ended before the checks: the drain was not seen")
        r = fut.result(20)
        self.assertImages(r, [(40, 32)])
        rc = sc.wait_exit(15)
        self.assertEqual(rc, 0, "exit status after %s" % sig.name)
        self.assertLess(time.monotonic() - t_sig, 12, "the drain did not end with the job")
        poll(lambda: not [p for p in emus if (harness._proc_info(p) or ("", "Z"))[1] != "Z"],
             3, what="the ComfyUI child %r to be gone" % emus)
        sc.stop(expect_code=0)   # also checks that nothing of the sidecar is left

    def test_sigterm_running_job_finishes(self):
        self.job_finishes(signal.SIGTERM)

    def test_sigint_running_job_finishes(self):
        self.job_finishes(signal.SIGINT)

    def job_too_long(self, sig):
        sc = self.own_sidecar("grace-%s" % sig.name, env={"SHUTDOWN_GRACE_S": "1"})
        rx = self.receiver()
        rid, wid = new_id("long"), new_id("longwh")
        fut = self.start_sync({"id": rid, "prompt": long_graph("lg")}, timeout=30)
        self.wait_running(self.find_pid(rid))
        w = sc.post_prompt({"id": wid, "prompt": long_graph("lw"), "webhook_v2": rx.url("/sd")})
        self.assertEqual(w.status, 202, w)
        self.wait_pending(self.find_pid(wid))
        t_sig = time.monotonic()
        sc.proc.send_signal(sig)
        r = fut.result(20)
        with self.soft("synchronous client"):
            j = self.assertError(r, 503)
            self.assertIn("shutting down", j["error"], j)
            self.assertIn("SHUTDOWN_GRACE_S", j["error"], j)
            self.assertGreaterEqual(time.monotonic() - t_sig, 0.9, "failed before the grace period")
        rc = sc.wait_exit(15)
        self.assertEqual(rc, 0, "exit status after %s" % sig.name)
        self.assertLess(time.monotonic() - t_sig, 10, "shutdown took too long")
        hits = rx.matching("/sd")
        self.assertEqual(len(hits), 1, "webhooks received before the exit: %r" % hits)
        self.assert_signed(hits[0], secrets=(test_async.SECRET_WHSEC,), rid=wid)
        self.assertEqual(hits[0].json.get("type"), "prompt.failed", hits[0])
        self.assertEqual(hits[0].json.get("http_status"), 503, hits[0])
        self.assertIn("shutting down", json.dumps(hits[0].json.get("error")), hits[0])
        sc.stop(expect_code=0)

    def test_sigterm_job_over_grace_503_and_webhook(self):
        self.job_too_long(signal.SIGTERM)

    def test_sigint_job_over_grace_503_and_webhook(self):
        self.job_too_long(signal.SIGINT)


# ================================================ slow and hostile clients

class HostileInputFaultTests(FaultCase):
    """One sidecar for the class: REQUEST_TIMEOUT_S=1, MAX_GRAPH_NODES=50."""

    @classmethod
    def setUpClass(cls):
        cls.shared = test_async.AsyncSidecar(
            "hostile", emu_args=["--step-time", str(STEP_TIME)],
            env=dict(BASE_ENV, REQUEST_TIMEOUT_S="1", MAX_GRAPH_NODES="50"))
        try:
            cls.shared.start_ready()
        except BaseException:
            cls.shared.kill_all()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.shared.stop(expect_code=0)

    def setUp(self):
        self.sc = self.shared
        self.sc.emu_reset()
        self.sc.wait_ready()

    def quick_ok(self, w=10, h=8):
        r = self.sc.post_prompt({"prompt": graphs.empty_image(w, h, color=w * h, prefix="ok")},
                                timeout=10)
        self.assertImages(r, [(w, h)])
        return r

    def test_slowloris_partial_request_cut_off(self):
        port = self.sc.port
        heads = {
            "headers never finished": b"POST /prompt HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            "request line only": b"GET /ready HTTP/1.1\r\n",
            "body never finished": (b"POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                    b"application/json\r\nContent-Length: 1000\r\n\r\n{\"pro"),
            "idle keep-alive": None,
        }
        socks = {}
        for label, data in heads.items():
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(s.close)
            if data is not None:
                s.sendall(data)
            socks[label] = (time.monotonic(), s)
        # meanwhile the service answers normally
        for i in range(3):
            t = time.monotonic()
            self.quick_ok(10 + i, 8)
            self.assertLess(time.monotonic() - t, 1, "a normal request was held up by slow clients")
        for label, (t0, s) in socks.items():
            with self.soft(label):
                took, got = closed_within(s, 5 - (time.monotonic() - t0))
                self.assertIsNotNone(took, "the server kept a silent client for 5 s "
                                           "(REQUEST_TIMEOUT_S=1)")
                total = time.monotonic() - t0
                self.assertGreaterEqual(total, 0.8, "cut off before REQUEST_TIMEOUT_S")
                self.assertLess(total, 3.5, "cut off late")
                self.assertNotIn(b" 200 ", got.split(b"\r\n", 1)[0], got)
        self.assertEqual(self.sc.get("/ready").status, 200)

    def test_slowloris_drip_feed_cut_off(self):
        # One header byte every 0.25 s: never silent for REQUEST_TIMEOUT_S=1, but
        # README: REQUEST_TIMEOUT_S is "time a client has to send a request's
        # headers and body (slow clients are cut off)". Allow 4x the limit.
        s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=10)
        self.addCleanup(s.close)
        data = b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Drip: " + b"a" * 400
        t0 = time.monotonic()
        cut = None
        for b in data:
            if time.monotonic() - t0 > 4.5:
                break
            try:
                s.send(bytes([b]))
            except OSError:
                cut = time.monotonic() - t0
                break
            took, _ = closed_within(s, 0.25)
            if took is not None:
                cut = time.monotonic() - t0
                break
        self.assertIsNotNone(cut, "a client dripping one header byte every 0.25 s was still "
                                  "connected after %.1f s with REQUEST_TIMEOUT_S=1"
                             % (time.monotonic() - t0))
        self.assertLess(cut, 4.5)
        self.quick_ok()

    def test_oversized_headers_and_body(self):
        before = len(self.sc.emu_prompts())
        port = self.sc.port
        body = json.dumps({"prompt": graphs.empty_image(8, 8)}).encode()
        post_head = (b"POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n" % len(body))
        cases = (
            ("one 70 KB header", b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000
             + b"\r\n\r\n", (400, 413, 431)),
            ("70 KB of small headers on POST /prompt", post_head + b"".join(
                b"X-H%04d: %s\r\n" % (i, b"b" * 60) for i in range(1100)) + b"\r\n" + body,
             (400, 413, 431)),
            # the body is refused from its declared length, before it is sent
            ("Content-Length over MAX_BODY_SIZE_MB (default 100)",
             b"POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n{" % (101 << 20), (413,)),
        )
        for label, data, statuses in cases:
            with self.soft(label):
                status, headers, err, took = raw_exchange(port, data, 5)
                self.assertIsNotNone(took, "no answer within 5 s")
                self.assertIn(status, statuses, (status, headers, err))
                self.assertIsInstance(err, dict, "error body is not JSON: %r" % err)
                self.assertIsInstance(err.get("error"), str, err)
                self.assertTrue(err["error"], err)
        # (a body really sent over the limit: test_lifecycle AttachedTests.test_body_over_max_is_413)
        self.assertEqual(len(self.sc.emu_prompts()), before, "an oversized request reached ComfyUI")
        self.quick_ok()

    def test_hostile_bodies_4xx_and_nothing_disturbed(self):
        sc = self.sc
        # A job in flight through the whole battery (250 steps x 0.02 s: 5 s).
        rid = new_id("inflight")
        fut = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            40, 24, seed=seed(), steps=250, prefix="if")}, timeout=40)
        self.wait_running(self.find_pid(rid))
        n_emu = len(sc.emu_prompts())

        def big_graph(n):
            g = {}
            for i in range(n // 2):
                g["i%d" % i] = {"class_type": "EmptyImage", "inputs": {
                    "width": 8, "height": 8, "batch_size": 1, "color": i + 1}}
                g["s%d" % i] = {"class_type": "SaveImage", "inputs": {
                    "images": ["i%d" % i, 0], "filename_prefix": "n"}}
            if n % 2:
                g["x"] = {"class_type": "EmptyImage", "inputs": {
                    "width": 8, "height": 8, "batch_size": 1, "color": 0}}
            return g

        ok_node = b'"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, ' \
                  b'"batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", ' \
                  b'"inputs": {"images": ["1", 0], "filename_prefix": "u"}}'
        cases = [
            # (label, body, status, location or None, error_type or None)
            ("10,000 nested [", b"[" * 10000, 400, "body", None),
            ("10,000 nested [ inside an input",
             b'{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"a": '
             + b"[" * 10000 + b"]" * 10000 + b"}}}}", 400, "body", None),
            ("10,000 nested {", b'{"a":' * 10000 + b"1" + b"}" * 10000, 400, "body", None),
            ("invalid UTF-8 in a class_type",
             b'{"prompt": {"1": {"class_type": "Empty\xff\xfeImage", "inputs": {}}}}',
             400, "body", None),
            ("invalid UTF-8 in the id", b'{"id": "a\xc3", "prompt": {' + ok_node + b"}}",
             400, "body", None),
            ("overlong UTF-8 in a text",
             b'{"prompt": {' + ok_node + b', "3": {"class_type": "CLIPTextEncode", '
             b'"inputs": {"text": "\xc0\xaf"}}}}', 400, "body", None),
            ("lone surrogate escape", b'{"prompt": {' + ok_node.replace(b'"u"', b'"\\ud800"')
             + b"}}", 400, "body", None),
            ("51 nodes (MAX_GRAPH_NODES=50)", {"prompt": big_graph(51)}, 400, "prompt", None),
            ("id ../x", {"id": "../x", "prompt": graphs.empty_image(8, 8)}, 400, "id", None),
            ("id a/b", {"id": "a/b", "prompt": graphs.empty_image(8, 8)}, 400, "id", None),
            ("id ..", {"id": "..", "prompt": graphs.empty_image(8, 8)}, 400, "id", None),
            ("id with NUL", {"id": "a\u0000b", "prompt": graphs.empty_image(8, 8)}, 400, None,
             None),
            ("colliding id", {"id": rid, "prompt": graphs.empty_image(8, 8)}, 409, "id",
             "id_in_use"),
        ]
        for p in ("../x", "/abs", "a/../b", "sub/../../x", "\\abs", "a\\..\\b", "..", "sub/.."):
            cases.append(("filename_prefix %r" % p,
                          {"prompt": graphs.empty_image(8, 8, prefix=p)}, 400,
                          "prompt.2.inputs.filename_prefix", None))
        for label, body, status, loc, etype in cases:
            with self.soft(label):
                r = sc.post_prompt(body, timeout=10)
                j = self.assertError(r, status, location=loc)
                if etype:
                    self.assertEqual(j.get("error_type"), etype, j)
        with self.soft("the battery overlapped the job in flight"):
            self.assertFalse(fut.done(), "the job in flight ended during the battery "
                                         "(it should have run 5 s)")
        with self.soft("nothing reached ComfyUI"):
            self.assertEqual(len(sc.emu_prompts()), n_emu)
        # The job in flight is undisturbed, the service answers normally.
        r = fut.result(30)
        self.assertImages(r, [(40, 24)])
        self.assertEqual(r.json.get("id"), rid)
        r = sc.post_prompt({"prompt": big_graph(50)})
        self.assertEqual(r.status, 200, "a graph of exactly MAX_GRAPH_NODES nodes: %r" % r)
        self.assertEqual(len(r.json.get("images") or []), 25, r)
        self.assertEqual(sc.get("/ready").status, 200)


def client_connections(pid, port):
    """Client connections the process holds on its listening port right now:
    ESTABLISHED sockets with that local port whose inode is one of its
    descriptors (connections still in the kernel's backlog are not counted)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        return 0
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state, inode = parts[1], parts[3], parts[9]
                    if state == "01" and int(local.rsplit(":", 1)[1], 16) == port \
                            and inode in inodes:
                        n += 1
        except OSError:
            pass
    return n


class ConnectionFloodFaultTests(FaultCase):
    """README: MAX_CONNECTIONS is the number of client connections at once;
    beyond it the longest-idle connection is closed to make room, or, if all
    are busy, new ones wait in the kernel's backlog. MAX_CONNECTIONS=16 is the
    smallest value allowed."""

    def test_idle_flood_cannot_lock_clients_out(self):
        sc = self.own_sidecar("flood", env={"MAX_CONNECTIONS": "16", "REQUEST_TIMEOUT_S": "2"})
        rid = new_id("flood")
        # 150 steps x 0.02 s: about 3 s, across the flood
        job = self.start_sync({"id": rid, "prompt": graphs.ksampler(
            32, 16, seed=seed(), steps=150, prefix="fl")}, timeout=40)
        self.wait_running(self.find_pid(rid))
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        peak = 0
        for _ in range(40):
            socks.append(socket.create_connection(("127.0.0.1", sc.port), timeout=10))
            peak = max(peak, client_connections(sc.proc.pid, sc.port))
        # let the sidecar accept what it will, then count again
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:
            peak = max(peak, client_connections(sc.proc.pid, sc.port))
        with self.soft("connections held at once"):
            # the job's own connection is one of them; one more may be open for
            # the instant between accepting it and closing the oldest
            self.assertLessEqual(peak, 16 + 1, "the sidecar held %d client connections with "
                                               "MAX_CONNECTIONS=16" % peak)
        ready = self.pool().submit(sc.get, "/ready", 20)
        prompt = self.pool().submit(sc.post_prompt, {"prompt": graphs.empty_image(
            18, 12, prefix="fl2")}, 20)
        r = ready.result(25)
        with self.soft("normal requests during the flood"):
            self.assertEqual(r.status, 200, r)
            self.assertLess(r.elapsed, 1.0, "/ready was held up by idle connections")
            # (the prompt waits in ComfyUI's queue behind the job in flight)
            self.assertImages(prompt.result(25), [(18, 12)])
        with self.soft("the job in flight"):
            self.assertImages(job.result(30), [(32, 16)])
        # every idle connection is closed by the server (made room for, or
        # cut off after REQUEST_TIMEOUT_S=2)
        deadline = time.monotonic() + 8
        still = list(socks)
        while still and time.monotonic() < deadline:
            r_, _, _ = select.select(still, [], [], 0.2)
            for s in r_:
                try:
                    if s.recv(4096) == b"":
                        still.remove(s)
                except OSError:
                    still.remove(s)
        self.assertEqual(len(still), 0, "%d idle connections of 40 still open after 8 s"
                         % len(still))
        self.assertIsNone(sc.proc.poll(), "the sidecar died")
        sc.wait_ready(5)
        sc.stop(expect_code=0)

    def test_busy_connections_make_new_ones_wait(self):
        # 16 event streams of a long job are 16 busy connections: new clients
        # wait in the backlog until one of them ends. (One connection over
        # the limit is tolerated: the sidecar can only count a connection
        # once it has accepted it.)
        sc = self.own_sidecar("busy", env={"MAX_CONNECTIONS": "16", "REQUEST_TIMEOUT_S": "5"})
        rid = new_id("busy")
        w = sc.post_prompt({"id": rid, "prompt": long_graph("bz"),
                            "webhook_v2": self.receiver().url("/b")})
        self.assertEqual(w.status, 202, w)
        pid = self.find_pid(rid)
        self.wait_running(pid)
        streams = []
        for _ in range(16):
            st = test_async.SSEStream(sc.port, "/prompt/%s/events" % rid)
            self.addCleanup(st.close)
            self.assertEqual(st.status, 200)
            streams.append(st)
        late = [self.pool().submit(sc.get, "/ready", 30) for _ in range(3)]
        t0 = time.monotonic()
        peak = 0
        while time.monotonic() - t0 < 1.0:
            peak = max(peak, client_connections(sc.proc.pid, sc.port))
        answered = [f for f in late if f.done()]
        with self.soft("clients beyond MAX_CONNECTIONS wait while all are busy"):
            self.assertLessEqual(peak, 16 + 1, "%d client connections at once" % peak)
            self.assertLessEqual(len(answered), 1, "%d of 3 new clients were answered within 1 s "
                                                   "while 16 connections were busy"
                                 % len(answered))
        # the job ends: the streams end, their connections free, the rest is answered
        sc.emu("POST", "/interrupt", {"prompt_id": pid})
        for k, st in enumerate(streams):
            st.read_to_end(10)
            items = st.items
            st.close()
            with self.soft("stream %d" % k):
                # busy connections are never closed to make room: each stream
                # got to the job's final event
                evs = [i["event"] for i in items if i["kind"] == "event"]
                self.assertTrue(evs and evs[-1] == "failed", "stream %d ended with %r"
                                % (k, evs[-3:]))
        for f in late:
            r = f.result(10)
            self.assertEqual(r.status, 200, r)
        self.assertIsNone(sc.proc.poll(), "the sidecar died")
        sc.stop(expect_code=0)
