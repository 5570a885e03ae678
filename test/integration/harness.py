"""Start/stop helpers for the integration tests: the real comfy-sidecar binary
against the ComfyUI emulator (test/emulator/comfyui_emulator.py) over loopback.

Two ways to run a sidecar:
  supervised: the sidecar launches the emulator through CMD;
  attached:   the test starts the emulator and the sidecar runs with CMD empty.

Every sidecar gets fresh free ports and a fresh temp dir (COMFY_HOME, output,
input, temp). Its stdout+stderr (its log, with the child's output) go to
<dir>/sidecar.log. Nothing here waits with a fixed sleep: every wait polls a
condition against a deadline.

Environment:
  SIDECAR_BIN   the binary under test (default <repo>/comfy-sidecar), so that
                `make sanitize` can run this suite against an ASan build.
  KEEP_TMP=1    keep the temp dirs (logs) after the run.
"""
import atexit
import base64
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIDECAR_BIN = os.environ.get("SIDECAR_BIN") or os.path.join(REPO, "comfy-sidecar")
EMULATOR = os.path.join(REPO, "test", "emulator", "comfyui_emulator.py")
PYTHON = "/usr/bin/python3"

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# Every variable the README documents; removed from the inherited environment
# so that a developer's shell cannot change what a test runs.
def _config_vars():
    """Every variable the sidecar reads (its table in src/config.c) and
    SaladCloud's, so that nothing leaks in from the developer's shell."""
    names = ["SALAD_CONTAINER_GROUP_ID", "SALAD_CONTAINER_GROUP_NAME", "SALAD_MACHINE_ID",
             "SALAD_ORGANIZATION_ID", "SALAD_ORGANIZATION_NAME", "SALAD_PROJECT_ID",
             "SALAD_PROJECT_NAME", "SALAD_INSTANCE_ID"]
    with open(os.path.join(REPO, "src", "config.c")) as f:
        names += re.findall(r'^\s*\{"([A-Z][A-Z0-9_]*)", CFG_', f.read(), re.M)
    return tuple(names)


CONFIG_VARS = _config_vars()

_tmpdirs = []
_all_instances = []


def _cleanup_tmp():
    if os.environ.get("KEEP_TMP") == "1":
        return
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


def _kill_leftovers():
    for inst in _all_instances:
        if not inst.stopped:
            try:
                inst.kill_all()
            except Exception:
                pass


atexit.register(_cleanup_tmp)
atexit.register(_kill_leftovers)   # runs first (atexit is LIFO)


def make_tmpdir(name):
    d = tempfile.mkdtemp(prefix="sctest-%s-" % name)
    _tmpdirs.append(d)
    return d


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    if extra:
        env.update(extra)
    return env


def poll(cond, timeout, interval=0.02, what="condition"):
    """Call cond() until it returns a truthy value; return it. AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, http.client.HTTPException) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, what, (" (last error: %r)" % last_exc) if last_exc else ""))
        time.sleep(interval)


# ---------------------------------------------------------------- HTTP ----

class Response:
    """status, headers (names lower-cased), data, json, and elapsed: seconds
    since t0 (time.monotonic()) when given."""
    def __init__(self, status, headers, data, t0=None):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.data = data
        self.elapsed = None if t0 is None else time.monotonic() - t0
        try:
            self.json = json.loads(data.decode("utf-8")) if data else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def __repr__(self):
        body = self.data[:600]
        return "<HTTP %s %r>" % (self.status, body)


def request(port, method, path, body=None, headers=None, timeout=60, raw=False):
    """One HTTP request on a fresh connection. body: dict/list (sent as JSON),
    bytes or str (sent as is)."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.getheaders(), resp.read(), t0)
    finally:
        conn.close()


