"""Tests of the ComfyUI emulator against the real ComfyUI 0.3.65 transcripts.

Run from the repository root:
    /usr/bin/python3 -m unittest discover -s test/emulator -p 'test_*.py'
"""

import asyncio
import io
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

import aiohttp
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "comfyui_emulator.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
TRANSCRIPTS = os.environ.get("COMFYUI_TRANSCRIPTS", "/work/shared/comfyui-transcripts")
if not os.path.isdir(TRANSCRIPTS):
    TRANSCRIPTS = os.path.join(HERE, "..", "..", "..", "shared", "comfyui-transcripts")
WORKFLOWS = os.path.join(TRANSCRIPTS, "workflows")
TINY = "tiny-sd15-random.ckpt"


def load_workflow(name):
    with open(os.path.join(WORKFLOWS, name)) as fh:
        return json.load(fh)


def load_transcript(name):
    """The websocket messages a real client received: dicts, or ("binary", type)."""
    out = []
    with open(os.path.join(TRANSCRIPTS, name)) as fh:
        for line in fh:
            ev = json.loads(line)
            if "dir" in ev and ev["dir"] != "recv":
                continue
            if ev.get("kind") == "binary":
                out.append(("binary", ev["msg"]["event_type"]))
            else:
                out.append(ev["msg"])
    return out


def load_history(name):
    with open(os.path.join(TRANSCRIPTS, name)) as fh:
        return json.load(fh)


FILENAME_RE = re.compile(r"^.+_\d{5}_\.png$")


def norm(msg):
    """What must match between the emulator and ComfyUI for one message: type, the ordered
    field names, and the facts that do not depend on ids, clocks or file counters."""
    if isinstance(msg, tuple):
        return msg
    t, d = msg["type"], msg["data"]
    extra = None
    if t == "progress_state":
        extra = [(k, v["state"], v["value"], type(v["value"]).__name__, v["max"],
                  type(v["max"]).__name__, list(v), v["node_id"] == k,
                  v["display_node_id"] == k, v["real_node_id"] == k, v["parent_node_id"])
                 for k, v in d["nodes"].items()]
    elif t == "executing":
        extra = d["node"]
    elif t == "execution_cached":
        extra = d["nodes"]
    elif t == "progress":
        extra = (d["value"], d["max"], d["node"])
    elif t == "executed":
        extra = (d["node"], d["display_node"],
                 [(list(i), bool(FILENAME_RE.match(i["filename"])), i["subfolder"], i["type"])
                  for i in d["output"]["images"]])
    elif t == "status":
        extra = (d["status"]["exec_info"]["queue_remaining"], list(d["status"]),
                 list(d["status"]["exec_info"]))
    elif t in ("execution_error", "execution_interrupted"):
        extra = (d["node_id"], d["node_type"], d["executed"])
    elif t == "feature_flags":
        extra = d
    return (t, list(d), extra)


def normalize_history(h):
    """History entry with ids, timestamps and file counters blanked."""
    h = json.loads(json.dumps(h))
    assert isinstance(h["prompt"][0], int), h["prompt"][0]
    h["prompt"][0] = "<number>"
    h["prompt"][1] = "<id>"
    h["prompt"][3].pop("client_id", None)
    for out in h["outputs"].values():
        for img in out.get("images", []):
            img["filename"] = FILENAME_RE.sub("<file>", img["filename"])
            img["filename"] = "<file>" if FILENAME_RE.match(img["filename"]) else img["filename"]
    for _, data in h["status"]["messages"]:
        data["prompt_id"] = "<id>"
        if "timestamp" in data:
            assert isinstance(data["timestamp"], int)
            data["timestamp"] = 0
        for k in ("exception_message", "traceback", "current_inputs"):
            if k in data:
                data[k] = type(data[k]).__name__
    return h


def empty_image(w=8, h=8, prefix="t", color=0):
    """EmptyImage -> SaveImage."""
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": w, "height": h, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage",
                  "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


