"""Command line and configuration: --help lists README's table; invalid values
stop the start-up quickly with a message naming the variable."""
import os
import re
import signal
import subprocess
import time
import unittest

import harness

README = os.path.join(harness.REPO, "README.md")


def readme_config_table():
    """[(variable, default)] from the Configuration table of README.md."""
    with open(README) as f:
        text = f.read()
    sect = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in sect.splitlines():
        m = re.match(r"^\|\s*`([A-Z_][A-Z0-9_]*)`\s*\|\s*([^|]*?)\s*\|", line)
        if m:
            rows.append((m.group(1), m.group(2).strip("`")))
    return rows


def run_sidecar(args, env, timeout):
    """Run the binary to completion; (returncode or None on timeout, output, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen([harness.SIDECAR_BIN] + args, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), time.monotonic() - t0


class ConfigTests(harness.SidecarTestCase):
    maxDiff = None

    def setUp(self):
        if not os.path.exists(harness.SIDECAR_BIN):
            self.fail("sidecar binary %s does not exist (run make)" % harness.SIDECAR_BIN)
        self.dir = harness.make_tmpdir("config")

    def base_env(self, **extra):
        # Valid settings that would make the sidecar wait a long time (10 s of
        # start-up checks against a port where nothing listens) if it did not
        # stop at the invalid value.
        env = harness.clean_env({
            "HOST": "127.0.0.1", "PORT": str(harness.free_port()),
            "COMFYUI_PORT_HOST": str(harness.free_port()), "CMD": "",
            "COMFY_HOME": self.dir, "STARTUP_CHECK_INTERVAL_S": "0.1",
            "STARTUP_CHECK_MAX_TRIES": "100", "LOG_LEVEL": "info",
        })
        env.update(extra)
        return env

    def test_readme_table_parsed(self):
        names = [n for n, _ in readme_config_table()]
        self.assertGreaterEqual(len(names), 15, names)
        self.assertIn("PORT", names)

    def test_help_lists_every_variable(self):
        rc, out, secs = run_sidecar(["--help"], self.base_env(), timeout=10)
        self.assertEqual(rc, 0, out)
        self.assertLess(secs, 5)
        table = readme_config_table()
        names = [n for n, _ in table]
        # each variable's entry: from the line naming it to the next variable's line
        entries = {}
        current = None
        for line in out.splitlines():
            m = re.match(r"^\s*([A-Z][A-Z0-9_]+)\b", line)
            if m and m.group(1) in names:
                current = m.group(1)
                entries[current] = ""
            if current:
                entries[current] += line + "\n"
        for name, default in table:
            with self.soft(repr(dict(variable=name))):
                self.assertIn(name, entries, "--help does not list %s" % name)
                if default and "$" not in default and default != "empty":
                    self.assertRegex(entries[name], r"(?<![\w.])%s(?![\w.])" % re.escape(default),
                                     "--help's entry for %s lacks its default %r" % (name, default))

    def test_invalid_values_stop_startup(self):
        cases = [
            ("PORT", "abc"), ("PORT", "70000"), ("PORT", "-1"),
            ("ALWAYS_RESTART_COMFYUI", "maybe"), ("LOG_LEVEL", "loud"),
            ("COMFYUI_PORT_HOST", "99999"), ("STARTUP_CHECK_MAX_TRIES", "many"),
            ("STARTUP_CHECK_INTERVAL_S", "soon"), ("MAX_BODY_SIZE_MB", "big"),
            ("PREPEND_FILENAMES", "perhaps"), ("COMFY_TIMEOUT_S", "x"),
            ("RECONCILE_INTERVAL_MS", "often"), ("MAX_OUTPUT_MB", "12abc"),
            ("COMFY_STOP_TIMEOUT_S", "-"),
        ]
        for var, val in cases:
            with self.soft(repr(dict(var=var, value=val))):
                rc, out, secs = run_sidecar([], self.base_env(**{var: val}), timeout=5)
                self.assertIsNotNone(rc, "%s=%s: still running after 5 s\n%s" % (var, val, out[-2000:]))
                self.assertNotEqual(rc, 0, "%s=%s accepted\n%s" % (var, val, out[-2000:]))
                self.assertIn(var, out, "the message does not name the variable:\n%s" % out[-2000:])
                self.assertFalse(harness.sanitizer_lines_text(out), out)


if __name__ == "__main__":
    unittest.main()
