"""The playground page (GET /): a static check of web/playground/index.html, the
browser test test/browser/playground.js (playwright-core driving Debian's
chromium, headless) against the sidecar + emulator, and PLAYGROUND=false.

Needs Debian's chromium (/usr/bin/chromium, or $CHROMIUM) and playwright-core
installed in test/node (npm ci --prefix test/node). Without them the browser
test fails with a message that says what to install.
Screenshots go to test/artifacts/playground-*.png.
"""
import os
import re
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import harness  # noqa: E402

PAGE = os.path.join(REPO, "web", "playground", "index.html")
SCRIPT = os.path.join(HERE, "playground.js")
ARTIFACTS = os.path.join(REPO, "test", "artifacts")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = os.path.join(REPO, "test", "node", "node_modules", "playwright-core")

# The sidecar runs in a temp dir: point it at the repository's page and templates.
ENV = {"WEB_DIR": os.path.join(REPO, "web"),
       "WORKFLOW_DIR": os.path.join(REPO, "comfy-workflows"),
       "PLAYGROUND": "true"}


class PlaygroundFile(unittest.TestCase):
    """What the page file itself must be: small, self-contained."""

    def test_page_is_small_and_self_contained(self):
        self.assertTrue(os.path.isfile(PAGE), "%s is missing" % PAGE)
        with open(PAGE, "rb") as f:
            data = f.read()
        self.assertLess(len(data), 50 * 1024, "the page weighs %d bytes" % len(data))
        text = data.decode("utf-8")
        self.assertNotRegex(text, r"(?i)\b(https?|wss?|ftp):", "an absolute URL in the page")
        self.assertNotRegex(text, r"(?i)(src|href)\s*=\s*[\"']//", "a protocol-relative URL in the page")
        self.assertNotRegex(text, r"(?i)<script[^>]+src=", "an external script")
        css = "".join(re.findall(r"(?is)<style[^>]*>(.*?)</style>", text))
        self.assertNotRegex(css, r"(?i)@import|url\(\s*[\"']?(?!data:)", "CSS that loads something")
        for m in re.finditer(r"(?i)<link[^>]*href=[\"']([^\"']*)", text):
            self.assertTrue(m.group(1).startswith("data:"), "a <link> that loads %s" % m.group(1))


class PlaygroundBrowser(harness.SidecarTestCase):

    def test_playground_in_chromium(self):
        if not os.path.exists(CHROMIUM):
            self.fail("%s does not exist: the browser test needs Debian's chromium "
                      "(apt-get install -y chromium)" % CHROMIUM)
        if shutil.which("node") is None:
            self.fail("node is not installed: the browser test needs Node.js")
        if not os.path.isdir(PLAYWRIGHT):
            self.fail("%s is missing: run npm ci --prefix test/node" % PLAYWRIGHT)
        sc = self.new_sidecar("playground", env=ENV,
                              emu_args=["--step-time", "0.05", "--preview-method", "auto"])
        os.makedirs(ARTIFACTS, exist_ok=True)
        p = subprocess.run(
            ["node", SCRIPT, "http://127.0.0.1:%d" % sc.port,
             "--emulator", "http://127.0.0.1:%d" % sc.emu_port, "--artifacts", ARTIFACTS],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=180, env=dict(os.environ, CHROMIUM=CHROMIUM))
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "playground.js failed (screenshots in %s):\n%s"
                         % (ARTIFACTS, out[-6000:]))
        self.assertIn("playground: all checks passed", out)
        sc.stop()


class PlaygroundSwitch(harness.SidecarTestCase):

    def test_root_serves_the_page(self):
        sc = self.new_sidecar("pg-on", env=ENV)
        r = sc.get("/")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/html"), r.headers)
        with open(PAGE, "rb") as f:
            self.assertEqual(r.data, f.read())
        sc.stop()

    def test_playground_false_turns_it_off(self):
        sc = self.new_sidecar("pg-off", env=dict(ENV, PLAYGROUND="false"))
        r = sc.get("/")
        self.assertError(r, 404)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        # the API is still there
        self.assertEqual(sc.get("/docs/json").status, 200)
        self.assertEqual(sc.get("/ready").status, 200)
        sc.stop()


if __name__ == "__main__":
    unittest.main()
