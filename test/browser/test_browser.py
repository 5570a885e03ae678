"""Browser test of GET /docs (Swagger UI): Debian's chromium, headless, driven by
playwright-core (test/browser/docs-try-it-out.js), against a sidecar and the
ComfyUI emulator started with the integration harness.

"Try it out" on POST /workflow/sdxl/txt2img-with-refiner must show a 200 with an
image, no request may leave 127.0.0.1, and a screenshot is saved to
test/artifacts/docs-try-it-out.png.

Needs: chromium (apt-get install chromium), node, `npm ci --prefix test/node`
(playwright-core), `npm ci --prefix web` (swagger-ui-dist). A missing one is a
failure that says what to install, never a skip.

Run: /usr/bin/python3 test/pyrunner.py test/browser --name browser
CHROMIUM=/path/to/chromium overrides /usr/bin/chromium.
"""
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import harness  # noqa: E402
from harness import SidecarTestCase  # noqa: E402

SCRIPT = os.path.join(HERE, "docs-try-it-out.js")
ARTIFACTS = os.path.join(REPO, "test", "artifacts")
SCREENSHOT = os.path.join(ARTIFACTS, "docs-try-it-out.png")
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
WEB_DIR = os.path.join(REPO, "web")


def missing_prerequisites():
    out = []
    if not os.access(CHROMIUM, os.X_OK):
        out.append("chromium is not installed at %s: apt-get install chromium "
                   "(scripts/install-deps.sh)" % CHROMIUM)
    if not shutil.which("node"):
        out.append("node (Node.js) is not on PATH")
    if not os.path.isdir(os.path.join(REPO, "test", "node", "node_modules", "playwright-core")):
        out.append("playwright-core is missing: npm ci --prefix test/node")
    if not os.path.isfile(os.path.join(WEB_DIR, "node_modules", "swagger-ui-dist",
                                       "swagger-ui-bundle.js")):
        out.append("swagger-ui-dist is missing: npm ci --prefix web")
    return out


class DocsBrowserTest(SidecarTestCase):

    def test_docs_try_it_out(self):
        missing = missing_prerequisites()
        self.assertEqual(missing, [], "cannot run the browser test:\n  " + "\n  ".join(missing))
        sc = self.new_sidecar("browser", env={
            "WORKFLOW_DIR": os.path.join(REPO, "comfy-workflows"), "WEB_DIR": WEB_DIR})
        if os.path.exists(SCREENSHOT):
            os.remove(SCREENSHOT)
        n_before = len(sc.emu_prompts())
        try:
            p = subprocess.run(["node", SCRIPT, "--port", str(sc.port), "--out", SCREENSHOT,
                                "--chromium", CHROMIUM],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=55)
        except subprocess.TimeoutExpired as e:
            self.fail("docs-try-it-out.js did not finish in 55 s:\n%s"
                      % (e.stdout or b"").decode("utf-8", "replace"))
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "docs-try-it-out.js failed:\n" + out)

        # the screenshot: a real PNG, not a blank stub
        self.assertTrue(os.path.isfile(SCREENSHOT), "no screenshot at %s" % SCREENSHOT)
        with open(SCREENSHOT, "rb") as f:
            data = f.read()
        w, h = harness.png_size(data)
        self.assertGreaterEqual(w, 1000, (w, h))
        self.assertGreaterEqual(h, 900, (w, h))
        self.assertGreater(len(data), 30000, "screenshot is only %d bytes" % len(data))

        # the browser's request reached ComfyUI as the template's graph with that prompt
        prompts = sc.emu_prompts()[n_before:]
        self.assertEqual(len(prompts), 1, "the emulator received %d prompts" % len(prompts))
        graph = prompts[0]["body"]["prompt"]
        self.assertEqual(graph["6"]["inputs"]["text"], "a lighthouse")
        self.assertEqual(graph["15"]["inputs"]["text"], "a lighthouse")
        self.assertEqual(graph["4"]["class_type"], "CheckpointLoaderSimple")
        sc.stop(expect_code=0)


if __name__ == "__main__":
    import unittest
    unittest.main()