class Emu:
    """One emulator process on a free port with its own directories."""

    def __init__(self, *extra, checkpoints=None, start=True):
        self.dir = tempfile.mkdtemp(prefix="comfy-emu-test-")
        self.out = os.path.join(self.dir, "output")
        self.inp = os.path.join(self.dir, "input")
        self.temp = os.path.join(self.dir, "temp")
        self.argv = [PYTHON, EMULATOR, "--listen", "127.0.0.1", "--port", "0",
                     "--output-directory", self.out, "--input-directory", self.inp,
                     "--temp-directory", self.dir]
        if checkpoints:
            self.argv += ["--checkpoints", checkpoints]
        self.argv += list(extra)
        self.proc = None
        if start:
            self.start()

    def start(self, timeout=15):
        self.log = open(os.path.join(self.dir, "emulator.log"), "wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdout=subprocess.PIPE,
                                     stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not r:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(rb"emulator listening on http://([^:]+):(\d+)", line)
            if m:
                self.host = m.group(1).decode()
                self.port = int(m.group(2))
                self.base = "http://%s:%d" % (self.host, self.port)
                return self
        self.stop()
        raise AssertionError("emulator did not start: %r\n%s" % (line, self.log_text()))

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "emulator.log"), "rb") as fh:
                return fh.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- HTTP (urllib) ----------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, raw=None, timeout=20):
        data = raw
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def submit(self, prompt, **extra):
        """POST /prompt {"prompt": prompt, **extra}: (status, headers, body)."""
        body = {"prompt": prompt}
        body.update(extra)
        return self.request("POST", "/prompt", body)

    def json(self, method, path, body=None, expect=200, **kw):
        st, _, data = self.request(method, path, body, **kw)
        if st != expect:
            raise AssertionError("%s %s: %d %r" % (method, path, st, data[:500]))
        return json.loads(data) if data else None

    def upload(self, filename, content, **fields):
        boundary = "----emutest" + uuid.uuid4().hex
        parts = []
        for k, v in fields.items():
            parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                          % (boundary, k, v)).encode())
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"%s\""
                      "\r\nContent-Type: image/png\r\n\r\n" % (boundary, filename)).encode()
                     + content + b"\r\n")
        parts.append(("--%s--\r\n" % boundary).encode())
        return self.request("POST", "/upload/image", raw=b"".join(parts),
                            headers={"Content-Type": "multipart/form-data; boundary=" + boundary})

    def wait_idle(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.json("GET", "/__emulator/state")
            if s["running"] is None and not s["pending"]:
                return s
            time.sleep(0.02)
        raise AssertionError("emulator still busy: %r" % s)

    def wait_history(self, pid, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.json("GET", "/history/" + pid)
            if h:
                return h[pid]
            time.sleep(0.02)
        raise AssertionError("no history for %s" % pid)


# -- websocket client ---------------------------------------------------------------------------


class WSClient:
    def __init__(self, emu, session, client_id=None, flags=True):
        self.emu = emu
        self.session = session
        self.client_id = client_id
        self.flags = flags
        self.msgs = []

    async def connect(self, path="/ws"):
        url = "ws://%s:%d%s" % (self.emu.host, self.emu.port, path)
        if self.client_id is not None:
            url += "?clientId=" + self.client_id
        self.ws = await self.session.ws_connect(url)
        if self.flags:
            await self.ws.send_str(json.dumps({"type": "feature_flags",
                                               "data": {"supports_preview_metadata": True}}))
            await self.until(lambda m: isinstance(m, dict) and m["type"] == "feature_flags")
        else:
            await self.until(lambda m: isinstance(m, dict) and m["type"] == "status")
        return self

    async def recv(self, timeout=10):
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            m = json.loads(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            m = ("binary", struct.unpack(">I", msg.data[:4])[0])
            self.binaries = getattr(self, "binaries", []) + [msg.data]
        else:
            m = ("closed", msg.type)
        self.msgs.append(m)
        return m

    async def until(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timeout; got %r" % [norm(m)[:1] if isinstance(m, dict)
                                                          else m for m in self.msgs])
            m = await self.recv(left)
            if isinstance(m, tuple) and m[0] == "closed":
                raise AssertionError("websocket closed; got %r" % self.msgs)
            if pred(m):
                return m

    async def until_done(self, pid, timeout=15):
        return await self.until(lambda m: isinstance(m, dict) and m["type"] == "executing"
                                and m["data"]["node"] is None
                                and m["data"].get("prompt_id") == pid, timeout)

    async def post(self, path, body):
        async with self.session.post(self.emu.base + path, json=body) as r:
            text = await r.read()
            return r.status, (json.loads(text) if text else None)

    async def submit(self, prompt, **extra):
        body = {"prompt": prompt, "client_id": self.client_id}
        body.update(extra)
        st, j = await self.post("/prompt", body)
        assert st == 200, (st, j)
        return j["prompt_id"]

    async def close(self):
        await self.ws.close()


def run(coro):
    return asyncio.run(coro)


def png_text(data):
    """tEXt chunks of a PNG, parsed by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, {}
    while pos < len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + ln]
        if typ == b"tEXt":
            k, v = body.split(b"\0", 1)
            out[k.decode("latin-1")] = v.decode("latin-1")
        pos += 12 + ln
    return out


# ================================================================================================


class EmuCase(unittest.TestCase):
    """One emulator for the class, started with emu_args (and checkpoints)."""
    emu_args = ()
    checkpoints = None

    @classmethod
    def setUpClass(cls):
        cls.emu = Emu(*cls.emu_args, checkpoints=cls.checkpoints)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()


class TranscriptTests(EmuCase):
    """Message sequences against the real captures (one emulator for the class)."""
    checkpoints = TINY

    def assertSequence(self, got, transcript):
        want = [norm(m) for m in load_transcript(transcript)]
        have = [norm(m) for m in got]
        if want != have:
            import difflib
            diff = "\n".join(difflib.unified_diff([repr(x) for x in want],
                                                  [repr(x) for x in have], "transcript",
                                                  "emulator", lineterm="", n=2))
            self.fail("message sequence differs from %s:\n%s" % (transcript, diff))

    def assertHistoryLike(self, got, transcript):
        want = normalize_history(load_history(transcript))
        have = normalize_history(got)
        self.assertEqual(list(have), ["prompt", "outputs", "status", "meta"])
        self.assertEqual(have, want)

    def run_workflow(self, workflow, client_id=None, before=None):
        emu = self.emu
        cid = client_id or str(uuid.uuid4())

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(emu, s, cid).connect()
                if before:
                    await before(s)
                pid = await c.submit(workflow)
                await c.until_done(pid)
                await c.close()
                return pid, c.msgs
        return run(go())

    def test_empty_invert(self):
        pid, msgs = self.run_workflow(load_workflow("empty_invert_save.json"))
        self.assertSequence(msgs, "empty_invert.jsonl")
        h = self.emu.json("GET", "/history/" + pid)[pid]
        self.assertHistoryLike(h, "empty_invert.history.json")
        img = h["outputs"]["3"]["images"][0]
        st, hdrs, data = self.emu.request("GET", "/view?" + urllib.parse.urlencode(img))
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["Content-Type"], "image/png")
        im = Image.open(io.BytesIO(data))
        self.assertEqual(im.size, (64, 48))
        self.assertEqual(im.convert("RGB").getpixel((10, 10)), (0, 255, 255))  # inverted red
        meta = png_text(data)
        self.assertEqual(json.loads(meta["prompt"]), load_workflow("empty_invert_save.json"))

    def test_load_invert(self):
        with open(os.path.join(WORKFLOWS, "green32.png"), "rb") as fh:
            green = fh.read()
        st, _, body = self.emu.upload("green32.png", green)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"name": "green32.png", "subfolder": "",
                                            "type": "input"})
        pid, msgs = self.run_workflow(load_workflow("load_invert_save.json"))
        self.assertSequence(msgs, "load_invert.jsonl")
        h = self.emu.wait_history(pid)
        img = h["outputs"]["3"]["images"][0]
        st, _, data = self.emu.request("GET", "/view?" + urllib.parse.urlencode(img))
        src = Image.open(io.BytesIO(green)).convert("RGB")
        im = Image.open(io.BytesIO(data)).convert("RGB")
        self.assertEqual(im.size, src.size)
        r, g, b = src.getpixel((5, 5))
        self.assertEqual(im.getpixel((5, 5)), (255 - r, 255 - g, 255 - b))

    def test_tiny_sd15_then_cached_then_new_seed(self):
        wf = load_workflow("tiny_sd15_txt2img.json")
        self.emu.json("POST", "/free", {"free_memory": True})
        pid, msgs = self.run_workflow(wf)
        self.assertSequence(msgs, "tiny_sd15.jsonl")
        h1 = self.emu.json("GET", "/history/" + pid)[pid]
        self.assertHistoryLike(h1, "tiny_sd15.history.json")
        folder = os.path.join(self.emu.out, "sidecar_e2e")
        files_before = sorted(os.listdir(folder))
        with Image.open(os.path.join(folder, h1["outputs"]["9"]["images"][0]["filename"])) as im:
            self.assertEqual(im.size, (64, 64))

        # identical resubmission: all cached, old filename, no new file
        pid2, msgs2 = self.run_workflow(wf)
        self.assertSequence(msgs2, "tiny_sd15_cached.jsonl")
        h2 = self.emu.json("GET", "/history/" + pid2)[pid2]
        self.assertEqual(h2["outputs"], h1["outputs"])
        self.assertEqual(sorted(os.listdir(folder)), files_before)

        # changed seed: only the sampler and what follows run (observed_submitter transcript),
        # and an observer socket only sees status broadcasts (observer transcript)
        wf3 = json.loads(json.dumps(wf))
        wf3["3"]["inputs"]["seed"] = 43
        emu = self.emu

        async def go():
            async with aiohttp.ClientSession() as s:
                obs = await WSClient(emu, s, str(uuid.uuid4()), flags=False).connect()
                sub = await WSClient(emu, s, str(uuid.uuid4())).connect()
                pid = await sub.submit(wf3)
                await sub.until_done(pid)
                # the observer's last message is the final status
                await obs.until(lambda m: m["type"] == "status"
                                and m["data"]["status"]["exec_info"]["queue_remaining"] == 0
                                and len(obs.msgs) > 1)
                await asyncio.sleep(0.2)
                self.assertTrue(obs.ws._reader.is_eof() is False)
                extra = []
                while True:
                    try:
                        extra.append(await obs.recv(timeout=0.1))
                    except asyncio.TimeoutError:
                        break
                await sub.close()
                await obs.close()
                return pid, sub.msgs, obs.msgs + extra
        pid3, sub_msgs, obs_msgs = run(go())
        self.assertSequence(sub_msgs, "observed_submitter.jsonl")
        self.assertSequence(obs_msgs, "observer.jsonl")
        h3 = self.emu.json("GET", "/history/" + pid3)[pid3]
        f1 = h1["outputs"]["9"]["images"][0]["filename"]
        f3 = h3["outputs"]["9"]["images"][0]["filename"]
        self.assertNotEqual(f1, f3)
        with open(os.path.join(folder, f1), "rb") as a, open(os.path.join(folder, f3), "rb") as b:
            pa = Image.open(a).convert("RGB").tobytes()
            pb = Image.open(b).convert("RGB").tobytes()
        self.assertNotEqual(pa, pb, "different seeds gave identical pixels")

    def test_err_validation_exact(self):
        st, hdrs, body = self.emu.request(
            "POST", "/prompt", {"prompt": load_workflow("err_validation_bad_ckpt.json")})
        with open(os.path.join(TRANSCRIPTS, "err_validation.jsonl")) as fh:
            want = [json.loads(l) for l in fh if '"http"' in l][0]["msg"]
        self.assertEqual(st, want["status"])
        self.assertEqual(json.loads(body), want["body"])
        self.assertTrue(hdrs["Content-Type"].startswith("application/json"))

    def test_err_runtime(self):
        pid, msgs = self.run_workflow(load_workflow("err_runtime_save_outside.json"))
        self.assertSequence(msgs, "err_runtime.jsonl")
        real = [m for m in load_transcript("err_runtime.jsonl")
                if isinstance(m, dict) and m["type"] == "execution_error"][0]["data"]
        err = [m for m in msgs if m["type"] == "execution_error"][0]["data"]
        self.assertEqual(list(err), list(real))
        self.assertEqual(err["exception_type"], "Exception")
        out = os.path.realpath(self.emu.out)
        self.assertEqual(err["exception_message"],
                         real["exception_message"]
                         .replace("/opt/ComfyUI/output", out)
                         .replace("/opt/ComfyUI/escape", os.path.join(os.path.dirname(out),
                                                                      "escape"))
                         .replace("commonpath: /opt/ComfyUI", "commonpath: "
                                  + os.path.dirname(out)))
        self.assertEqual(list(err["current_inputs"]), list(real["current_inputs"]))
        self.assertEqual(err["current_inputs"]["filename_prefix"], ["../escape/x"])
        self.assertEqual(err["current_inputs"]["extra_pnginfo"], [None])
        self.assertEqual(err["current_outputs"], real["current_outputs"])
        self.assertTrue(all(isinstance(x, str) for x in err["traceback"]))
        h = self.emu.json("GET", "/history/" + pid)[pid]
        self.assertHistoryLike(h, "err_runtime.history.json")
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.emu.out), "escape")))

    def test_no_client_id_routing(self):
        """Without client_id: no execution_* / executing / executed, but progress and
        progress_state are broadcast."""
        emu = self.emu
        wf = load_workflow("tiny_sd15_txt2img.json")
        wf["3"]["inputs"]["seed"] = 777

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(emu, s, "watcher", flags=False).connect()
                st, j = await c.post("/prompt", {"prompt": wf})
                self.assertEqual(st, 200)
                await c.until(lambda m: m["type"] == "status" and
                              m["data"]["status"]["exec_info"]["queue_remaining"] == 0
                              and any(x["type"] == "progress" for x in c.msgs
                                      if isinstance(x, dict)))
                await c.close()
                return c.msgs
        msgs = run(go())
        types = {m["type"] for m in msgs}
        self.assertEqual(types, {"status", "progress", "progress_state"})


class InterruptAndPreviewTests(unittest.TestCase):

    def test_interrupt(self):
        emu = Emu("--step-time", "0.05", checkpoints=TINY)
        self.addCleanup(emu.stop)
        wf = load_workflow("tiny_sd15_30steps.json")
        # the capture ran with seed 98 (see its history)
        wf["3"]["inputs"]["seed"] = load_history("interrupt.history.json")["prompt"][2]["3"][
            "inputs"]["seed"]

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(emu, s, str(uuid.uuid4())).connect()
                pid = await c.submit(wf)
                await c.until(lambda m: m["type"] == "progress" and m["data"]["value"] == 2)
                t0 = time.monotonic()
                st, _ = await c.post("/interrupt", {})
                self.assertEqual(st, 200)
                await c.until(lambda m: m["type"] == "execution_interrupted")
                self.assertLess(time.monotonic() - t0, 0.2)
                await c.until_done(pid)
                await c.close()
                return pid, c.msgs
        pid, msgs = run(go())
        TranscriptTests.assertSequence(self, msgs, "interrupt.jsonl")
        h = emu.json("GET", "/history/" + pid)[pid]
        TranscriptTests.assertHistoryLike(self, h, "interrupt.history.json")

    def test_preview_type4_and_type1(self):
        emu = Emu("--preview-method", "latent2rgb", "--preview-size", "32", checkpoints=TINY)
        self.addCleanup(emu.stop)
        wf = load_workflow("tiny_sd15_txt2img.json")

        async def go(flags, seed):
            wf["3"]["inputs"]["seed"] = seed
            async with aiohttp.ClientSession() as s:
                c = await WSClient(emu, s, str(uuid.uuid4()), flags=flags).connect()
                pid = await c.submit(wf)
                await c.until_done(pid)
                await c.close()
                return pid, c
        pid, c = run(go(True, 42))
        TranscriptTests.assertSequence(self, c.msgs, "tiny_sd15_preview.jsonl")
        h = emu.json("GET", "/history/" + pid)[pid]
        TranscriptTests.assertHistoryLike(self, h, "tiny_sd15_preview.history.json")
        for frame in c.binaries:
            typ, mlen = struct.unpack(">II", frame[:8])
            self.assertEqual(typ, 4)
            meta = json.loads(frame[8:8 + mlen])
            self.assertEqual(meta, {"node_id": "3", "prompt_id": pid, "display_node_id": "3",
                                    "parent_node_id": None, "real_node_id": "3",
                                    "image_type": "image/jpeg"})
            im = Image.open(io.BytesIO(frame[8 + mlen:]))
            self.assertEqual(im.format, "JPEG")
            self.assertLessEqual(max(im.size), 32)
        # a client that did not negotiate gets type 1 frames (format 1 = JPEG)
        pid, c = run(go(False, 43))
        self.assertEqual(len(c.binaries), 4)
        for frame in c.binaries:
            self.assertEqual(struct.unpack(">II", frame[:8]), (1, 1))
            self.assertEqual(Image.open(io.BytesIO(frame[8:])).format, "JPEG")


class HttpTests(EmuCase):

    def test_api_prefix_and_basic_routes(self):
        e = self.emu
        for p in ("", "/api"):
            self.assertEqual(e.json("GET", p + "/prompt"), {"exec_info": {"queue_remaining": 0}})
            st = e.json("GET", p + "/system_stats")
            self.assertEqual(st["system"]["comfyui_version"], "0.3.65")
            self.assertEqual(st["devices"][0]["type"], "cpu")
            self.assertEqual(e.json("GET", p + "/features"),
                             {"supports_preview_metadata": True, "max_upload_size": 104857600})
            self.assertEqual(e.json("GET", p + "/embeddings"), [])
            self.assertIn("checkpoints", e.json("GET", p + "/models"))
            self.assertEqual(e.json("GET", p + "/models/checkpoints"),
                             ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"])
            self.assertEqual(e.request("GET", p + "/models/nope")[0], 404)
            self.assertEqual(e.json("GET", p + "/object_info/Nope"), {})
            ks = e.json("GET", p + "/object_info/KSampler")["KSampler"]
            self.assertEqual(ks["output"], ["LATENT"])
            self.assertIn("nearest-exact",
                          e.json("GET", p + "/object_info/ImageScale")["ImageScale"]
                          ["input"]["required"]["upscale_method"][0])
        allinfo = e.json("GET", "/api/object_info")
        for cls in ("CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncodeSDXL",
                    "CLIPTextEncodeSDXLRefiner", "EmptyLatentImage", "KSampler",
                    "KSamplerAdvanced", "VAEDecode", "VAEEncode", "LoadImage", "ImageScale",
                    "ImageInvert", "EmptyImage", "SaveImage", "PreviewImage"):
            self.assertIn(cls, allinfo)
        self.assertTrue(allinfo["SaveImage"]["output_node"])
        self.assertEqual(allinfo["CheckpointLoaderSimple"]["output"], ["MODEL", "CLIP", "VAE"])
        self.assertEqual(e.request("GET", "/nope")[0], 404)
        self.assertEqual(e.request("DELETE", "/prompt")[0], 405)
        st, _, body = e.request("OPTIONS", "/prompt")
        self.assertEqual((st, body), (200, b""))
        # Origin/Host mismatch on a loopback host
        st, _, _ = e.request("GET", "/prompt", headers={"Origin": "http://evil.example"})
        self.assertEqual(st, 403)
        st, _, _ = e.request("GET", "/prompt", headers={"Origin": e.base})
        self.assertEqual(st, 200)

    def test_prompt_numbers_and_errors(self):
        e = self.emu
        first = len(e.json("GET", "/__emulator/prompts"))
        st, hdrs, body = e.request("POST", "/prompt", raw=b"{not json")
        self.assertEqual(st, 500)
        self.assertTrue(hdrs["Content-Type"].startswith("text/plain"))
        st, _, body = e.request("POST", "/prompt", {})
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["error"]["type"], "no_prompt")
        st, _, b1 = self.emu.submit(empty_image(), prompt_id="mine-1")
        self.assertEqual(st, 200)
        j1 = json.loads(b1)
        self.assertEqual(j1["prompt_id"], "mine-1")
        self.assertEqual(j1["node_errors"], {})
        self.assertIsInstance(j1["number"], int)
        bad = empty_image()
        bad["1"]["inputs"]["width"] = 0
        st, _, b2 = self.emu.submit(bad)
        self.assertEqual(st, 400)
        j2 = json.loads(b2)
        self.assertEqual(j2["error"]["type"], "prompt_outputs_failed_validation")
        self.assertEqual(j2["error"]["details"], "")
        err = j2["node_errors"]["1"]
        self.assertEqual(err["errors"][0]["type"], "value_smaller_than_min")
        self.assertEqual(err["errors"][0]["message"], "Value 0 smaller than min of 1")
        self.assertEqual(err["dependent_outputs"], ["2"])
        st, _, b3 = self.emu.submit(empty_image())
        self.assertEqual(json.loads(b3)["number"], j1["number"] + 2, "counter not consumed")
        st, _, b4 = self.emu.submit(empty_image(color=5), number=7)
        self.assertEqual(json.loads(b4)["number"], 7.0)
        self.assertIsInstance(json.loads(b4)["number"], float)
        e.wait_idle()
        # unknown class, missing class_type, no outputs, missing input, wrong link, bad link
        g = empty_image()
        g["3"] = {"class_type": "Nope", "inputs": {}}
        j = json.loads(self.emu.submit(g)[2])
        self.assertEqual(j, {"error": {"type": "invalid_prompt", "message":
                                       "Cannot execute because node Nope does not exist.",
                                       "details": "Node ID '#3'", "extra_info": {}},
                             "node_errors": {}})
        g = empty_image()
        del g["1"]["class_type"]
        self.assertEqual(json.loads(self.emu.submit(g)[2])["error"]["message"],
                         "Cannot execute because a node is missing the class_type property.")
        g = empty_image()
        del g["2"]
        self.assertEqual(json.loads(self.emu.submit(g)[2])["error"],
                         {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                          "details": "", "extra_info": {}})
        g = empty_image()
        del g["2"]["inputs"]["images"]
        j = json.loads(self.emu.submit(g)[2])
        self.assertEqual(j["error"]["details"], "Required input is missing: images")
        self.assertEqual(j["node_errors"]["2"]["errors"][0]["type"], "required_input_missing")
        g = empty_image()
        g["4"] = {"class_type": "EmptyLatentImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1}}
        g["2"]["inputs"]["images"] = ["4", 0]
        j = json.loads(self.emu.submit(g)[2])
        self.assertEqual(j["node_errors"]["2"]["errors"][0]["type"], "return_type_mismatch")
        self.assertEqual(j["node_errors"]["2"]["errors"][0]["details"],
                         "images, received_type(LATENT) mismatch input_type(IMAGE)")
        g = empty_image()
        g["2"]["inputs"]["images"] = ["99", 0]
        st, _, b = self.emu.submit(g)
        j = json.loads(b)
        self.assertEqual(st, 400)
        self.assertEqual(j["node_errors"]["2"]["errors"][0]["type"],
                         "exception_during_validation")
        g = {"4": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
             "5": {"class_type": "EmptyLatentImage",
                   "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}},
             "3": {"class_type": "KSampler", "inputs": {
                 "seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "nope", "scheduler": "normal",
                 "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0],
                 "latent_image": ["5", 0]}},
             "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
             "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
        j = json.loads(self.emu.submit(g)[2])
        err = j["node_errors"]["3"]["errors"][0]
        self.assertEqual(err["type"], "value_not_in_list")
        self.assertIsNone(err["extra_info"]["input_config"])   # more than 20 choices
        self.assertIn("(list of length", err["details"])
        g["3"]["inputs"]["sampler_name"] = "euler"
        g["3"]["inputs"]["steps"] = 20000
        j = json.loads(self.emu.submit(g)[2])
        self.assertEqual(j["node_errors"]["3"]["errors"][0]["type"], "value_bigger_than_max")
        g["3"]["inputs"]["steps"] = 2
        st, _, b = self.emu.submit(g)
        self.assertEqual(st, 200, b)
        pid = json.loads(b)["prompt_id"]
        h = e.wait_history(pid)
        img = h["outputs"]["9"]["images"][0]
        self.assertEqual(img["type"], "temp")
        self.assertRegex(img["filename"], r"^ComfyUI_temp_[a-z]{5}_00001_\.png$")
        self.assertTrue(os.path.isfile(os.path.join(e.temp, img["filename"])))
        rec = e.json("GET", "/__emulator/prompts")[first:]
        self.assertEqual(rec[0]["status"], 500)
        self.assertIsNone(rec[0]["body"])
        self.assertEqual([r["status"] for r in rec[1:3]], [400, 200])
        self.assertEqual(rec[2]["prompt_id"], "mine-1")

    def test_history_and_queue(self):
        e = self.emu
        e.json("POST", "/history", {"clear": True})
        pids = []
        for i in range(3):
            st, _, b = self.emu.submit(empty_image(color=100 + i, prefix="hq"))
            pids.append(json.loads(b)["prompt_id"])
        e.wait_idle()
        self.assertEqual(list(e.json("GET", "/history")), pids)
        self.assertEqual(list(e.json("GET", "/history?max_items=2")), pids[1:])
        self.assertEqual(list(e.json("GET", "/history?offset=1&max_items=1")), pids[1:2])
        self.assertEqual(e.request("GET", "/history?max_items=x")[0], 500)
        self.assertEqual(e.json("GET", "/history/nope"), {})
        self.assertEqual(e.request("POST", "/history", {"delete": [pids[0]]})[2], b"")
        self.assertEqual(list(e.json("GET", "/api/history")), pids[1:])
        # queue: pending items are 5-element lists; delete and clear
        e.json("POST", "/__emulator/fault", {"mode": "hang", "times": 1})
        st, _, b = self.emu.submit(empty_image(color=1, prefix="q"))
        hung = json.loads(b)["prompt_id"]
        more = [json.loads(self.emu.submit(empty_image(color=2 + i, prefix="q"))[2])
                ["prompt_id"] for i in range(3)]
        q = e.json("GET", "/queue")
        self.assertEqual(len(q["queue_running"]), 1)
        self.assertEqual(q["queue_running"][0][1], hung)
        self.assertEqual(len(q["queue_running"][0]), 5)
        self.assertEqual(sorted(i[1] for i in q["queue_pending"]), sorted(more))
        self.assertEqual(e.json("GET", "/prompt")["exec_info"]["queue_remaining"], 4)
        st, _, body = e.request("POST", "/queue", {"delete": [more[0]]})
        self.assertEqual((st, body), (200, b""))
        self.assertEqual(e.json("GET", "/__emulator/state")["pending"], more[1:])
        e.request("POST", "/queue", {"clear": True})
        self.assertEqual(e.json("GET", "/queue")["queue_pending"], [])
        self.assertEqual(e.json("GET", "/history/" + hung), {})
        e.json("POST", "/__emulator/reset", {})
        h = e.wait_history(hung)
        self.assertEqual(h["status"]["status_str"], "error")
        self.assertEqual(h["status"]["messages"][-1][0], "execution_interrupted")
        e.wait_idle()
        self.assertEqual(e.json("GET", "/history/" + more[1]), {})

    def test_view_rules(self):
        e = self.emu
        os.makedirs(os.path.join(e.out, "sub"), exist_ok=True)
        with open(os.path.join(e.out, "sub", "a.png"), "wb") as fh:
            fh.write(b"\x89PNG fake")
        with open(os.path.join(e.out, "page.html"), "w") as fh:
            fh.write("<html>")
        with open(os.path.join(e.inp, "in.png"), "wb") as fh:
            fh.write(b"input file")
        cases = [
            ("filename=a.png&subfolder=sub", 200),
            ("filename=a.png&subfolder=sub&type=output", 200),
            ("filename=x/a.png&subfolder=sub", 200),        # basename only
            ("filename=a.png", 404),
            ("filename=..%2Fa.png", 400),
            ("filename=%2Fetc%2Fpasswd", 400),
            ("filename=a..png&subfolder=sub", 400),
            ("filename=a.png&subfolder=sub&type=bogus", 400),
            ("filename=a.png&subfolder=..%2F..", 403),
            ("filename=in.png&type=input", 200),
            ("filename=in.png%20%5Binput%5D&type=output", 200),
            ("filename=%20%5Binput%5D", 400),
            ("subfolder=sub", 404),
            ("filename=page.html", 200),
        ]
        for q, want in cases:
            with self.subTest(q=q):
                st, hdrs, body = e.request("GET", "/view?" + q)
                self.assertEqual(st, want, body[:200])
        st, hdrs, body = e.request("GET", "/view?filename=a.png&subfolder=sub")
        self.assertEqual(body, b"\x89PNG fake")
        self.assertEqual(hdrs["Content-Type"], "image/png")
        self.assertEqual(hdrs["Content-Disposition"], 'filename="a.png"')
        st, hdrs, body = e.request("GET", "/view?filename=page.html")
        self.assertEqual(hdrs["Content-Type"], "application/octet-stream")

    def test_upload_rules(self):
        e = self.emu
        a = b"\x89PNG first" + uuid.uuid4().bytes
        b = b"\x89PNG second" + uuid.uuid4().bytes
        r = lambda *x, **k: (lambda s: (s[0], json.loads(s[2]) if s[0] == 200 else s[2]))(
            e.upload(*x, **k))
        self.assertEqual(r("up.png", a), (200, {"name": "up.png", "subfolder": "",
                                               "type": "input"}))
        self.assertEqual(r("up.png", a)[1]["name"], "up.png")           # same bytes: reused
        self.assertEqual(r("up.png", b)[1]["name"], "up (1).png")       # renamed
        self.assertEqual(r("up.png", b + b"x")[1]["name"], "up (2).png")
        self.assertEqual(r("up.png", b)[1]["name"], "up (1).png")       # duplicate of (1)
        self.assertEqual(r("up.png", b, overwrite="true")[1]["name"], "up.png")
        with open(os.path.join(e.inp, "up.png"), "rb") as fh:
            self.assertEqual(fh.read(), b)
        self.assertEqual(r("s.png", a, subfolder="deep/er", type="temp"),
                         (200, {"name": "s.png", "subfolder": "deep/er", "type": "temp"}))
        self.assertTrue(os.path.isfile(os.path.join(e.temp, "deep", "er", "s.png")))
        self.assertEqual(r("o.png", a, type="output")[1]["type"], "output")
        self.assertEqual(e.upload("x.png", a, subfolder="../..")[0], 400)
        self.assertEqual(e.upload("x.png", a, type="bogus")[0], 500)
        self.assertEqual(e.upload("", a)[0], 400)
        # LoadImage accepts subfolder paths and annotated names
        img = Image.new("RGB", (24, 16), (10, 20, 30))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        e.upload("li.png", buf.getvalue(), subfolder="sf")
        e.upload("lo.png", buf.getvalue(), type="output")
        li = empty_image()
        li["1"] = {"class_type": "LoadImage", "inputs": {"image": "sf/li.png"}}
        st, _, body = self.emu.submit(li)
        self.assertEqual(st, 200, body)
        li["1"]["inputs"]["image"] = "lo.png [output]"
        st, _, body = self.emu.submit(li)
        self.assertEqual(st, 200, body)
        h = e.wait_history(json.loads(body)["prompt_id"])
        img = h["outputs"]["2"]["images"][0]
        data = e.request("GET", "/view?" + urllib.parse.urlencode(img))[2]
        self.assertEqual(Image.open(io.BytesIO(data)).size, (24, 16))
        li["1"]["inputs"]["image"] = "missing.png"
        st, _, body = self.emu.submit(li)
        self.assertEqual(st, 400)
        err = json.loads(body)["node_errors"]["1"]["errors"][0]
        self.assertEqual(err["type"], "custom_validation_failed")
        self.assertEqual(err["details"], "image - Invalid image file: missing.png")
        self.assertIn("li.png", [n for n in e.json("GET", "/object_info/LoadImage")
                                 ["LoadImage"]["input"]["required"]["image"][0]] + ["li.png"])

    def test_save_image_naming_and_metadata(self):
        e = self.emu
        g = empty_image(1024, 1024, prefix="big/%width%x%height%", color=0x123456)
        st, _, body = self.emu.submit(g, extra_data={"extra_pnginfo": {"sidecar": {"job": "J1"}}})
        self.assertEqual(st, 200, body)
        h = e.wait_history(json.loads(body)["prompt_id"])
        img = h["outputs"]["2"]["images"][0]
        self.assertEqual(img, {"filename": "1024x1024_00001_.png", "subfolder": "big",
                               "type": "output"})
        path = os.path.join(e.out, "big", "1024x1024_00001_.png")
        with open(path, "rb") as fh:
            data = fh.read()
        im = Image.open(io.BytesIO(data))
        self.assertEqual(im.size, (1024, 1024))
        self.assertEqual(im.mode, "RGB")
        meta = png_text(data)
        self.assertEqual(json.loads(meta["sidecar"]), {"job": "J1"})
        self.assertEqual(json.loads(meta["prompt"])["2"]["inputs"]["filename_prefix"],
                         "big/%width%x%height%")
        # the counter continues from the files on disk
        open(os.path.join(e.out, "big", "1024x1024_00041_.png"), "wb").close()
        g["1"]["inputs"]["color"] = 1
        h = e.wait_history(json.loads(self.emu.submit(g)[2])["prompt_id"])
        self.assertEqual(h["outputs"]["2"]["images"][0]["filename"], "1024x1024_00042_.png")
        # batch of 2 from a VAEDecode, ImageScale and VAEEncode chain
        g = {"4": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
             "5": {"class_type": "EmptyLatentImage",
                   "inputs": {"width": 128, "height": 64, "batch_size": 2}},
             "6": {"class_type": "CLIPTextEncodeSDXL", "inputs": {
                 "clip": ["4", 1], "width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0,
                 "target_width": 1024, "target_height": 1024, "text_g": "a", "text_l": "a"}},
             "7": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
                 "ascore": 2.5, "width": 1024, "height": 1024, "text": "b", "clip": ["4", 1]}},
             "3": {"class_type": "KSamplerAdvanced", "inputs": {
                 "model": ["4", 0], "add_noise": "enable", "noise_seed": 5, "steps": 25,
                 "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                 "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
                 "start_at_step": 0, "end_at_step": 20, "return_with_leftover_noise": "enable"}},
             "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
             "10": {"class_type": "ImageScale", "inputs": {
                 "image": ["8", 0], "upscale_method": "nearest-exact", "width": 40,
                 "height": 30, "crop": "center"}},
             "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
             "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0],
                                                          "vae": ["4", 2]}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["12", 0],
                                                         "filename_prefix": "chain"}}}
        st, _, body = self.emu.submit(g, client_id="nobody-listens")
        self.assertEqual(st, 200, body)
        h = e.wait_history(json.loads(body)["prompt_id"])
        names = [i["filename"] for i in h["outputs"]["9"]["images"]]
        self.assertEqual(names, ["chain_00001_.png", "chain_00002_.png"])
        sizes = []
        for n in names:
            with Image.open(os.path.join(e.out, n)) as im:
                sizes.append(im.size)
        self.assertEqual(sizes, [(40, 24), (40, 24)])


class FaultTests(EmuCase):
    emu_args = ("--step-time", "0.01")
    checkpoints = TINY

    def setUp(self):
        self.emu.json("POST", "/__emulator/reset", {})
        self.emu.wait_idle()
        self.emu.json("POST", "/free", {"free_memory": True})

    def graph(self, seed, steps=4):
        wf = load_workflow("tiny_sd15_txt2img.json")
        wf["3"]["inputs"]["seed"] = seed
        wf["3"]["inputs"]["steps"] = steps
        return wf

    def run_prompt(self, wf, until="done", client_id=None, flags=True):
        emu = self.emu

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(emu, s, client_id or str(uuid.uuid4()), flags).connect()
                pid = await c.submit(wf)
                if until == "done":
                    await c.until_done(pid)
                await c.close()
                return pid, c.msgs
        return run(go())

    def types(self, msgs):
        return [m["type"] if isinstance(m, dict) else m[0] for m in msgs]

    def test_runtime_error(self):
        self.emu.json("POST", "/__emulator/fault", {"mode": "runtime_error", "node": "3",
                                                    "message": "boom", "exception_type":
                                                    "RuntimeError"})
        pid, msgs = self.run_prompt(self.graph(1))
        err = [m for m in msgs if m["type"] == "execution_error"][0]["data"]
        self.assertEqual((err["node_id"], err["node_type"], err["exception_type"],
                          err["exception_message"]), ("3", "KSampler", "RuntimeError", "boom\n"))
        self.assertEqual(err["executed"], ["4", "5", "7", "6"])
        self.assertEqual(self.types(msgs)[-3:], ["execution_error", "status", "executing"])
        self.assertEqual(self.emu.json("GET", "/history/" + pid)[pid]["status"]["status_str"],
                         "error")
        self.assertEqual(self.emu.json("GET", "/__emulator/state")["completed"] >= 1, True)
        # times=1: the next prompt works
        pid, msgs = self.run_prompt(self.graph(2))
        self.assertIn("execution_success", self.types(msgs))

    def test_oom_and_class_selector_and_times(self):
        self.emu.json("POST", "/__emulator/fault", {"mode": "oom"})
        pid, msgs = self.run_prompt(self.graph(3))
        err = [m for m in msgs if m["type"] == "execution_error"][0]["data"]
        self.assertEqual(err["node_id"], "3")
        self.assertEqual(err["exception_type"], "torch.OutOfMemoryError")
        self.assertIn("out of memory", err["exception_message"])
        self.assertTrue(err["exception_message"].endswith(
            "\nThis error means you ran out of memory on your GPU.\n\nTIPS: If the workflow "
            "worked before you might have accidentally set the batch_size to a large number."))
        armed = self.emu.json("POST", "/__emulator/fault",
                              {"mode": "runtime_error", "class_type": "VAEDecode", "times": 2})
        self.assertEqual(armed["armed"][0]["times"], 2)
        for seed in (4, 5):
            _, msgs = self.run_prompt(self.graph(seed))
            err = [m for m in msgs if m["type"] == "execution_error"][0]["data"]
            self.assertEqual(err["node_id"], "8")
        _, msgs = self.run_prompt(self.graph(6))
        self.assertIn("execution_success", self.types(msgs))
        self.assertEqual(self.emu.request("POST", "/__emulator/fault", {"mode": "nope"})[0], 400)

    def test_hang_and_reset(self):
        self.emu.json("POST", "/__emulator/fault", {"mode": "hang", "node": "8"})
        emu = self.emu

        async def go():
            async with aiohttp.ClientSession() as s:
                cid = str(uuid.uuid4())
                c = await WSClient(emu, s, cid).connect()
                pid = await c.submit(self.graph(7))
                await c.until(lambda m: m["type"] == "executing" and m["data"]["node"] == "8")
                with self.assertRaises(asyncio.TimeoutError):
                    await c.recv(timeout=0.3)
                # a reconnect with the same id gets status then executing {node}
                c2 = WSClient(emu, s, cid, flags=False)
                await c2.connect()
                m = await c2.recv()
                self.assertEqual(m, {"type": "executing", "data": {"node": "8"}})
                await c.close()
                self.assertEqual(emu.json("GET", "/__emulator/state")["running"], pid)
                st, _ = await c2.post("/__emulator/reset", {})
                await c2.until(lambda m: m["type"] == "execution_interrupted")
                await c2.until_done(pid)
                await c2.close()
                return pid
        pid = run(go())
        h = self.emu.json("GET", "/history/" + pid)[pid]
        self.assertEqual(h["status"]["messages"][-1][1]["node_id"], "8")

    def test_ws_silence(self):
        self.emu.json("POST", "/__emulator/fault", {"mode": "ws_silence"})
        emu = self.emu

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(emu, s, str(uuid.uuid4())).connect()
                pid = await c.submit(self.graph(8))
                await c.until(lambda m: m["type"] == "status")   # the enqueue broadcast
                h = None
                deadline = time.monotonic() + 10
                while not h and time.monotonic() < deadline:
                    async with s.get(emu.base + "/history/" + pid) as r:
                        h = await r.json()
                    await asyncio.sleep(0.02)
                with self.assertRaises(asyncio.TimeoutError):
                    await c.recv(timeout=0.2)
                await c.close()
                return h[pid]
        h = run(go())
        self.assertEqual(h["status"]["status_str"], "success")

    def test_ws_drop(self):
        emu = self.emu
        for abrupt in (False, True):
            with self.subTest(abrupt=abrupt):
                emu.json("POST", "/__emulator/fault", {"mode": "ws_drop", "after": 3,
                                                       "abrupt": abrupt})

                async def go():
                    async with aiohttp.ClientSession() as s:
                        c = await WSClient(emu, s, str(uuid.uuid4())).connect()
                        pid = await c.submit(self.graph(9 + abrupt))
                        got = []
                        while True:
                            try:
                                m = await c.ws.receive(timeout=5)
                            except (asyncio.TimeoutError, aiohttp.ClientError):
                                got.append("error")
                                break
                            if m.type != aiohttp.WSMsgType.TEXT:
                                got.append(m.type)
                                break
                            got.append(json.loads(m.data)["type"])
                        return pid, got
                pid, got = run(go())
                # enqueue status, then 3 messages of the prompt, then the close
                self.assertEqual(got[:4], ["status", "status", "execution_start",
                                           "execution_cached"])
                self.assertEqual(len(got), 5, got)
                if not abrupt:
                    self.assertIn(got[4], (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                           aiohttp.WSMsgType.CLOSING))
                h = emu.wait_history(pid)
                self.assertEqual(h["status"]["status_str"], "success")

    def test_view_faults_and_prompt_500(self):
        e = self.emu
        with open(os.path.join(e.out, "v.png"), "wb") as fh:
            fh.write(b"data")
        e.json("POST", "/__emulator/fault", {"mode": "view_error", "status": 503})
        self.assertEqual(e.request("GET", "/view?filename=v.png")[0], 503)
        self.assertEqual(e.request("GET", "/view?filename=v.png")[0], 200)
        e.json("POST", "/__emulator/fault", {"mode": "view_error"})
        st, hdrs, body = e.request("GET", "/api/view?filename=v.png")
        self.assertEqual(st, 500)
        self.assertTrue(hdrs["Content-Type"].startswith("text/plain"))
        e.json("POST", "/__emulator/fault", {"mode": "slow_view", "delay": 0.4})
        t0 = time.monotonic()
        st, _, body = e.request("GET", "/view?filename=v.png")
        self.assertEqual((st, body), (200, b"data"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.38)
        e.json("POST", "/__emulator/fault", {"mode": "prompt_500"})
        before = len(e.json("GET", "/__emulator/prompts"))
        st, hdrs, body = e.request("POST", "/prompt", {"prompt": self.graph(11)})
        self.assertEqual(st, 500)
        self.assertTrue(hdrs["Content-Type"].startswith("text/plain"))
        recs = e.json("GET", "/__emulator/prompts")
        self.assertEqual(len(recs), before + 1)
        self.assertEqual(recs[-1]["status"], 500)
        self.assertEqual(e.request("POST", "/prompt", {"prompt": self.graph(11)})[0], 200)
        reqs = e.json("GET", "/__emulator/requests")
        self.assertTrue(any(r["path"] == "/api/view" for r in reqs))
        self.assertFalse(any(r["path"].startswith("/__emulator") for r in reqs))

    def test_crash(self):
        for code, sel in ((3, {"at_step": 2}), (0, {"node": "8"})):
            with self.subTest(code=code):
                e = Emu("--step-time", "0.02", checkpoints=TINY)
                self.addCleanup(e.stop)
                fault = dict(mode="crash", exit_code=code, **sel)
                e.json("POST", "/__emulator/fault", fault)

                async def go():
                    async with aiohttp.ClientSession() as s:
                        c = await WSClient(e, s, str(uuid.uuid4())).connect()
                        await c.submit(self.graph(12, steps=10))
                        got = []
                        while True:
                            m = await c.ws.receive(timeout=10)
                            if m.type != aiohttp.WSMsgType.TEXT:
                                break
                            got.append(json.loads(m.data))
                        return got
                got = run(go())
                self.assertEqual(e.proc.wait(10), code)
                progress = [m["data"]["value"] for m in got if m["type"] == "progress"]
                if "at_step" in sel:
                    self.assertEqual(progress, [1])
                else:
                    self.assertEqual(progress, list(range(1, 11)))
                    self.assertEqual(got[-1]["type"], "executing")
                    self.assertEqual(got[-1]["data"]["node"], "8")

    def test_fault_on_command_line(self):
        e = Emu("--fault", json.dumps({"mode": "runtime_error", "class_type": "EmptyImage"}))
        self.addCleanup(e.stop)
        g = {"1": {"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                         "filename_prefix": "x"}}}
        pid = json.loads(e.request("POST", "/prompt", {"prompt": g})[2])["prompt_id"]
        h = e.wait_history(pid)
        self.assertEqual(h["status"]["messages"][-1][1]["node_type"], "EmptyImage")
        self.assertEqual(e.json("GET", "/__emulator/state")["completed"], 1)


class BehaviourTests(EmuCase):
    """Queue order, reconnects, flags and smaller routes."""
    emu_args = ("--step-time", "0.01")

    def setUp(self):
        self.emu.json("POST", "/__emulator/reset", {})
        self.emu.wait_idle()

    def img(self, color, prefix="o"):
        return empty_image(color=color, prefix=prefix)

    def post(self, prompt, **extra):
        st, _, b = self.emu.submit(prompt, **extra)
        self.assertEqual(st, 200, b)
        return json.loads(b)

    def test_priority_order(self):
        e = self.emu
        e.json("POST", "/__emulator/fault", {"mode": "hang"})
        hung = self.post(self.img(1))["prompt_id"]
        a = self.post(self.img(2), prompt_id="a")
        b = self.post(self.img(3), prompt_id="b")
        c = self.post(self.img(4), prompt_id="c", front=True)
        d = self.post(self.img(5), prompt_id="d", number=a["number"] + 0.5)
        self.assertEqual(d["number"], a["number"] + 0.5)
        self.assertEqual(c["number"], -(b["number"] + 1))
        self.assertEqual(e.json("GET", "/__emulator/state")["pending"], ["c", "a", "d", "b"])
        pend = e.json("GET", "/queue")["queue_pending"]
        self.assertEqual(sorted(pend, key=lambda i: (i[0], i[1]))[0][1], "c")
        # an interrupt naming another prompt is a no-op; a targeted one works
        e.request("POST", "/interrupt", {"prompt_id": "a"})
        self.assertEqual(e.json("GET", "/__emulator/state")["running"], hung)
        e.json("POST", "/__emulator/reset", {})
        e.wait_idle()
        order = list(e.json("GET", "/history"))
        self.assertEqual(order[-5:], [hung, "c", "a", "d", "b"])
        # interrupt while idle is lost, the next prompt runs normally
        e.request("POST", "/interrupt", raw=b"garbage")
        h = e.wait_history(self.post(self.img(6))["prompt_id"])
        self.assertEqual(h["status"]["status_str"], "success")

    def test_reconnect_replaces_and_api_ws(self):
        e = self.emu

        async def go():
            async with aiohttp.ClientSession() as s:
                old = await WSClient(e, s, "same", flags=False).connect("/api/ws")
                new = await WSClient(e, s, "same", flags=False).connect("/ws")
                anon = await WSClient(e, s, None, flags=False).connect()
                self.assertRegex(anon.msgs[0]["data"]["sid"], r"^[0-9a-f]{32}$")
                self.assertEqual(new.msgs[0]["data"]["sid"], "same")
                await old.close()
                await asyncio.sleep(0.05)
                self.assertEqual(sorted(e.json("GET", "/__emulator/state")["ws_clients"]),
                                 sorted(["same", anon.msgs[0]["data"]["sid"]]))
                pid = await new.submit(self.img(7))
                await new.until_done(pid)
                await new.close()
                await anon.close()
                return new.msgs
        msgs = run(go())
        self.assertIn("execution_success", [m["type"] for m in msgs])

    def test_feature_flags_only_first_message(self):
        e = self.emu

        async def go():
            async with aiohttp.ClientSession() as s:
                c = WSClient(e, s, "ff", flags=False)
                await c.connect()
                await c.ws.send_str(json.dumps({"type": "hello", "data": {}}))
                await c.ws.send_str(json.dumps({"type": "feature_flags", "data": {}}))
                with self.assertRaises(asyncio.TimeoutError):
                    await c.recv(timeout=0.3)
                await c.close()
        run(go())

    def test_advanced_sampler_progress_max(self):
        e = self.emu
        g = {"1": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
             "2": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": "sd_xl_refiner_1.0.safetensors"}},
             "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "p", "clip": ["1", 1]}},
             "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "n", "clip": ["1", 1]}},
             "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "p", "clip": ["2", 1]}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "n", "clip": ["2", 1]}},
             "7": {"class_type": "EmptyLatentImage",
                   "inputs": {"width": 96, "height": 64, "batch_size": 1}},
             "8": {"class_type": "KSamplerAdvanced", "inputs": {
                 "model": ["1", 0], "add_noise": "enable", "noise_seed": 42, "steps": 25,
                 "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                 "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["7", 0],
                 "start_at_step": 0, "end_at_step": 20, "return_with_leftover_noise": "enable"}},
             "9": {"class_type": "KSamplerAdvanced", "inputs": {
                 "model": ["2", 0], "add_noise": "disable", "noise_seed": 42, "steps": 25,
                 "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                 "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["8", 0],
                 "start_at_step": 20, "end_at_step": 10000,
                 "return_with_leftover_noise": "disable"}},
             "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
             "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0],
                                                          "filename_prefix": "sidecar/sdxl"}}}

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(e, s, "adv").connect()
                pid = await c.submit(g)
                await c.until_done(pid)
                await c.close()
                return c.msgs
        msgs = run(go())
        prog = [(m["data"]["node"], m["data"]["value"], m["data"]["max"]) for m in msgs
                if m["type"] == "progress"]
        self.assertEqual(prog, [("8", i, 20) for i in range(1, 21)]
                         + [("9", i, 5) for i in range(1, 6)])
        execd = [m["data"]["node"] for m in msgs if m["type"] == "executing"]
        self.assertEqual(execd, ["1", "7", "4", "3", "8", "2", "6", "5", "9", "10", "11",
                                 None])
        out = [m for m in msgs if m["type"] == "executed"][0]["data"]["output"]["images"]
        self.assertEqual(out, [{"filename": "sdxl_00001_.png", "subfolder": "sidecar",
                                "type": "output"}])
        with Image.open(os.path.join(e.out, "sidecar", "sdxl_00001_.png")) as im:
            self.assertEqual(im.size, (96, 64))

    def test_duplicate_node_served_from_cache(self):
        e = self.emu
        g = {"1": {"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 4242}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                         "filename_prefix": "dupa"}},
             "3": {"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 4242}},
             "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                         "filename_prefix": "dupb"}}}

        async def go():
            async with aiohttp.ClientSession() as s:
                c = await WSClient(e, s, "dup").connect()
                pid = await c.submit(g)
                await c.until_done(pid)
                await c.close()
                return c.msgs
        msgs = run(go())
        seq = [(m["type"], m["data"].get("node")) for m in msgs
               if m["type"] in ("executing", "executed")]
        self.assertEqual(seq, [("executing", "1"), ("executing", "2"), ("executed", "2"),
                               ("executed", "3"), ("executing", "4"), ("executed", "4"),
                               ("executing", None)])
        ex3 = [m for m in msgs if m["type"] == "executed" and m["data"]["node"] == "3"][0]
        self.assertIsNone(ex3["data"]["output"])

    def test_view_preview_and_channels(self):
        e = self.emu
        Image.new("RGBA", (10, 6), (1, 2, 3, 100)).save(os.path.join(e.out, "rgba.png"))
        st, h, body = e.request("GET", "/view?filename=rgba.png&preview=jpeg;50")
        self.assertEqual((st, h["Content-Type"]), (200, "image/jpeg"))
        self.assertEqual(Image.open(io.BytesIO(body)).format, "JPEG")
        st, h, body = e.request("GET", "/view?filename=rgba.png&preview=webp")
        self.assertEqual(h["Content-Type"], "image/webp")
        st, h, body = e.request("GET", "/view?filename=rgba.png&channel=rgb")
        self.assertEqual(Image.open(io.BytesIO(body)).mode, "RGB")
        st, h, body = e.request("GET", "/view?filename=rgba.png&channel=a")
        im = Image.open(io.BytesIO(body))
        self.assertEqual(im.getpixel((0, 0)), (0, 0, 0, 100))
        st, h, body = e.request("HEAD", "/api/view?filename=rgba.png")
        self.assertEqual((st, body), (200, b""))


class FlagTests(unittest.TestCase):

    def test_cors_metadata_startup_delay_upload_limit(self):
        t0 = time.monotonic()
        e = Emu("--enable-cors-header", "--disable-metadata", "--startup-delay", "0.4",
                "--max-upload-size", "1", "--node-time", "0.1")
        self.addCleanup(e.stop)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        st, h, _ = e.request("GET", "/prompt", headers={"Origin": "http://evil.example"})
        self.assertEqual(st, 200)
        self.assertEqual(h["Access-Control-Allow-Origin"], "*")
        self.assertEqual(e.json("GET", "/features")["max_upload_size"], 1048576)
        st, _, _ = e.request("POST", "/prompt", raw=b"{" + b" " * (1100 * 1024) + b"}")
        self.assertEqual(st, 413)
        g = {"1": {"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "SaveImage",
                   "inputs": {"images": ["1", 0], "filename_prefix": "m"}}}
        t1 = time.monotonic()
        pid = json.loads(e.request("POST", "/prompt", {"prompt": g})[2])["prompt_id"]
        h = e.wait_history(pid)
        self.assertGreaterEqual(time.monotonic() - t1, 0.2)   # two nodes x --node-time
        with open(os.path.join(e.out, h["outputs"]["2"]["images"][0]["filename"]), "rb") as fh:
            self.assertEqual(png_text(fh.read()), {})


class NoiseModeTests(unittest.TestCase):

    def test_noise_1024(self):
        e = Emu("--image-mode", "noise")
        self.addCleanup(e.stop)
        g = {"4": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
             "5": {"class_type": "EmptyLatentImage",
                   "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["4", 1]}},
             "3": {"class_type": "KSampler", "inputs": {
                 "seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler",
                 "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                 "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},
             "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
             "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0],
                                                         "filename_prefix": "n"}}}
        sizes = []
        t0 = time.monotonic()
        for seed in (1, 2):
            g["3"]["inputs"]["seed"] = seed
            pid = json.loads(e.request("POST", "/prompt", {"prompt": g})[2])["prompt_id"]
            h = e.wait_history(pid)
            path = os.path.join(e.out, h["outputs"]["9"]["images"][0]["filename"])
            sizes.append(os.path.getsize(path))
            with Image.open(path) as im:
                self.assertEqual(im.size, (1024, 1024))
        self.assertLess(time.monotonic() - t0, 3)
        for s in sizes:
            self.assertGreater(s, 1.2e6)
            self.assertLess(s, 2.0e6)
        with open(os.path.join(e.out, "n_00001_.png"), "rb") as fa, \
                open(os.path.join(e.out, "n_00002_.png"), "rb") as fb:
            a, b = fa.read(), fb.read()
        self.assertNotEqual(a, b)



class MediaNodeTests(EmuCase):
    """Loaders and save nodes whose outputs are not plain PNG images (issue 8), and the
    upload form fields the request log records."""

    def run_graph(self, g, **extra):
        st, _, data = self.emu.submit(g, **extra)
        self.assertEqual(st, 200, data)
        h = self.emu.wait_history(json.loads(data)["prompt_id"])
        self.assertEqual(h["status"]["status_str"], "success", h["status"])
        return h

    @staticmethod
    def frames(batch=3, w=40, h=24):
        """A batch of distinct frames: EmptyLatentImage -> VAEDecode (node "f")."""
        return {"ck": {"class_type": "CheckpointLoaderSimple",
                       "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
                "lat": {"class_type": "EmptyLatentImage",
                        "inputs": {"width": w, "height": h, "batch_size": batch}},
                "f": {"class_type": "VAEDecode", "inputs": {"samples": ["lat", 0],
                                                            "vae": ["ck", 2]}}}

    def test_object_info(self):
        info = self.emu.json("GET", "/object_info")
        for cls in ("LoadImageMask", "MaskToImage", "SaveAnimatedWEBP", "SaveAnimatedPNG",
                    "VHS_VideoCombine", "EmulatorSineAudio", "SaveAudio", "PreviewAny"):
            self.assertIn(cls, info)
        for cls in ("SaveAnimatedWEBP", "SaveAnimatedPNG", "VHS_VideoCombine", "SaveAudio",
                    "PreviewAny"):
            self.assertTrue(info[cls]["output_node"], cls)
        self.assertEqual(info["PreviewAny"]["input"]["required"]["source"], ["*", {}])
        self.assertEqual(info["VHS_VideoCombine"]["output"], ["VHS_FILENAMES"])
        self.assertIn("image/gif", info["VHS_VideoCombine"]["input"]["required"]["format"][0])
        self.assertEqual(info["SaveAudio"]["input"]["required"]["filename_prefix"],
                         ["STRING", {"default": "audio/ComfyUI"}])

    def test_save_animated_webp(self):
        g = self.frames(3, 40, 24)
        g["s"] = {"class_type": "SaveAnimatedWEBP", "inputs": {
            "images": ["f", 0], "filename_prefix": "anim/w", "fps": 4.0, "lossless": False,
            "quality": 70, "method": "default"}}
        h = self.run_graph(g)
        ui = h["outputs"]["s"]
        self.assertEqual(ui, {"images": [{"filename": "w_00001_.webp", "subfolder": "anim",
                                          "type": "output"}], "animated": [True]})
        with Image.open(os.path.join(self.emu.out, "anim", "w_00001_.webp")) as im:
            self.assertEqual(im.format, "WEBP")
            self.assertEqual(im.size, (40, 24))
            self.assertEqual(getattr(im, "n_frames", 1), 3)
        # a batch of one is not "animated" (ComfyUI: num_frames != 1)
        g["lat"]["inputs"]["batch_size"] = 1
        ui = self.run_graph(g)["outputs"]["s"]
        self.assertEqual(ui["images"][0]["filename"], "w_00002_.webp")
        self.assertEqual(ui["animated"], [False])
        # served by /view with its type
        st, hdrs, data = self.emu.request("GET", "/view?" + urllib.parse.urlencode(
            ui["images"][0]))
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["Content-Type"], "image/webp")
        self.assertEqual(Image.open(io.BytesIO(data)).format, "WEBP")

    def test_save_animated_png(self):
        g = self.frames(2, 16, 16)
        g["s"] = {"class_type": "SaveAnimatedPNG", "inputs": {
            "images": ["f", 0], "filename_prefix": "apng", "fps": 6.0, "compress_level": 4}}
        ui = self.run_graph(g)["outputs"]["s"]
        self.assertEqual(ui, {"images": [{"filename": "apng_00001_.png", "subfolder": "",
                                          "type": "output"}], "animated": [True]})
        with Image.open(os.path.join(self.emu.out, "apng_00001_.png")) as im:
            self.assertEqual((im.format, im.size, im.n_frames), ("PNG", (16, 16), 2))

    def test_vhs_video_combine_gif(self):
        g = self.frames(3, 32, 16)
        g["v"] = {"class_type": "VHS_VideoCombine", "inputs": {
            "images": ["f", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": "vid/clip",
            "format": "image/gif", "pingpong": False, "save_output": True}}
        ui = self.run_graph(g)["outputs"]["v"]
        self.assertEqual(list(ui), ["gifs"])
        p = ui["gifs"][0]
        self.assertEqual({k: p[k] for k in ("filename", "subfolder", "type", "format",
                                            "frame_rate", "workflow")},
                         {"filename": "clip_00001.gif", "subfolder": "vid", "type": "output",
                          "format": "image/gif", "frame_rate": 8.0,
                          "workflow": "clip_00001.png"})
        self.assertEqual(p["fullpath"], os.path.join(self.emu.out, "vid", "clip_00001.gif"))
        with Image.open(p["fullpath"]) as im:
            self.assertEqual((im.format, im.size, im.n_frames), ("GIF", (32, 16), 3))
        self.assertTrue(os.path.isfile(os.path.join(self.emu.out, "vid", "clip_00001.png")))
        st, hdrs, data = self.emu.request("GET", "/view?" + urllib.parse.urlencode(
            {"filename": p["filename"], "subfolder": p["subfolder"], "type": p["type"]}))
        self.assertEqual((st, hdrs["Content-Type"]), (200, "image/gif"))
        # the counter goes on; pingpong adds the frames back; save_output false -> temp
        g["v"]["inputs"].update(pingpong=True, save_output=False)
        p = self.run_graph(g)["outputs"]["v"]["gifs"][0]
        self.assertEqual((p["type"], p["subfolder"]), ("temp", "vid"))
        with Image.open(os.path.join(self.emu.temp, "vid", p["filename"])) as im:
            self.assertEqual(im.n_frames, 4)
        g["v"]["inputs"].update(save_output=True, pingpong=False)
        g["lat"]["inputs"]["batch_size"] = 2
        p = self.run_graph(g)["outputs"]["v"]["gifs"][0]
        self.assertEqual(p["filename"], "clip_00002.gif")

    def test_save_audio_wav(self):
        g = {"a": {"class_type": "EmulatorSineAudio",
                   "inputs": {"duration": 0.5, "sample_rate": 8000, "frequency": 440.0}},
             "s": {"class_type": "SaveAudio", "inputs": {"audio": ["a", 0],
                                                         "filename_prefix": "audio/ComfyUI"}}}
        ui = self.run_graph(g)["outputs"]["s"]
        self.assertEqual(ui, {"audio": [{"filename": "ComfyUI_00001_.wav", "subfolder": "audio",
                                         "type": "output"}]})
        import wave
        with wave.open(os.path.join(self.emu.out, "audio", "ComfyUI_00001_.wav"), "rb") as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate(),
                              w.getnframes()), (1, 2, 8000, 4000))
        st, hdrs, _ = self.emu.request("GET", "/view?" + urllib.parse.urlencode(ui["audio"][0]))
        self.assertEqual(st, 200)
        self.assertIn(hdrs["Content-Type"], ("audio/x-wav", "audio/wav"))

    def test_preview_any_text(self):
        for value, text in (("hello world", "hello world"), (5, "5"), (2.5, "2.5")):
            with self.subTest(value=value):
                g = {"p": {"class_type": "PreviewAny", "inputs": {"source": value}}}
                self.assertEqual(self.run_graph(g)["outputs"]["p"], {"text": [text]})
        # linked to an IMAGE: a string description, still a text output
        g = {"i": {"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "p": {"class_type": "PreviewAny", "inputs": {"source": ["i", 0]}}}
        out = self.run_graph(g)["outputs"]["p"]["text"]
        self.assertEqual(len(out), 1)
        self.assertIsInstance(out[0], str)

    def test_upload_to_sidecar_subfolder_and_load(self):
        e = self.emu
        img = Image.new("RGBA", (12, 10), (200, 100, 50, 64))
        img.putpixel((0, 0), (10, 20, 30, 255))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        data = buf.getvalue()
        n0 = len(e.json("GET", "/__emulator/requests"))
        st, _, body = e.upload("req1_38_abc.png", data, type="input", subfolder="sidecar",
                               overwrite="true")
        self.assertEqual((st, json.loads(body)), (200, {"name": "req1_38_abc.png",
                                                        "subfolder": "sidecar",
                                                        "type": "input"}))
        path = os.path.join(e.inp, "sidecar", "req1_38_abc.png")
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), data)
        # overwrite=true replaces in place (no " (1)" name)
        st, _, body = e.upload("req1_38_abc.png", data + b"\0", type="input",
                               subfolder="sidecar", overwrite="true")
        self.assertEqual(json.loads(body)["name"], "req1_38_abc.png")
        e.upload("req1_38_abc.png", data, type="input", subfolder="sidecar", overwrite="true")
        # the request log shows the form fields and the file
        recs = [r for r in e.json("GET", "/__emulator/requests")[n0:]
                if r["path"] == "/upload/image"]
        self.assertEqual(len(recs), 3)
        self.assertEqual(recs[0]["form"], {
            "type": "input", "subfolder": "sidecar", "overwrite": "true",
            "image": {"filename": "req1_38_abc.png", "size": len(data),
                      "content_type": "image/png",
                      "sha256": __import__("hashlib").sha256(data).hexdigest()}})
        # LoadImage and LoadImageMask read sidecar/<name>
        g = {"l": {"class_type": "LoadImage", "inputs": {"image": "sidecar/req1_38_abc.png"}},
             "m": {"class_type": "LoadImageMask",
                   "inputs": {"image": "sidecar/req1_38_abc.png", "channel": "red"}},
             "a": {"class_type": "LoadImageMask",
                   "inputs": {"image": "sidecar/req1_38_abc.png", "channel": "alpha"}},
             "mi": {"class_type": "MaskToImage", "inputs": {"mask": ["m", 0]}},
             "ai": {"class_type": "MaskToImage", "inputs": {"mask": ["a", 0]}},
             "s1": {"class_type": "SaveImage", "inputs": {"images": ["l", 0],
                                                          "filename_prefix": "ld"}},
             "s2": {"class_type": "SaveImage", "inputs": {"images": ["mi", 0],
                                                          "filename_prefix": "mk"}},
             "s3": {"class_type": "SaveImage", "inputs": {"images": ["ai", 0],
                                                          "filename_prefix": "al"}}}
        h = self.run_graph(g)

        def px(node):
            f = h["outputs"][node]["images"][0]["filename"]
            with Image.open(os.path.join(e.out, f)) as im:
                return im.size, im.convert("RGB").getpixel((0, 0)), \
                    im.convert("RGB").getpixel((5, 5))
        self.assertEqual(px("s1"), ((12, 10), (10, 20, 30), (200, 100, 50)))
        self.assertEqual(px("s2"), ((12, 10), (10, 10, 10), (200, 200, 200)))
        self.assertEqual(px("s3"), ((12, 10), (0, 0, 0), (191, 191, 191)))
        # a missing file fails LoadImageMask's validation like LoadImage's
        g = {"m": {"class_type": "LoadImageMask",
                   "inputs": {"image": "sidecar/nope.png", "channel": "red"}},
             "mi": {"class_type": "MaskToImage", "inputs": {"mask": ["m", 0]}},
             "s": {"class_type": "SaveImage", "inputs": {"images": ["mi", 0],
                                                         "filename_prefix": "x"}}}
        st, _, body = e.request("POST", "/prompt", {"prompt": g})
        self.assertEqual(st, 400)
        err = json.loads(body)["node_errors"]["m"]["errors"][0]
        self.assertEqual(err["details"], "image - Invalid image file: sidecar/nope.png")


if __name__ == "__main__":
    unittest.main()