def post_large(port, path, body, timeout=30, chunk=65536):
    """POST a large body in chunks; stop sending as soon as the server answers
    (a server may answer 413 from the Content-Length alone and close), then
    read the answer. Returns a Response."""
    import select
    t0 = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (path, port, len(body))).encode()
        sock.sendall(head)
        off = 0
        while off < len(body):
            r, _, _ = select.select([sock], [], [], 0)
            if r:
                break   # the server has answered already
            try:
                off += sock.send(body[off:off + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return Response(resp.status, resp.getheaders(), resp.read(), t0)
    finally:
        sock.close()


# ---------------------------------------------------------------- images --

def png_size(data):
    """(width, height) of a PNG, checking the signature and the IHDR chunk."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG (first bytes %r)" % data[:16])
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise AssertionError("first PNG chunk is %r, not IHDR" % ctype)
    return struct.unpack(">II", data[16:24])


def decode_image(testcase, s):
    """Strict RFC 4648 base64 -> bytes, PNG checked. Returns (bytes, (w, h))."""
    testcase.assertIsInstance(s, str)
    testcase.assertNotIn("\n", s)
    testcase.assertNotIn("\r", s)
    testcase.assertFalse(s.startswith("data:"), "image has a data: prefix")
    raw = base64.b64decode(s, validate=True)
    return raw, png_size(raw)


# ---------------------------------------------------------------- processes

def _proc_info(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        return cmd, state, pgrp
    except (OSError, ValueError):
        return None


def find_processes(marker=None, pgrp=None, exclude=()):
    """Live (non-zombie) processes whose command line contains marker or whose
    process group is pgrp."""
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me or pid in exclude:
            continue
        info = _proc_info(pid)
        if not info:
            continue
        cmd, state, pg = info
        if state == "Z":
            continue
        if (marker and marker in cmd) or (pgrp is not None and pg == pgrp):
            out.append((pid, cmd))
    return out


def _kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def tail(path, n=80):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(lines[-n:])


def sanitizer_lines_text(text):
    return [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKERS)]


def sanitizer_lines(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return sanitizer_lines_text(text)


class Sidecar:
    """One sidecar (and its emulator) in a fresh temp dir.

    mode: "supervised" (CMD launches the emulator) or "attached" (the test
    starts the emulator, CMD is empty). env: extra/overriding sidecar env vars.
    emu_args: extra emulator flags (e.g. ["--step-time", "0.05"]).
    """

    def __init__(self, name, mode="supervised", env=None, emu_args=(), warmup=None):
        assert mode in ("supervised", "attached")
        self.name = name
        self.mode = mode
        self.dir = make_tmpdir(name)
        for sub in ("output", "input", "temp"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.port = free_port()
        self.emu_port = free_port()
        while self.emu_port == self.port:
            self.emu_port = free_port()
        self.log_path = os.path.join(self.dir, "sidecar.log")
        self.emu_log_path = os.path.join(self.dir, "emulator.log")
        self.emu_args = list(emu_args)
        self.extra_env = dict(env or {})
        self.warmup_path = None
        if warmup is not None:
            self.warmup_path = os.path.join(self.dir, "warmup.json")
            with open(self.warmup_path, "w") as f:
                json.dump(warmup, f)
        self.proc = None
        self.emu_proc = None
        self._logf = None
        self._emu_logf = None
        self.stopped = False
        _all_instances.append(self)

    # -- command lines ------------------------------------------------------
    def emulator_argv(self):
        return [PYTHON, EMULATOR, "--listen", "127.0.0.1", "--port", str(self.emu_port),
                "--output-directory", os.path.join(self.dir, "output"),
                "--input-directory", os.path.join(self.dir, "input"),
                "--temp-directory", self.dir] + self.emu_args

    def sidecar_env(self):
        env = clean_env({
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DIRECT_ADDRESS": "127.0.0.1",
            "COMFYUI_PORT_HOST": str(self.emu_port),
            "COMFY_HOME": self.dir,
            "OUTPUT_DIR": os.path.join(self.dir, "output"),
            "INPUT_DIR": os.path.join(self.dir, "input"),
            "STARTUP_CHECK_INTERVAL_S": "0.1",
            "STARTUP_CHECK_MAX_TRIES": "100",
            "RECONCILE_INTERVAL_MS": "300",
            "LOG_LEVEL": "debug",
            "COMFY_STOP_TIMEOUT_S": "5",
            "CMD": " ".join(self.emulator_argv()) if self.mode == "supervised" else "",
        })
        if self.warmup_path:
            env["WARMUP_PROMPT_FILE"] = self.warmup_path
        env.update(self.extra_env)
        return env

    # -- start --------------------------------------------------------------
    def start_emulator(self, timeout=20):
        self._emu_logf = open(self.emu_log_path, "ab")
        self.emu_proc = subprocess.Popen(
            self.emulator_argv(), cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=self._emu_logf, stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.emu_proc.poll() is not None:
                raise AssertionError("emulator exited with %s:\n%s" % (
                    self.emu_proc.returncode, tail(self.emu_log_path)))
            return self.emu("GET", "/__emulator/state", timeout=2).status == 200
        poll(up, timeout, interval=0.05, what="emulator to listen")

    def start(self):
        if not os.path.exists(SIDECAR_BIN):
            raise AssertionError("sidecar binary %s does not exist (run make)" % SIDECAR_BIN)
        if not os.path.exists(EMULATOR):
            raise AssertionError("emulator %s does not exist" % EMULATOR)
        if self.mode == "attached":
            self.start_emulator()
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [SIDECAR_BIN], env=self.sidecar_env(), cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def start_ready(self, timeout=20):
        self.start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill_all()
            raise
        return self

    def wait_ready(self, timeout=20):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("sidecar exited with status %s before /ready:\n%s" % (
                    self.proc.returncode, self.tail()))
            r = self.get("/ready", timeout=2)
            return r if r.status == 200 else None
        return poll(ready, timeout, interval=0.05, what="sidecar /ready 200")

    # -- HTTP ---------------------------------------------------------------
    def req(self, method, path, body=None, headers=None, timeout=60):
        return request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    def get(self, path, timeout=10):
        return self.req("GET", path, timeout=timeout)

    def post_prompt(self, body, timeout=60):
        return self.req("POST", "/prompt", body=body, timeout=timeout)

    def emu(self, method, path, body=None, timeout=10):
        return request(self.emu_port, method, path, body=body, timeout=timeout)

    def emu_fault(self, **fault):
        r = self.emu("POST", "/__emulator/fault", fault)
        if r.status != 200:
            raise AssertionError("arming fault %r failed: %r" % (fault, r))
        return r.json

    def emu_reset(self):
        r = self.emu("POST", "/__emulator/reset", {})
        if r.status != 200:
            raise AssertionError("emulator reset failed: %r" % r)

    def emu_prompts(self):
        return self.emu("GET", "/__emulator/prompts").json

    def emu_requests(self):
        return self.emu("GET", "/__emulator/requests").json

    def emu_state(self):
        return self.emu("GET", "/__emulator/state").json

    # -- logs ---------------------------------------------------------------
    def tail(self, n=80):
        t = "---- %s: sidecar log %s (last %d lines) ----\n%s" % (
            self.name, self.log_path, n, tail(self.log_path, n))
        if self.mode == "attached":
            t += "\n---- %s: emulator log ----\n%s" % (self.name, tail(self.emu_log_path, 30))
        return t

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_report(self):
        return sanitizer_lines(self.log_path)

    # -- stop ---------------------------------------------------------------
    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self):
        """Hard cleanup, no assertions: SIGKILL everything this instance started."""
        if self.proc and self.proc.poll() is None:
            _kill(self.proc.pid)
            self.proc.wait(5)
        if self.proc:
            for pid, _ in find_processes(marker=self.dir, pgrp=self.proc.pid):
                _kill(pid)
        if self.emu_proc and self.emu_proc.poll() is None:
            _kill(self.emu_proc.pid)
            self.emu_proc.wait(5)
        for f in (self._logf, self._emu_logf):
            if f:
                f.close()
        self.stopped = True

    def stop(self, expect_code=0, timeout=15):
        """SIGTERM the sidecar and wait for it; then make sure nothing it started is
        left. Raises AssertionError (after cleaning up) when the exit status is not
        expect_code (None: any), a process was left behind, or the log carries a
        sanitizer report."""
        if self.stopped:
            return
        problems = []
        if self.proc is None:
            self.stopped = True
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                problems.append("sidecar did not exit within %ss of SIGTERM" % timeout)
                _kill(self.proc.pid)
                self.proc.wait(5)
        rc = self.proc.returncode
        if expect_code is not None and rc != expect_code:
            problems.append("sidecar exit status %s, expected %s" % (rc, expect_code))
        # The sidecar must have stopped its child. Processes of its group or
        # with our temp dir on their command line (the supervised emulator).
        excl = (self.emu_proc.pid,) if self.emu_proc else ()

        def gone():
            return not find_processes(marker=self.dir, pgrp=self.proc.pid, exclude=excl)
        try:
            poll(gone, 3, interval=0.05, what="the sidecar's children to exit")
        except AssertionError:
            left = find_processes(marker=self.dir, pgrp=self.proc.pid, exclude=excl)
            problems.append("processes left behind after the sidecar exited: %r" % left)
            for pid, _ in left:
                _kill(pid)
        if self.mode == "attached" and self.emu_proc and self.emu_proc.poll() is not None:
            problems.append("the attached ComfyUI (not the sidecar's child) exited with %s "
                            "when the sidecar stopped" % self.emu_proc.returncode)
        if self.emu_proc and self.emu_proc.poll() is None:
            self.emu_proc.send_signal(signal.SIGTERM)
            try:
                self.emu_proc.wait(5)
            except subprocess.TimeoutExpired:
                _kill(self.emu_proc.pid)
                self.emu_proc.wait(5)
        for f in (self._logf, self._emu_logf):
            if f:
                f.close()
        self.stopped = True
        san = self.sanitizer_report()
        if san:
            problems.append("sanitizer report in the sidecar log:\n  " + "\n  ".join(san[:20]))
        if problems:
            raise AssertionError("%s: %s\n%s" % (self.name, "; ".join(problems), self.tail()))


# ---------------------------------------------------------------- test base

class SidecarTestCase(unittest.TestCase):
    """Prints the log tail of the sidecars a test used when it fails."""

    maxDiff = 4000

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        n_inst = len(_all_instances)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            shown = list(_all_instances[n_inst:])
            shared = getattr(type(self), "sc", None)
            if isinstance(shared, Sidecar) and shared not in shown:
                shown.insert(0, shared)
            for inst in shown:
                print("\n" + inst.tail(), flush=True)
        return out

    @contextlib.contextmanager
    def soft(self, label):
        """Like subTest, but all failures of a test are reported as one failure
        (so the runner's per-test counts stay right): the block's
        AssertionError is recorded and the test fails at its end."""
        if not hasattr(self, "_soft_errors") or self._soft_owner is not self._testMethodName:
            self._soft_errors = []
            self._soft_owner = self._testMethodName
            self.addCleanup(self._soft_report)
        try:
            yield
        except AssertionError as e:
            self._soft_errors.append("[%s] %s" % (label, e))

    def _soft_report(self):
        errs, self._soft_errors = self._soft_errors, []
        if errs:
            raise self.failureException("%d check(s) failed:\n%s" % (len(errs), "\n".join(errs)))

    def new_sidecar(self, name, start=True, **kw):
        """A sidecar for this test only, killed at cleanup if the test did not stop it."""
        sc = Sidecar(name, **kw)
        self.addCleanup(sc.kill_all)
        if start:
            sc.start_ready()
        return sc

    # assertion helpers ------------------------------------------------------
    def assertError(self, r, status, location=None, msg=None):
        """r is an error answer with that status, a JSON body with a non-empty
        "error" string, and (if given) that location."""
        self.assertEqual(r.status, status, msg or r)
        self.assertIsInstance(r.json, dict, "error body is not a JSON object: %r" % r)
        self.assertIsInstance(r.json.get("error"), str, r)
        self.assertTrue(r.json["error"], r)
        if location is not None:
            self.assertEqual(r.json.get("location"), location, r)
        return r.json

    def assertImages(self, r, sizes):
        """r is a 200 whose images decode to PNGs of exactly these sizes, in order."""
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertIsInstance(body, dict, r)
        self.assertIsInstance(body.get("images"), list, r)
        self.assertIsInstance(body.get("filenames"), list, r)
        self.assertEqual(len(body["images"]), len(sizes), "images: expected %d, got %d; filenames %r"
                         % (len(sizes), len(body["images"]), body["filenames"]))
        self.assertEqual(len(body["filenames"]), len(body["images"]))
        got = []
        raws = []
        for s in body["images"]:
            raw, size = decode_image(self, s)
            got.append(size)
            raws.append(raw)
        self.assertEqual(got, [tuple(x) for x in sizes], "image sizes (in answer order); filenames %r"
                         % body["filenames"])
        return raws


class SharedSidecarMixin:
    """One sidecar for a whole test class: the class defines make_sidecar()
    (an unstarted Sidecar, with anything its files need prepared); the mixin
    starts it before the first test, resets the emulator's faults before each,
    checks the sidecar's log for sanitizer reports after each, and stops the
    sidecar (expecting exit 0) after the last."""

    @classmethod
    def make_sidecar(cls):
        raise NotImplementedError

    @classmethod
    def after_ready(cls):
        """What the class records once the sidecar is first ready, before any
        test (cls.ready_at_start holds that first /ready answer)."""

    @classmethod
    def setUpClass(cls):
        cls.sc = cls.make_sidecar()
        try:
            cls.sc.start()
            cls.ready_at_start = cls.sc.wait_ready()
            cls.after_ready()
        except BaseException:
            cls.sc.kill_all()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.sc.stop(expect_code=0)

    def setUp(self):
        self.sc.emu_reset()
        self.sc.wait_ready()

    def tearDown(self):
        self.assertEqual(self.sc.sanitizer_report(), [], "sanitizer report in the sidecar log")
