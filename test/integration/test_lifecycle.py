"""ComfyUI crashes and restarts, the warmup gate, start-up failure, and attached
mode. Destructive tests get a sidecar of their own."""
import re
import time

import graphs
import harness
from harness import SidecarTestCase, poll


def status_is(sc, path, status):
    def check():
        r = sc.get(path, timeout=2)
        return r if r.status == status else None
    return check


class CrashTests(SidecarTestCase):

    def crash_and_restart(self, exit_code):
        # 50 steps x 0.1 s: the job would need 5 s; it crashes at step 3.
        # --startup-delay 1: every (re)start of ComfyUI takes at least a second,
        # a window in which the sidecar must say it is not ready.
        sc = self.new_sidecar("crash%d" % exit_code,
                              env={"ALWAYS_RESTART_COMFYUI": "true"},
                              emu_args=["--step-time", "0.1", "--startup-delay", "1"])
        sc.emu_fault(mode="crash", at_step=3, exit_code=exit_code)
        r = sc.post_prompt({"id": "crash-job", "prompt": graphs.ksampler(64, 64, steps=50,
                                                                        prefix="cr")}, timeout=30)
        j = self.assertError(r, 502)
        self.assertLess(r.elapsed, 3.5, "the 502 came late: the job was not failed at the exit")
        self.assertIn("exit", j["error"].lower(), j)
        self.assertRegex(j["error"], r"(?<![\d.])%d(?![\d.])" % exit_code,
                         "the message does not carry the exit status")

        # ComfyUI is restarting: /ready 503, /health stays 200, /prompt 503 + Retry-After
        rr = poll(status_is(sc, "/ready", 503), 5, what="/ready 503 after the crash")
        self.assertEqual(rr.json.get("status"), "not ready", rr)
        self.assertIn(rr.json.get("comfyui"), ("starting", "down"), rr)
        h = sc.get("/health")
        self.assertEqual(h.status, 200, "/health must stay 200 while ComfyUI restarts: %r" % h)
        # (the restarted emulator needs more than a second before it listens)
        p = sc.post_prompt({"prompt": graphs.empty_image(8, 8, prefix="during")})
        self.assertError(p, 503)
        self.assertIn("retry-after", p.headers, "503 without Retry-After")
        self.assertRegex(p.headers["retry-after"], r"^\d+$")

        ready = sc.wait_ready(20)
        self.assertEqual(ready.json.get("comfyui"), "up")
        r2 = sc.post_prompt({"id": "after-crash", "prompt": graphs.empty_image(32, 24, prefix="ok")})
        self.assertImages(r2, [(32, 24)])
        # It ran on a new ComfyUI process: its prompt log starts after the restart.
        prefixes = [n.get("inputs", {}).get("filename_prefix")
                    for rec in sc.emu_prompts() for n in rec["body"]["prompt"].values()]
        self.assertIn("after-crash_ok", prefixes)
        self.assertNotIn("crash-job_cr", prefixes, "the prompt log survived the crash?")
        sc.stop(expect_code=0)

    def test_crash_mid_job_restarts(self):
        self.crash_and_restart(3)

    def test_crash_exit_0_mid_job_restarts(self):
        self.crash_and_restart(0)

    def test_crash_without_restart_exits_nonzero(self):
        sc = self.new_sidecar("crash-norestart", env={"ALWAYS_RESTART_COMFYUI": "false"},
                              emu_args=["--step-time", "0.1"])
        sc.emu_fault(mode="crash", at_step=2)
        r = sc.post_prompt({"prompt": graphs.ksampler(64, 64, steps=50, prefix="cr")}, timeout=30)
        j = self.assertError(r, 502)
        self.assertIn("exit", j["error"].lower(), j)
        rc = sc.wait_exit(10)
        self.assertIsNotNone(rc, "the sidecar still runs 10 s after ComfyUI died "
                                 "with ALWAYS_RESTART_COMFYUI=false")
        self.assertEqual(rc, 1)
        sc.stop(expect_code=1)


