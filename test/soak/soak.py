#!/usr/bin/python3
"""Soak test of comfy-sidecar (issue 5): N requests against the ComfyUI
emulator with faults injected, checking that no request is lost or hangs and
that the sidecar's memory stays flat.

    /usr/bin/python3 test/soak/soak.py [N] [--concurrency 32] [--time-limit 1200]

SIDECAR_BIN (environment) names the binary, default ./comfy-sidecar.

What it does
- Starts the sidecar (test/integration/harness.py) supervising the emulator
  (ALWAYS_RESTART_COMFYUI=true, --step-time 0, small flat images) with
  LOG_LEVEL=info and JOB_HISTORY_MAX=200 (see "flat memory" below).
- Sends N requests with `concurrency` clients (aiohttp): a mix of synchronous
  POST /prompt (a KSampler graph or EmptyImage -> SaveImage, sizes varying),
  POST /workflow/sdxl/txt2img (256..384 px, 2 steps) and POST /prompt with
  webhook_v2 to a local receiver (every 10th request).
- Injects a fault into the emulator every FAULT_EVERY (500) requests sent,
  in turn ws_drop, ws_silence, view_error, runtime_error, prompt_500; every
  CRASH_EVERY (2500) requests the fault is a crash of ComfyUI (exit 1)
  instead (the cycle then continues where it was).

Pass criteria (each failure is counted and listed)
- every request is answered within CLIENT_TIMEOUT (60 s): a timeout is a hang;
- 200 carries exactly one image that decodes (strict base64) to a PNG of the
  requested size, and the answer's id is the request's; 202 (webhook jobs)
  answers {"id", "status": "ok"}; 500, 502, 503 and 504 are the statuses the
  injected faults cause: they are counted and must carry a JSON "error". Any
  other status is a failure. A client that gets a 503 waits for /ready 200
  before its next request, as a load balancer would.
- the fault-caused errors stay within a budget: FAULT_BUDGET per non-crash
  fault and CRASH_BUDGET per crash (a crash fails every job in flight);
- every webhook_v2 job that was answered 202 gets exactly one webhook
  (prompt.complete with its image of the right size, or prompt.failed), and
  no webhook arrives for a job that was not accepted;
- the sidecar never exits during the run, and exits 0 on SIGTERM at the end
  with no process left behind;
- flat memory: the sidecar's VmRSS (sampled from /proc/<pid>/status every
  500 answers) at the end is within max(10 MiB, 25 %) of the sample taken
  after the first 1,000 answers. JOB_HISTORY_MAX=200 keeps at most 200
  finished job records, so the job history is full well before the baseline
  (with the default 1000 it would still be filling at the baseline). For
  runs shorter than 1,000 requests the baseline is the first sample.
- the whole run is stopped after --time-limit seconds (default 1200 = 20
  minutes) whatever happens; reaching it is a failure.

The last line is "soak: N passed, N failed" (requests answered as expected,
and failures of any kind); exit status 1 on any failure.
"""
import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import aiohttp  # noqa: E402

import graphs  # noqa: E402
import harness  # noqa: E402
import webhooks  # noqa: E402

CLIENT_TIMEOUT = 60
FAULT_EVERY = 500
CRASH_EVERY = 2500
FAULT_CYCLE = ("ws_drop", "ws_silence", "view_error", "runtime_error", "prompt_500")
FAULT_BUDGET = 3
CRASH_BUDGET = 80
SAMPLE_EVERY = 500
BASELINE_AT = 1000
FAULT_STATUSES = (500, 502, 503, 504)
WORKFLOW_DIR = os.path.join(REPO, "comfy-workflows")


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def png_size_of(b64):
    raw = base64.b64decode(b64, validate=True)
    return harness.png_size(raw)