class WarmupTests(SidecarTestCase):

    def test_warmup_gates_ready(self):
        warm = graphs.sdxl_refiner(512, 512, seed=5, prefix="warmup")
        # 25 sampler steps x 0.06 s: the warmup runs for about 1.5 s
        sc = self.new_sidecar("warmup", start=False, warmup=warm, emu_args=["--step-time", "0.06"])
        sc.start()

        def warmup_running():
            if sc.proc.poll() is not None:
                raise AssertionError("sidecar exited with %s" % sc.proc.returncode)
            s = sc.emu_state()
            return s if s.get("running") else None
        poll(warmup_running, 20, what="the emulator to run the warmup prompt")
        r = sc.get("/ready")
        self.assertEqual(r.status, 503, "/ready during the warmup: %r" % r)
        self.assertEqual(r.json.get("status"), "not ready", r)
        self.assertIs(r.json.get("warm"), False, r)
        self.assertEqual(r.json.get("comfyui"), "up", r)
        h = sc.get("/health")
        self.assertEqual(h.status, 500, "/health before the first warmup finished: %r" % h)
        self.assertEqual(h.json.get("status"), "not healthy", h)

        ready = sc.wait_ready(20)
        self.assertIs(ready.json.get("warm"), True, ready)
        state = sc.emu_state()
        self.assertGreaterEqual(state.get("completed", 0), 1,
                                "/ready said 200 before the warmup prompt completed: %r" % state)
        prompts = sc.emu_prompts()
        self.assertTrue(prompts, "the emulator received no prompt")
        self.assertEqual(graphs.strip_prefixes(prompts[0]["body"]["prompt"]),
                         graphs.strip_prefixes(warm), "the first prompt is not the warmup graph")
        self.assertEqual(sc.get("/health").status, 200)
        r = sc.post_prompt({"id": "after-warmup", "prompt": graphs.empty_image(20, 10, prefix="w")})
        self.assertImages(r, [(20, 10)])
        sc.stop(expect_code=0)


class StartupFailureTests(SidecarTestCase):

    def test_comfyui_never_up_exits_1(self):
        # attached mode, nothing listens on the ComfyUI port: 5 checks 0.1 s apart
        sc = self.new_sidecar("noneup", start=False, mode="attached",
                              env={"STARTUP_CHECK_MAX_TRIES": "5"})
        sc.start_emulator = lambda *a, **k: None   # no ComfyUI at all
        sc.start()
        rc = sc.wait_exit(10)
        self.assertIsNotNone(rc, "the sidecar did not give up after 5 start-up checks")
        self.assertEqual(rc, 1)
        sc.stop(expect_code=1)


class AttachedTests(harness.SharedSidecarMixin, SidecarTestCase):
    """CMD empty: the test runs the emulator. Also MAX_BODY_SIZE_MB=1,
    MAX_OUTPUT_MB=1 (with noisy, incompressible images) and PREPEND_FILENAMES=false."""

    @classmethod
    def make_sidecar(cls):
        return harness.Sidecar("attached", mode="attached",
                               emu_args=["--step-time", "0.01", "--image-mode", "noise"],
                               env={"MAX_BODY_SIZE_MB": "1", "MAX_OUTPUT_MB": "1",
                                    "PREPEND_FILENAMES": "false"})

    def test_end_to_end(self):
        r = self.sc.get("/ready")
        self.assertEqual(r.json.get("websocket"), "connected", r)
        graph = graphs.sdxl_refiner(512, 384, seed=99, prefix="att")
        r = self.sc.post_prompt({"id": "attached-1", "prompt": graph})
        raws = self.assertImages(r, [(512, 384)])
        self.assertEqual(r.json["id"], "attached-1")
        # PREPEND_FILENAMES=false: the prefix becomes the id
        self.assertEqual(r.json["prompt"]["11"]["inputs"]["filename_prefix"], "attached-1")
        rec = [p for p in self.sc.emu_prompts()
               if p["body"]["prompt"].get("11", {}).get("inputs", {}).get("filename_prefix")
               == "attached-1"]
        self.assertEqual(len(rec), 1, self.sc.emu_prompts())
        fn = r.json["filenames"][0]
        self.assertRegex(fn, r"^attached-1_\d{5}_\.png$")
        v = self.sc.emu("GET", "/view?filename=%s&type=output" % fn)
        self.assertEqual(v.data, raws[0])

    def big_body(self, size):
        g = graphs.empty_image(12, 10, prefix="big")
        g["2"]["_meta"] = {"title": ""}
        base = len(harness.json.dumps({"prompt": g}))
        g["2"]["_meta"]["title"] = "x" * (size - base)
        body = harness.json.dumps({"prompt": g}).encode()
        self.assertEqual(len(body), size)
        return body

    def test_body_over_max_is_413(self):
        before = len(self.sc.emu_prompts())
        r = harness.post_large(self.sc.port, "/prompt", self.big_body(2 * 1024 * 1024))
        self.assertError(r, 413)
        self.assertEqual(len(self.sc.emu_prompts()), before)
        self.sc.wait_ready()

    def test_body_under_max_is_accepted(self):
        r = harness.post_large(self.sc.port, "/prompt", self.big_body(900 * 1024))
        self.assertImages(r, [(12, 10)])

    def test_output_over_max_is_502(self):
        # a 1024x1024 noise PNG is about 1.5 MB, over MAX_OUTPUT_MB=1
        graph = graphs.sdxl_refiner(1024, 1024, seed=3, prefix="huge")
        r = self.sc.post_prompt({"id": "huge-1", "prompt": graph})
        self.assertError(r, 502)
        views = [q["query"] for q in self.sc.emu_requests() if q["path"].endswith("/view")]
        self.assertTrue(any(v.get("filename", "").startswith("huge-1_") for v in views),
                        "the sidecar did not even try to fetch the output: %r" % views)