class Soak:
    def __init__(self, n, concurrency, time_limit):
        self.n = n
        self.concurrency = concurrency
        self.time_limit = time_limit
        self.next_i = 0
        self.answered = 0
        self.ok = 0
        self.status_counts = {}
        self.fault_errors = {}          # status -> count
        self.failures = []              # strings
        self.faults = []                # (request index, mode)
        self.samples = []               # (answered, rss_kb)
        self.accepted_hooks = {}        # id -> (w, h)
        self.refused_hooks = set()      # webhook job ids answered with an error
        self.ready_event = None
        self.kinds = {"prompt": 0, "ksampler": 0, "workflow": 0, "webhook": 0}
        self.t_start = None
        self.exited_reported = False
        self.n_minor = 0                # non-crash faults injected so far (the cycle)

    # -- setup ------------------------------------------------------------------
    def start(self):
        harness.SIDECAR_BIN = os.path.abspath(os.environ.get("SIDECAR_BIN") or
                                              os.path.join(REPO, "comfy-sidecar"))
        self.rx = webhooks.WebhookReceiver()
        self.sc = harness.Sidecar(
            "soak", emu_args=["--step-time", "0"],
            env={"ALWAYS_RESTART_COMFYUI": "true", "LOG_LEVEL": "info",
                 "JOB_HISTORY_MAX": "200", "WORKFLOW_DIR": WORKFLOW_DIR,
                 "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"s" * 32).decode(),
                 "WEBHOOK_TIMEOUT_S": "10", "COMFY_TIMEOUT_S": "10",
                 "RECONCILE_INTERVAL_MS": "500"})
        self.sc.start_ready(30)
        self.pid = self.sc.proc.pid
        self.base = "http://127.0.0.1:%d" % self.sc.port
        self.emu_base = "http://127.0.0.1:%d" % self.sc.emu_port
        print("soak: sidecar %s pid %d on port %d, log %s" % (
            harness.SIDECAR_BIN, self.pid, self.sc.port, self.sc.log_path), flush=True)

    # -- requests ---------------------------------------------------------------
    def make_request(self, i):
        """(path, body, expected (w, h), is_webhook)."""
        rid = "soak-%06d" % i
        if i % 10 == 9:
            w, h = 8 + i % 17, 8 + (i // 17) % 13
            self.kinds["webhook"] += 1
            return "/prompt", {"id": rid, "prompt": graphs.empty_image(
                w, h, color=i & 0xFFFFFF, prefix="wh"),
                "webhook_v2": self.rx.url("/hook")}, (w, h), True
        if i % 5 == 3:
            w, h = 256 + 64 * (i % 3), 256 + 64 * ((i // 3) % 2)
            self.kinds["workflow"] += 1
            return "/workflow/sdxl/txt2img", {"id": rid, "input": {
                "prompt": "soak %d" % i, "width": w, "height": h, "steps": 2,
                "seed": i}}, (w, h), False
        if i % 2 == 0:
            w, h = 16 + 8 * (i % 6), 16 + 8 * ((i // 6) % 5)
            self.kinds["ksampler"] += 1
            return "/prompt", {"id": rid, "prompt": graphs.ksampler(
                w, h, seed=i, steps=2, prefix="ks")}, (w, h), False
        w, h = 4 + i % 29, 4 + (i // 29) % 23
        self.kinds["prompt"] += 1
        return "/prompt", {"id": rid, "prompt": graphs.empty_image(
            w, h, color=i & 0xFFFFFF, prefix="im")}, (w, h), False

    def fail(self, msg):
        self.failures.append(msg)
        if len(self.failures) <= 30:
            print("soak: FAILURE: %s" % msg, flush=True)

    async def inject(self, session, i):
        if i % CRASH_EVERY == 0:
            fault = {"mode": "crash", "exit_code": 1}
        else:
            mode = FAULT_CYCLE[self.n_minor % len(FAULT_CYCLE)]
            self.n_minor += 1
            fault = {"mode": mode}
            if mode == "view_error":
                fault["status"] = 500
            if mode == "ws_drop":
                fault["after"] = 2
        try:
            async with session.post(self.emu_base + "/__emulator/fault", json=fault,
                                    timeout=aiohttp.ClientTimeout(total=10)) as r:
                await r.read()
                if r.status != 200:
                    self.fail("arming %r answered %d" % (fault, r.status))
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            # ComfyUI may be restarting after a crash; the fault is skipped
            print("soak: could not arm %r at request %d: %r" % (fault, i, e), flush=True)
            return
        self.faults.append((i, fault["mode"]))

    async def wait_ready(self, session, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sc.proc.poll() is not None:
                return False
            try:
                async with session.get(self.base + "/ready",
                                       timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
                    if r.status == 200:
                        return True
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.05)
        return False

    def sample(self):
        kb = rss_kb(self.pid)
        self.samples.append((self.answered, kb))
        print("soak: %6d answered  %6.1f s  VmRSS %s kB  ok %d  fault errors %s" % (
            self.answered, time.monotonic() - self.t_start, kb, self.ok,
            dict(sorted(self.fault_errors.items()))), flush=True)

    async def one(self, session, i):
        path, body, size, is_hook = self.make_request(i)
        rid = body["id"]
        try:
            async with session.post(self.base + path, json=body,
                                    timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)) as r:
                data = await r.read()
                status = r.status
                headers = r.headers
        except asyncio.TimeoutError:
            self.fail("request %s %s: no answer within %d s (hang)" % (rid, path, CLIENT_TIMEOUT))
            return None
        except aiohttp.ClientError as e:
            self.fail("request %s %s: connection error %r" % (rid, path, e))
            return None
        self.answered += 1
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        try:
            js = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            js = None
        if status == 200 and not is_hook:
            try:
                assert isinstance(js, dict), "body is not a JSON object"
                assert js.get("id") == rid, "id %r" % js.get("id")
                imgs = js.get("images")
                assert isinstance(imgs, list) and len(imgs) == 1, "images: %r" % (
                    None if imgs is None else len(imgs))
                got = png_size_of(imgs[0])
                assert tuple(got) == tuple(size), "image %r, expected %r" % (got, size)
            except (AssertionError, ValueError) as e:
                self.fail("request %s %s: bad 200: %s" % (rid, path, e))
                return status
            self.ok += 1
        elif status == 202 and is_hook:
            if not (isinstance(js, dict) and js.get("id") == rid and js.get("status") == "ok"):
                self.fail("request %s: bad 202 body %r" % (rid, data[:200]))
                return status
            self.accepted_hooks[rid] = size
            self.ok += 1
        elif status in FAULT_STATUSES:
            self.fault_errors[status] = self.fault_errors.get(status, 0) + 1
            if not (isinstance(js, dict) and isinstance(js.get("error"), str) and js["error"]):
                self.fail("request %s %s: %d without a JSON error: %r" % (rid, path, status,
                                                                          data[:200]))
            if is_hook:
                self.refused_hooks.add(rid)
            if status == 503 and "retry-after" not in headers:
                self.fail("request %s: 503 without Retry-After" % rid)
        else:
            self.fail("request %s %s: unexpected status %d: %r" % (rid, path, status, data[:300]))
        return status

    async def worker(self, session):
        while True:
            if self.next_i >= self.n:
                return
            i = self.next_i
            self.next_i += 1
            if i > 0 and i % FAULT_EVERY == 0:
                await self.inject(session, i)
            status = await self.one(session, i)
            if self.answered and self.answered % SAMPLE_EVERY == 0 and \
                    (not self.samples or self.samples[-1][0] != self.answered):
                self.sample()
            if self.sc.proc.poll() is not None:
                if not self.exited_reported:
                    self.exited_reported = True
                    self.fail("the sidecar exited with %s during the run"
                              % self.sc.proc.returncode)
                self.next_i = self.n
                return
            if status == 503:
                if not await self.wait_ready(session):
                    self.fail("the sidecar was not ready again within 60 s of a 503")

    async def run_load(self):
        conn = aiohttp.TCPConnector(limit=self.concurrency * 2, force_close=False)
        async with aiohttp.ClientSession(connector=conn) as session:
            await asyncio.gather(*(self.worker(session) for _ in range(self.concurrency)))

    # -- checks after the load ----------------------------------------------------
    def check_webhooks(self, timeout=60):
        deadline = time.monotonic() + timeout
        want = set(self.accepted_hooks)
        while True:
            got = {h.headers.get("webhook-id") for h in self.rx.matching("/hook")}
            if want <= got or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        by_id = {}
        for h in self.rx.matching("/hook"):
            by_id.setdefault(h.headers.get("webhook-id"), []).append(h)
        complete = failed = 0
        for rid, size in sorted(self.accepted_hooks.items()):
            hits = by_id.get(rid, [])
            if len(hits) != 1:
                self.fail("webhook job %s: %d webhooks (expected exactly 1)" % (rid, len(hits)))
                continue
            b = hits[0].json or {}
            if b.get("type") == "prompt.complete":
                try:
                    assert len(b.get("images") or []) == 1, "images"
                    assert tuple(png_size_of(b["images"][0])) == tuple(size), "size"
                    complete += 1
                except (AssertionError, ValueError) as e:
                    self.fail("webhook job %s: bad prompt.complete (%s)" % (rid, e))
            elif b.get("type") == "prompt.failed" and b.get("http_status") in FAULT_STATUSES:
                failed += 1
            else:
                self.fail("webhook job %s: unexpected webhook %r" % (rid, hits[0].body[:200]))
        for rid in by_id:
            if rid not in self.accepted_hooks:
                self.fail("webhook for a job that was not accepted: %r" % rid)
        return complete, failed

    def check_memory(self):
        if not self.samples:
            self.fail("no RSS sample")
            return None
        base = [s for s in self.samples if s[0] >= BASELINE_AT]
        base = base[0] if base else self.samples[0]
        end = (self.answered, rss_kb(self.pid))
        if base[1] is None or end[1] is None:
            self.fail("could not read the sidecar's VmRSS")
            return None
        allowed = max(10 * 1024, base[1] * 0.25)
        growth = end[1] - base[1]
        ok = growth <= allowed
        if not ok:
            self.fail("memory grew by %d kB from %d kB (after %d answers) to %d kB at the end; "
                      "allowed %d kB" % (growth, base[1], base[0], end[1], allowed))
        return base, end, allowed, ok

    def check_budget(self):
        crashes = sum(1 for _, m in self.faults if m == "crash")
        others = len(self.faults) - crashes
        budget = FAULT_BUDGET * others + CRASH_BUDGET * crashes
        errors = sum(self.fault_errors.values())
        if errors > budget:
            self.fail("%d error answers, more than the %d the %d injected faults explain"
                      % (errors, budget, len(self.faults)))
        return errors, budget

    # -- main ---------------------------------------------------------------------
    def main(self):
        self.t_start = time.monotonic()
        self.start()
        timed_out = False
        try:
            try:
                asyncio.run(asyncio.wait_for(self.run_load(), self.time_limit))
            except asyncio.TimeoutError:
                timed_out = True
                self.fail("time limit of %d s reached after %d answers" % (self.time_limit,
                                                                          self.answered))
            load_s = time.monotonic() - self.t_start
            if not timed_out and (not self.samples or self.samples[-1][0] != self.answered):
                self.sample()
            complete, failed = self.check_webhooks()
            mem = self.check_memory()
            errors, budget = self.check_budget()
            alive = self.sc.proc.poll() is None
            if not alive:
                self.fail("the sidecar is not running at the end (status %s)"
                          % self.sc.proc.returncode)
            restarts = len([l for l in self.sc.log_text().splitlines()
                            if "restarting ComfyUI" in l])
        finally:
            try:
                self.sc.stop(expect_code=0, timeout=30)
            except AssertionError as e:
                self.fail("stopping the sidecar: %s" % str(e).splitlines()[0])
            self.rx.close()
        lost = self.n - self.answered if not timed_out else None
        if lost:
            self.fail("%d request(s) without an answer" % lost)

        print("")
        print("soak summary")
        print("  requests        %d sent, %d answered in %.1f s (%.0f req/s), concurrency %d"
              % (self.next_i if self.next_i < self.n else self.n, self.answered, load_s,
                 self.answered / load_s if load_s else 0, self.concurrency))
        print("  mix             %r" % self.kinds)
        print("  statuses        %r" % dict(sorted(self.status_counts.items())))
        print("  faults injected %d: %r" % (len(self.faults), [m for _, m in self.faults]))
        print("  ComfyUI restarts %d" % restarts)
        print("  fault errors    %d (budget %d): %r" % (errors, budget,
                                                         dict(sorted(self.fault_errors.items()))))
        print("  webhooks        %d accepted jobs: %d prompt.complete, %d prompt.failed; "
              "%d webhook jobs refused directly" % (len(self.accepted_hooks), complete, failed,
                                                     len(self.refused_hooks)))
        print("  RSS samples     %s" % ", ".join("%d:%s" % (a, kb) for a, kb in self.samples))
        if mem:
            base, end, allowed, ok = mem
            print("  memory          baseline %d kB (after %d answers), end %d kB, growth %+d kB,"
                  " allowed %d kB: %s" % (base[1], base[0], end[1], end[1] - base[1], allowed,
                                          "flat" if ok else "GROWING"))
        print("  failures        %d" % len(self.failures))
        for f in self.failures[:50]:
            print("    - %s" % f)
        if self.failures:
            # keep the logs (harness removes its temp dirs at exit otherwise)
            os.environ["KEEP_TMP"] = "1"
            print("  sidecar log     %s (kept)" % self.sc.log_path)
            print("\n".join("    | " + l for l in harness.tail(self.sc.log_path, 40).splitlines()))
        passed = self.ok + sum(self.fault_errors.values())
        print("soak: %d passed, %d failed" % (passed, len(self.failures)))
        return 1 if self.failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=10000, help="requests (default 10000)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=1200,
                    help="stop after this many seconds whatever happens (default 1200)")
    args = ap.parse_args()
    # a hard stop too, in case the orderly one hangs
    signal.signal(signal.SIGALRM, lambda *a: (print("soak: hard time limit reached"),
                                              harness._kill_leftovers(), os._exit(2)))
    signal.alarm(int(args.time_limit) + 120)
    sys.exit(Soak(args.n, args.concurrency, args.time_limit).main())


if __name__ == "__main__":
    main()
