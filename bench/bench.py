#!/usr/bin/python3
"""comfy-sidecar benchmark (issue 6), run by bench/run.sh (`make bench`).

Starts the ComfyUI emulator (--image-mode noise --step-time 0) on a port the
OS picks and the sidecar attached to it (CMD empty), both on 127.0.0.1, and
measures:

  1. added latency: N interleaved pairs of (a) one sidecar POST /prompt and
     (b) a direct ComfyUI client doing the same work (websocket, POST /prompt,
     wait for the final `executing`, /history/{id}, /view, base64), each for
     one 1024x1024 noise PNG (~1.5 MB) with its own seed;
  2. memory and CPU: RSS idle, peak RSS with 64 concurrent 1024x1024 jobs,
     CPU seconds per request;
  3. 1,000 clients waiting at once on queued jobs, each checked for its own
     image; memory at the peak;
  4. /health and /ready requests per second with wrk;
  5. base64 throughput of src/b64.c (bench/b64_bench.c, built by run.sh);
  6. time from exec to listening.

Prints one table and writes it, with the machine and the method, to
BENCHMARKS.md. Everything is bounded in count and time; every wait polls a
condition against a deadline. Only loopback traffic.
"""
import argparse
import asyncio
import base64
import datetime
import gc
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import aiohttp
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EMULATOR = os.path.join(REPO, "test", "emulator", "comfyui_emulator.py")
PYTHON = "/usr/bin/python3"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIG_VARS = (
    "HOST", "PORT", "DIRECT_ADDRESS", "COMFYUI_PORT_HOST", "CMD", "COMFY_HOME",
    "OUTPUT_DIR", "INPUT_DIR", "STARTUP_CHECK_INTERVAL_S", "STARTUP_CHECK_MAX_TRIES",
    "ALWAYS_RESTART_COMFYUI", "WARMUP_PROMPT_FILE", "MAX_BODY_SIZE_MB",
    "PREPEND_FILENAMES", "LOG_LEVEL", "COMFY_TIMEOUT_S", "RECONCILE_INTERVAL_MS",
    "MAX_OUTPUT_MB", "COMFY_STOP_TIMEOUT_S",
)

BASE_CKPT = "sd_xl_base_1.0.safetensors"


def log(msg):
    print("[bench %7.1fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


T0 = time.monotonic()


# ------------------------------------------------------------------ helpers --

def ksampler_graph(seed, width=1024, height=1024, prefix="bench"):
    """txt2img with one sampler step: the emulator decodes a seeded noise PNG.
    A new seed per request, so ComfyUI's cache never serves the sampler."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": BASE_CKPT}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": 1, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


def empty_image_graph(width, height, color, prefix="many"):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {
            "width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def ready_200(port):
    """True when the sidecar on port answers GET /ready with 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def stop_process(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def pct(values, p):
    """Percentile with linear interpolation (numpy's default)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def wait_for(cond, timeout, what, interval=0.005):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])  # kB (Threads: count)
    return out


def rss_kb(pid):
    return proc_status(pid)["VmRSS"]


def rss_detail(pid):
    st = proc_status(pid)
    return {"rss_kb": st["VmRSS"], "anon_kb": st["RssAnon"], "file_kb": st["RssFile"]}


def minflt(pid):
    """Minor page faults of the whole process so far (/proc/PID/stat field 10)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def metric(port, name):
    """One unlabelled sample from the sidecar's GET /metrics."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    m = re.search(rb"^" + name.encode() + rb" (\S+)$", data, re.M)
    if m is None:
        raise RuntimeError("no %s in /metrics" % name)
    return float(m.group(1))


def wait_trim(stack, before, timeout=60):
    """Wait until the sidecar has given memory back once more than `before`
    times (comfy_sidecar_memory_trims_total); returns the seconds waited."""
    t0 = time.perf_counter()
    wait_for(lambda: metric(stack.port, "comfy_sidecar_memory_trims_total") > before,
             timeout, "the sidecar's idle trim (IDLE_TRIM_S)", interval=0.05)
    return time.perf_counter() - t0


def reset_hwm(pid):
    """Reset VmHWM (peak RSS) to the current RSS: clear_refs 5 (Linux >= 4.0)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads, dead ones included)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def cpu_ns(pid):
    """Sum of per-thread run time in ns from schedstat (finer than ticks;
    misses threads that exited in between, so it is the cross-check)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


class RssSampler:
    """Polls VmRSS of pid every `interval` s in a thread; keeps the maximum."""

    def __init__(self, pid, interval=0.002):
        self.pid, self.interval = pid, interval
        self.max_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.max_kb = max(self.max_kb, rss_kb(self.pid))
                self.samples += 1
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


def png_info(data):
    im = Image.open(io.BytesIO(data))
    return im.format, im.size


# ------------------------------------------------------------- processes --

class Stack:
    """The emulator and a sidecar attached to it, in a temp dir."""

    def __init__(self, sidecar_bin, keep):
        self.sidecar_bin = sidecar_bin
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="sidecar-bench-")
        self.out_dir = os.path.join(self.dir, "output")
        self.in_dir = os.path.join(self.dir, "input")
        os.makedirs(self.out_dir)
        os.makedirs(self.in_dir)
        self.emu = self.side = None
        self.emu_port = self.port = None

    def start_emulator(self):
        logf = open(os.path.join(self.dir, "emulator.log"), "wb")
        self.emu = subprocess.Popen(
            [PYTHON, EMULATOR, "--listen", "127.0.0.1", "--port", "0",
             "--image-mode", "noise", "--step-time", "0",
             "--output-directory", self.out_dir, "--input-directory", self.in_dir,
             "--temp-directory", self.dir],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        logf.close()

        def listening():
            if self.emu.poll() is not None:
                raise RuntimeError("emulator exited: see %s/emulator.log" % self.dir)
            with open(os.path.join(self.dir, "emulator.log"), "rb") as f:
                m = re.search(rb"emulator listening on http://[^:]+:(\d+)", f.read())
            return int(m.group(1)) if m else None

        self.emu_port = wait_for(listening, 30, "the emulator to listen")
        log("emulator pid %d on port %d" % (self.emu.pid, self.emu_port))

    def sidecar_env(self, port, comfy_port, **extra):
        env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        env.update({
            "CMD": "", "HOST": "127.0.0.1", "PORT": str(port),
            "COMFYUI_PORT_HOST": str(comfy_port), "DIRECT_ADDRESS": "127.0.0.1",
            "LOG_LEVEL": "warn", "COMFY_HOME": self.dir,
            "OUTPUT_DIR": self.out_dir, "INPUT_DIR": self.in_dir,
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start_sidecar(self):
        self.port = free_port()
        self.side_log = open(os.path.join(self.dir, "sidecar.log"), "wb")
        self.side = subprocess.Popen(
            [self.sidecar_bin], env=self.sidecar_env(self.port, self.emu_port),
            stdout=self.side_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.dir)

        def ready():
            if self.side.poll() is not None:
                raise RuntimeError("sidecar exited %s: see %s/sidecar.log"
                                   % (self.side.returncode, self.dir))
            return ready_200(self.port)

        wait_for(ready, 30, "the sidecar's /ready to answer 200", interval=0.01)
        log("sidecar pid %d on port %d, ready" % (self.side.pid, self.port))

    def clean_outputs(self):
        for name in os.listdir(self.out_dir):
            p = os.path.join(self.out_dir, name)
            if os.path.isfile(p):
                os.unlink(p)

    def stop(self):
        for p in (self.side, self.emu):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT if p is self.emu else signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log("kept logs in %s" % self.dir)


# ---------------------------------------------------------------- clients --

class DirectClient:
    """What a program talking to ComfyUI itself does for one image."""

    def __init__(self, session, comfy_url):
        self.s = session
        self.url = comfy_url
        self.cid = "bench-direct-%d" % os.getpid()
        self.ws = None

    async def connect(self):
        # Its own session: the websocket holds its connection for good, and
        # the HTTP session is limited to one keep-alive connection.
        self.ws_session = aiohttp.ClientSession()
        self.ws = await self.ws_session.ws_connect(self.url + "/ws?clientId=" + self.cid,
                                          max_msg_size=0)

    async def run(self, graph):
        """Returns (elapsed_s, base64 text, t_post_exec_s)."""
        t0 = time.perf_counter()
        async with self.s.post(self.url + "/prompt",
                               json={"prompt": graph, "client_id": self.cid}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError("direct POST /prompt: %s %s" % (r.status, body))
        pid = body["prompt_id"]
        while True:
            msg = await self.ws.receive(timeout=60)
            if msg.type == aiohttp.WSMsgType.TEXT:
                m = json.loads(msg.data)
                d = m.get("data") or {}
                if d.get("prompt_id") != pid:
                    continue
                if m["type"] == "executing" and d.get("node") is None:
                    break
                if m["type"] in ("execution_error", "execution_interrupted"):
                    raise RuntimeError("direct: %s" % m)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                continue
            else:
                raise RuntimeError("direct websocket: %s" % msg)
        t_exec = time.perf_counter()
        async with self.s.get(self.url + "/history/" + pid) as r:
            hist = await r.json()
        images = []
        for node_out in hist[pid]["outputs"].values():
            images.extend(node_out.get("images", []))
        out = []
        for im in images:
            async with self.s.get(self.url + "/view", params={
                    "filename": im["filename"], "subfolder": im["subfolder"],
                    "type": im["type"]}) as r:
                data = await r.read()
                if r.status != 200:
                    raise RuntimeError("direct /view %s" % r.status)
            out.append(base64.b64encode(data).decode("ascii"))
        t1 = time.perf_counter()
        return t1 - t0, out, t1 - t_exec


async def sidecar_call(session, url, graph, rid):
    """One POST /prompt to the sidecar. Returns (elapsed_s, status, raw body)."""
    t0 = time.perf_counter()
    async with session.post(url + "/prompt", json={"prompt": graph, "id": rid}) as r:
        data = await r.read()
        status = r.status
    return time.perf_counter() - t0, status, data


def check_answer(data, rid, expect_size=None, expect_rgb=None):
    """The answer is 200 JSON for this id with one PNG of the expected size."""
    j = json.loads(data)
    if j.get("id") != rid:
        raise RuntimeError("answer id %r != %r" % (j.get("id"), rid))
    if len(j.get("images", [])) != 1:
        raise RuntimeError("answer %s has %d images" % (rid, len(j.get("images", []))))
    png = base64.b64decode(j["images"][0], validate=True)
    im = Image.open(io.BytesIO(png))
    if im.format != "PNG":
        raise RuntimeError("answer %s: not a PNG" % rid)
    if expect_size is not None and im.size != expect_size:
        raise RuntimeError("answer %s: size %s != %s" % (rid, im.size, expect_size))
    if expect_rgb is not None and im.convert("RGB").getpixel((0, 0)) != expect_rgb:
        raise RuntimeError("answer %s: colour %s != %s" % (
            rid, im.convert("RGB").getpixel((0, 0)), expect_rgb))
    return j, len(png)


# ----------------------------------------------------------------- phases --

async def phase_latency(stack, args, R):
    side_url = "http://127.0.0.1:%d" % stack.port
    comfy_url = "http://127.0.0.1:%d" % stack.emu_port
    conn_a = aiohttp.TCPConnector(limit=1)
    conn_b = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=conn_a, timeout=timeout) as sa, \
            aiohttp.ClientSession(connector=conn_b, timeout=timeout) as sb:
        direct = DirectClient(sb, comfy_url)
        await direct.connect()
        side_t, dir_t, diffs, side_post, dir_post, png_sizes = [], [], [], [], [], []
        total = args.warmup + args.pairs
        seed = 1000
        gc.collect()
        for i in range(total):
            seed += 1
            g_side = ksampler_graph(seed, prefix="side")
            seed += 1
            g_dir = ksampler_graph(seed, prefix="direct")
            rid = "lat-%d" % i

            async def do_side():
                return await sidecar_call(sa, side_url, g_side, rid)

            # Alternate which side goes first, so neither always follows the
            # other's freshly warmed caches.
            if i % 2 == 0:
                ts, st, data = await do_side()
                td, b64s, dpost = await direct.run(g_dir)
            else:
                td, b64s, dpost = await direct.run(g_dir)
                ts, st, data = await do_side()
            if st != 200:
                raise RuntimeError("sidecar answered %s: %r" % (st, data[:300]))
            j, n = check_answer(data, rid, expect_size=(1024, 1024))
            if len(b64s) != 1:
                raise RuntimeError("direct client got %d images" % len(b64s))
            stack.clean_outputs()
            if i < args.warmup:
                continue
            side_t.append(ts * 1e3)
            dir_t.append(td * 1e3)
            diffs.append((ts - td) * 1e3)
            side_post.append(j["stats"]["postprocess_time"])
            dir_post.append(dpost * 1e3)
            png_sizes.append(n)
            if (i - args.warmup + 1) % 50 == 0:
                log("latency: %d/%d pairs" % (i - args.warmup + 1, args.pairs))
        await direct.ws.close()
        await direct.ws_session.close()
    R["lat"] = {
        "n": len(side_t),
        "side": {p: pct(side_t, p) for p in (50, 90, 99)},
        "direct": {p: pct(dir_t, p) for p in (50, 90, 99)},
        "paired": {p: pct(diffs, p) for p in (50, 90, 99)},
        "added": {p: pct(side_t, p) - pct(dir_t, p) for p in (50, 90, 99)},
        "side_post": {p: pct(side_post, p) for p in (50, 90, 99)},
        "dir_post": {p: pct(dir_post, p) for p in (50, 90, 99)},
        "png_mean": statistics.mean(png_sizes),
        "png_min": min(png_sizes), "png_max": max(png_sizes),
    }
    # Python's own base64 (the direct client's), same size, for reference.
    buf = os.urandom(int(R["lat"]["png_mean"]))
    best = 1e9
    for _ in range(50):
        t0 = time.perf_counter()
        base64.b64encode(buf)
        best = min(best, time.perf_counter() - t0)
    R["py_b64_ms"] = best * 1e3


async def phase_cpu(stack, args, R):
    """CPU seconds of the sidecar per 1024x1024 request, K sequential requests."""
    url = "http://127.0.0.1:%d" % stack.port
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        # one request outside the window so the connection is open
        await sidecar_call(s, url, ksampler_graph(5_000_000), "cpu-warm")
        stack.clean_outputs()
        tk0, ns0 = cpu_ticks(stack.side.pid), cpu_ns(stack.side.pid)
        t0 = time.perf_counter()
        for i in range(args.cpu_requests):
            _, st, data = await sidecar_call(s, url, ksampler_graph(5_000_001 + i), "cpu-%d" % i)
            if st != 200:
                raise RuntimeError("cpu phase: %s" % st)
        wall = time.perf_counter() - t0
        tk1, ns1 = cpu_ticks(stack.side.pid), cpu_ns(stack.side.pid)
        stack.clean_outputs()
    R["cpu"] = {
        "k": args.cpu_requests,
        "ticks_ms": (tk1 - tk0) / CLK_TCK * 1e3 / args.cpu_requests,
        "sched_ms": (ns1 - ns0) / 1e6 / args.cpu_requests,
        "wall_ms": wall * 1e3 / args.cpu_requests,
    }


async def phase_concurrent(stack, args, R, n, big, tag):
    """n requests at once; every answer checked for its own image."""
    url = "http://127.0.0.1:%d" % stack.port
    pid = stack.side.pid
    results = {"ok": 0, "failed": 0, "errors": []}
    max_in_flight = 0
    stop_probe = asyncio.Event()

    async def probe(session):
        nonlocal max_in_flight
        while not stop_probe.is_set():
            try:
                async with session.get(url + "/ready") as r:
                    j = await r.json(content_type=None)
                    max_in_flight = max(max_in_flight, j.get("jobs_in_flight", 0))
            except Exception:
                pass
            try:
                await asyncio.wait_for(stop_probe.wait(), 0.05)
            except asyncio.TimeoutError:
                pass

    async def one(session, i):
        rid = "%s-%d" % (tag, i)
        if big:
            g = ksampler_graph(7_000_000 + i + (100000 if tag == "c64" else 0))
            size, rgb = (1024, 1024), None
        else:
            w = 64 + 8 * (i % 16)
            color = (i * 2654435761) & 0xFFFFFF
            g = empty_image_graph(w, 64, color)
            size, rgb = (w, 64), ((color >> 16) & 255, (color >> 8) & 255, color & 255)
        try:
            _, st, data = await sidecar_call(session, url, g, rid)
            if st != 200:
                raise RuntimeError("status %s: %r" % (st, data[:200]))
            check_answer(data, rid, expect_size=size, expect_rgb=rgb)
            results["ok"] += 1
        except Exception as e:  # counted, reported
            results["failed"] += 1
            if len(results["errors"]) < 5:
                results["errors"].append("%s: %r" % (rid, e))

    idle_before = rss_kb(pid)
    reset_hwm(pid)
    timeout = aiohttp.ClientTimeout(total=args.concurrent_timeout)
    t0 = time.perf_counter()
    with RssSampler(pid) as sampler:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=timeout) as s, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as ps:
            ptask = asyncio.create_task(probe(ps))
            await asyncio.gather(*(one(s, i) for i in range(n)))
            stop_probe.set()
            await ptask
    wall = time.perf_counter() - t0
    hwm = proc_status(pid)["VmHWM"]
    stack.clean_outputs()
    R[tag] = {
        "n": n, "ok": results["ok"], "failed": results["failed"],
        "errors": results["errors"], "wall_s": wall,
        "peak_rss_kb": max(hwm, sampler.max_kb), "hwm_kb": hwm,
        "sampled_max_kb": sampler.max_kb, "samples": sampler.samples,
        "rss_before_kb": idle_before, "rss_after_kb": rss_kb(pid),
        "max_in_flight": max_in_flight,
    }
    log("%s: %d ok, %d failed in %.1fs, peak RSS %.1f MB, max in flight %d" % (
        tag, results["ok"], results["failed"], wall, R[tag]["peak_rss_kb"] / 1024,
        max_in_flight))
    for e in results["errors"]:
        log("  %s" % e)


def phase_wrk(stack, args, R):
    pid = stack.side.pid
    for path in ("/health", "/ready"):
        tk0 = cpu_ticks(pid)
        t0 = time.perf_counter()
        p = subprocess.run(
            ["wrk", "-t1", "-c50", "-d%ds" % args.wrk_seconds, "--timeout", "2s",
             "http://127.0.0.1:%d%s" % (stack.port, path)],
            capture_output=True, text=True, timeout=args.wrk_seconds + 30)
        wall = time.perf_counter() - t0
        cpu = (cpu_ticks(pid) - tk0) / CLK_TCK
        m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", p.stdout)
        errs = re.search(r"Socket errors:(.*)", p.stdout)
        lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", p.stdout)
        R["wrk" + path] = {
            "rps": float(m.group(1)) if m else float("nan"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errs.group(1).strip() if errs else "",
            "sidecar_cpu_util": cpu / wall,
            "latency_avg": lat.group(1) if lat else "?",
            "raw": p.stdout,
        }
        log("wrk %s: %s req/s (sidecar CPU %.0f%% of one core)" % (
            path, R["wrk" + path]["rps"], 100 * cpu / wall))


def phase_startup(stack, args, R):
    """exec -> first TCP connect, and exec -> first /health answer, with no
    ComfyUI on the other side (attached mode listens before ComfyUI answers)."""
    dead_port = free_port()
    t_conn, t_health = [], []
    for i in range(args.startup_runs):
        port = free_port()
        env = stack.sidecar_env(port, dead_port, STARTUP_CHECK_MAX_TRIES=100)
        t0 = time.perf_counter()
        p = subprocess.Popen([stack.sidecar_bin], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                             cwd=stack.dir)
        deadline = t0 + 5
        tc = th = None
        try:
            while tc is None:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=1)
                    tc = time.perf_counter()
                except OSError:
                    if time.perf_counter() > deadline or p.poll() is not None:
                        raise RuntimeError("sidecar did not listen within 5 s")
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            th = time.perf_counter()
            s.close()
            if not head.startswith(b"HTTP/1.1 "):
                raise RuntimeError("bad /health answer %r" % head)
        finally:
            stop_process(p)
        t_conn.append((tc - t0) * 1e3)
        t_health.append((th - t0) * 1e3)
    # The floor: fork+exec+exit of /bin/true from this same Python.
    floor = []
    for _ in range(args.startup_runs):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"])
        floor.append((time.perf_counter() - t0) * 1e3)
    R["startup"] = {
        "n": args.startup_runs,
        "listen_ms": statistics.median(t_conn), "listen_max_ms": max(t_conn),
        "health_ms": statistics.median(t_health), "health_max_ms": max(t_health),
        "spawn_floor_ms": statistics.median(floor),
    }
    log("startup: listening after %.1f ms (median of %d)" % (R["startup"]["listen_ms"], len(t_conn)))


def phase_idle_notrim(stack, args, R):
    """The same idle reading from a second sidecar with IDLE_TRIM_S=0 (no
    trim at ready or later), on the same emulator: what the trim changes."""
    port = free_port()
    env = stack.sidecar_env(port, stack.emu_port, IDLE_TRIM_S=0)
    p = subprocess.Popen([stack.sidecar_bin], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=stack.dir)
    try:
        def ready():
            if p.poll() is not None:
                raise RuntimeError("the IDLE_TRIM_S=0 sidecar exited %s" % p.returncode)
            return ready_200(port)
        wait_for(ready, 30, "the IDLE_TRIM_S=0 sidecar's /ready", interval=0.01)
        R["rss_idle_notrim"] = rss_detail(p.pid)
    finally:
        stop_process(p)
    log("idle RSS without the trim %.1f MB" % (R["rss_idle_notrim"]["rss_kb"] / 1024))


async def phase_after_trim(stack, args, R, cycles=3):
    """What a trim costs the next request: one 1024² request right after an
    idle trim, then one more at once (pages mapped again), per cycle."""
    url = "http://127.0.0.1:%d" % stack.port
    pid = stack.side.pid
    rows = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        for c in range(cycles):
            if c > 0:  # the previous cycle's requests end an idle period
                wait_trim(stack, metric(stack.port, "comfy_sidecar_memory_trims_total"))
            row = []
            for k in range(2):
                f0 = minflt(pid)
                dt, st, _ = await sidecar_call(s, url, ksampler_graph(7_000_000 + 2 * c + k),
                                               "trim-%d-%d" % (c, k))
                if st != 200:
                    raise RuntimeError("after-trim phase: %s" % st)
                row.append((dt * 1e3, minflt(pid) - f0))
            rows.append(row)
            stack.clean_outputs()
    R["after_trim"] = {
        "cycles": cycles,
        "first_ms": statistics.median(r[0][0] for r in rows),
        "first_faults": statistics.median(r[0][1] for r in rows),
        "next_ms": statistics.median(r[1][0] for r in rows),
        "next_faults": statistics.median(r[1][1] for r in rows),
    }
    log("after a trim: first request %.1f ms, %d minor faults; the next %.1f ms, %d" % (
        R["after_trim"]["first_ms"], R["after_trim"]["first_faults"],
        R["after_trim"]["next_ms"], R["after_trim"]["next_faults"]))


def phase_b64(args, R):
    if not args.b64_bin:
        return
    p = subprocess.run([args.b64_bin, "1572864", "1.0"], capture_output=True, text=True,
                       timeout=60, check=True)
    R["b64"] = {k: float(v) for k, v in (l.split() for l in p.stdout.split("\n") if l)}


# ----------------------------------------------------------------- report --

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return [
        ("CPU", "%s, %d cores online" % (model, os.cpu_count())),
        ("RAM", "%.1f GiB" % (mem_kb / 1024 / 1024)),
        ("kernel", platform.release()),
        ("Debian", sh("cat /etc/debian_version")),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("sidecar", "%s (commit %s)" % (sh("%s --version 2>/dev/null | head -n1" % ARGS.sidecar)
                                        or "comfy-sidecar", sh("git -C %s rev-parse --short HEAD" % REPO))),
        ("libraries", "libevent %s, libcurl %s, libwebsockets %s, jansson %s, libb64 %s" % (
            sh("pkg-config --modversion libevent"), sh("pkg-config --modversion libcurl"),
            sh("pkg-config --modversion libwebsockets"), sh("pkg-config --modversion jansson"),
            sh("dpkg-query -W -f='${Version}' libb64-0d 2>/dev/null || echo ?"))),
        ("compiler", sh("cc --version | head -n1")),
        ("clients", "Python %s, aiohttp %s, Pillow %s, %s" % (
            platform.python_version(), aiohttp.__version__, Image.__version__ if hasattr(Image, "__version__") else sh("%s -c 'import PIL;print(PIL.__version__)'" % PYTHON),
            sh("wrk --version 2>&1 | head -n1").split(" [")[0])),
    ]


def fmt_ms(v):
    return "%.2f ms" % v


def verdict(ok):
    return "met" if ok else "**not met**"


def build_table(R):
    rows = []  # metric, ours, target, met, comfyui-api, ratio

    def ratio(ours, lo, hi):
        if ours <= 0:
            return "< 0 (faster)"
        if lo == hi:
            return "%.2g×" % (ours / lo)
        return "%.2g–%.2g×" % (ours / hi, ours / lo)

    L = R.get("lat")
    if L:
        a = L["added"]
        rows.append(("Added latency p50 (1024², %.2f MB PNG)" % (L["png_mean"] / 1e6),
                     fmt_ms(a[50]), "≤ 1 ms", verdict(a[50] <= 1), "4–6 ms", ratio(a[50], 4, 6)))
        rows.append(("Added latency p90", fmt_ms(a[90]), "—", "—", "7–17 ms", ratio(a[90], 7, 17)))
        noise99 = L["direct"][99] - L["direct"][50]
        v99 = verdict(a[99] <= 3)
        if abs(a[99]) <= noise99:
            v99 += " (within noise: the direct client's own p99−p50 is %.1f ms)" % noise99
        rows.append(("Added latency p99", fmt_ms(a[99]), "≤ 3 ms", v99, "—", "—"))
        rows.append(("Sidecar round trip p50 / p90 / p99",
                     "%.1f / %.1f / %.1f ms" % (L["side"][50], L["side"][90], L["side"][99]),
                     "—", "—", "—", "—"))
        rows.append(("Direct client round trip p50 / p90 / p99",
                     "%.1f / %.1f / %.1f ms" % (L["direct"][50], L["direct"][90], L["direct"][99]),
                     "—", "—", "—", "—"))
        rows.append(("Paired difference p50 / p90 / p99",
                     "%.2f / %.2f / %.2f ms" % (L["paired"][50], L["paired"][90], L["paired"][99]),
                     "—", "—", "—", "—"))
    C = R.get("cpu")
    if C:
        rows.append(("CPU per 1024² request", fmt_ms(C["ticks_ms"]), "≤ 3 ms",
                     verdict(C["ticks_ms"] <= 3), "24 ms", ratio(C["ticks_ms"], 24, 24)))
    if "rss_idle" in R:
        v = R["rss_idle"]["rss_kb"] / 1024
        rows.append(("RSS idle (ready, before any job)", "%.1f MB" % v, "≤ 8 MB",
                     verdict(v <= 8), "150–210 MB", ratio(v, 150, 210)))
    if "rss_idle_after" in R:
        v = R["rss_idle_after"]["rss_kb"] / 1024
        rows.append(("RSS idle (after the latency runs, once idle %d s)" % round(
                         R.get("idle_trim_wait_s", 0)), "%.1f MB" % v, "≤ 8 MB",
                     verdict(v <= 8), "150–210 MB", ratio(v, 150, 210)))
    N = R.get("rss_idle_notrim")
    if N:
        rows.append(("RSS idle with `IDLE_TRIM_S=0` (no trim; ready, before any job)",
                     "%.1f MB (anon %.1f, file %.1f)" % (
                         N["rss_kb"] / 1024, N["anon_kb"] / 1024, N["file_kb"] / 1024),
                     "—", "—", "—", "—"))
    T = R.get("after_trim")
    if T:
        rows.append(("First 1024² request after an idle trim / the next one",
                     "%.1f / %.1f ms; %d / %d minor faults" % (
                         T["first_ms"], T["next_ms"], T["first_faults"], T["next_faults"]),
                     "—", "—", "—", "—"))
    c = R.get("c64")
    if c:
        v = c["peak_rss_kb"] / 1024
        rows.append(("Peak RSS, 64 concurrent 1024² jobs", "%.1f MB (%d/%d ok)" % (v, c["ok"], c["n"]),
                     "≤ 64 MB", verdict(v <= 64 and c["failed"] == 0), "—", "—"))
    c = R.get("c1000")
    if c:
        v = c["peak_rss_kb"] / 1024
        rows.append(("%d clients at once (64² images)" % c["n"],
                     "%d answered, %d lost/failed, %.1f s" % (c["ok"], c["failed"], c["wall_s"]),
                     "all answered", verdict(c["failed"] == 0 and c["ok"] == c["n"]), "—", "—"))
        rows.append(("Peak RSS, %d clients" % c["n"], "%.1f MB" % v, "—", "—", "—", "—"))
    S = R.get("startup")
    if S:
        rows.append(("Start to listening (median of %d)" % S["n"], fmt_ms(S["listen_ms"]),
                     "≤ 50 ms", verdict(S["listen_ms"] <= 50), "3.6 s to first /health",
                     ratio(S["health_ms"] / 1000, 3.6, 3.6) + " (first /health)"))
    for path in ("/health", "/ready"):
        w = R.get("wrk" + path)
        if w:
            rows.append(("`%s` requests/s (wrk -t1 -c50, one core)" % path, "%.0f" % w["rps"],
                         "≥ 20,000" if path == "/health" else "—",
                         verdict(w["rps"] >= 20000) if path == "/health" else "—", "—", "—"))
    B = R.get("b64")
    if B:
        rows.append(("Base64 encode (src/b64.c: OpenSSL EVP_EncodeBlock)",
                     "%.0f MB/s, %.2f ms per 1.5 MB" % (B["sidecar_b64_encode_mb_s"],
                                                      B["sidecar_b64_encode_ms"]),
                     "—", "—", "—", "—"))
    return rows


def render(rows):
    head = ("metric", "ours", "target", "target met", "comfyui-api (issue)", "ours ÷ comfyui-api")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def write_markdown(out_path, table, R, args):
    L, C, S, B = R.get("lat", {}), R.get("cpu", {}), R.get("startup", {}), R.get("b64", {})
    md = ["# Benchmarks", "",
          "Written by `make bench` (`bash bench/run.sh` → `bench/bench.py`). Every figure below "
          "comes from one run against the ComfyUI emulator (`test/emulator/comfyui_emulator.py "
          "--image-mode noise --step-time 0`) over loopback, with the sidecar attached to it "
          "(`CMD` empty, `LOG_LEVEL=warn`, `OUTPUT_DIR` = the emulator's output folder).", "",
          "## Results", "", table, "",
          "\"ours ÷ comfyui-api\" divides our figure by the comfyui-api figure quoted in issue 6 "
          "(measured elsewhere, not in this run); below 1 is better, except for requests/s.", ""]
    if L:
        md += ["### Added latency in detail", "",
               "| | p50 | p90 | p99 |", "|---|---|---|---|"]
        for name, key in (("sidecar round trip", "side"), ("direct client round trip", "direct"),
                          ("added = p(sidecar) − p(direct)", "added"),
                          ("paired difference per iteration", "paired"),
                          ("sidecar `stats.postprocess_time` (its own clock, exec end → reply built)", "side_post"),
                          ("direct client, final `executing` → base64 done", "dir_post")):
            d = L[key]
            md.append("| %s | %.2f ms | %.2f ms | %.2f ms |" % (name, d[50], d[90], d[99]))
        spread = (L["direct"][90] - L["direct"][50], L["direct"][99] - L["direct"][50])
        md += ["", "Noise: the direct client's own spread is p90 − p50 = %.2f ms and p99 − p50 = "
               "%.2f ms (the emulator's PNG encoding and Python); added-latency figures of that "
               "order or smaller, negative ones included, are within the noise of the method, "
               "mostly at p99, which rests on the %d largest of %d samples." % (
                   spread[0], spread[1], max(1, round(L["n"] / 100)), L["n"])]
        md += ["", "%d pairs after %d discarded warm-up pairs; PNG size %.2f MB on average "
               "(%.2f–%.2f MB). Python's `base64.b64encode` of the same size: %.2f ms." % (
                   L["n"], args.warmup, L["png_mean"] / 1e6, L["png_min"] / 1e6,
                   L["png_max"] / 1e6, R.get("py_b64_ms", float("nan"))), ""]
    if C:
        md += ["CPU per request: %d sequential 1024² requests; utime+stime from /proc/PID/stat "
               "gives %.2f ms per request, the per-thread schedstat sum %.2f ms; the client "
               "saw %.1f ms wall per request." % (C["k"], C["ticks_ms"], C["sched_ms"], C["wall_ms"]), ""]
    I, A, N, T = R.get("rss_idle"), R.get("rss_idle_after"), R.get("rss_idle_notrim"), R.get("after_trim")
    if I and A and N:
        md += ["Idle memory (VmRSS = RssAnon + RssFile): ready, before any job %.1f MB = %.1f + "
               "%.1f; after the latency runs, once idle %.1f MB = %.1f + %.1f; the same sidecar "
               "with `IDLE_TRIM_S=0`, ready %.1f MB = %.1f + %.1f. RssAnon is the sidecar's own "
               "memory and the libraries' relocated and writable pages; RssFile is library code "
               "and read-only data, which the trim unmaps (they stay in the page cache)." % (
                   I["rss_kb"] / 1024, I["anon_kb"] / 1024, I["file_kb"] / 1024,
                   A["rss_kb"] / 1024, A["anon_kb"] / 1024, A["file_kb"] / 1024,
                   N["rss_kb"] / 1024, N["anon_kb"] / 1024, N["file_kb"] / 1024)
               + (" After a trim, the next 1024² request took %.1f ms with %d minor faults "
                  "(mapping pages back), the one after it %.1f ms with %d (medians of %d)." % (
                      T["first_ms"], T["first_faults"], T["next_ms"], T["next_faults"],
                      T["cycles"]) if T else ""), ""]
    for tag in ("c64", "c1000"):
        c = R.get(tag)
        if c:
            md += ["%s: %d requests at once, %d ok, %d failed, %.1f s; sidecar RSS %.1f MB before, "
                   "peak %.1f MB (VmHWM %.1f MB, sampled max %.1f MB over %d samples), %.1f MB "
                   "after; at most %d jobs in flight seen on /ready.%s" % (
                       "64 concurrent 1024² jobs" if tag == "c64" else "1,000 clients",
                       c["n"], c["ok"], c["failed"], c["wall_s"], c["rss_before_kb"] / 1024,
                       c["peak_rss_kb"] / 1024, c["hwm_kb"] / 1024, c["sampled_max_kb"] / 1024,
                       c["samples"], c["rss_after_kb"] / 1024, c["max_in_flight"],
                       (" Errors: " + "; ".join(c["errors"])) if c["errors"] else ""), ""]
    if S:
        md += ["Start-up: exec → first accepted TCP connection %.1f ms median (max %.1f), "
               "exec → first `/health` answer %.1f ms median (max %.1f), over %d starts; "
               "spawning `/bin/true` from the same Python takes %.1f ms (included in both)." % (
                   S["listen_ms"], S["listen_max_ms"], S["health_ms"], S["health_max_ms"],
                   S["n"], S["spawn_floor_ms"]), ""]
    for path in ("/health", "/ready"):
        w = R.get("wrk" + path)
        if w:
            md += ["wrk `%s`: %.0f requests/s, mean latency %s, non-2xx %d%s; the sidecar "
                   "used %.0f%% of one core meanwhile." % (
                       path, w["rps"], w["latency_avg"], w["non2xx"],
                       (", socket errors " + w["errors"]) if w["errors"] else "",
                       100 * w["sidecar_cpu_util"]), ""]
    if B:
        md += ["Base64, 1.5 MB of random bytes, best of many rounds: the sidecar's `b64_encode` "
               "(OpenSSL's EVP_EncodeBlock) %.0f MB/s = %.2f ms per image; for comparison only, "
               "a plain table encoder %.0f MB/s = %.2f ms; memcpy of the same output volume "
               "(cache-hot ceiling) %.2f ms." % (
                   B["sidecar_b64_encode_mb_s"], B["sidecar_b64_encode_ms"],
                   B["reference_table_encode_mb_s"], B["reference_table_encode_ms"],
                   B["memcpy_same_output_ms"]), ""]
    md += ["## Machine", ""] + ["- %s: %s" % tuple(kv) for kv in R.get("machine") or machine()] + [""]
    md += ["## Method", "",
           "- **Added latency.** %d pairs (after %d warm-up pairs), interleaved, the order "
           "alternating each pair: (a) one `POST /prompt` to the sidecar, timed from the request "
           "to its whole body read (then checked outside the timing: id, one 1024×1024 PNG); "
           "(b) a direct ComfyUI client in Python on a persistent websocket with its own "
           "clientId: `POST /prompt` with `client_id`, wait for `executing` with node null for "
           "its prompt_id, `GET /history/{id}`, `GET /view`, `base64.b64encode`. Both use one "
           "keep-alive connection. Each graph is EmptyLatentImage → KSampler (1 step, its own "
           "seed, so ComfyUI's cache never serves it) → VAEDecode → SaveImage, which the "
           "emulator turns into a ~1.5 MB noise PNG. Absolute round trips include the emulator "
           "(PNG encoding ≈ 100 ms) and Python client overhead; the added latency is "
           "p(sidecar) − p(direct) per percentile, and the per-iteration paired difference is "
           "shown too. Output files are deleted between pairs." % (args.pairs, args.warmup),
           "- **RSS idle**: VmRSS of the sidecar once `/ready` is 200 and before any job, and "
           "again after the latency runs, once idle: when `comfy_sidecar_memory_trims_total` "
           "in `/metrics` has grown, i.e. `IDLE_TRIM_S` (5 s, the default) after the last job, "
           "when the sidecar gives back free heap and unmaps clean library pages (src/mem.c; "
           "it does the same as it becomes ready). For comparison, a second sidecar with "
           "`IDLE_TRIM_S=0` on the same emulator is read the same way once ready. The cost of "
           "a trim: %d times, one 1024² request right after an idle trim and one more at once, "
           "wall time and the sidecar's minor page faults (medians)." % (
               R.get("after_trim", {}).get("cycles", 0)),
           "- **Peak RSS**: VmHWM reset with `/proc/PID/clear_refs` before the burst, read after "
           "it, together with VmRSS sampled every 2 ms; the larger is reported.",
           "- **CPU per request**: utime+stime of all the sidecar's threads over %d sequential "
           "1024² requests, divided by their count." % args.cpu_requests,
           "- **%d clients**: one aiohttp session with no connection limit sends %d requests "
           "at once, each an EmptyImage → SaveImage graph with its own colour and width "
           "(64–184 × 64) and its own id; each answer must carry its id and a PNG of its size "
           "and colour. The sidecar and the emulator run with `ulimit -n 4096`." % (
               args.clients, args.clients),
           "- **Probes**: `wrk -t1 -c50 -d%ds` on `/health` then `/ready` while idle; the "
           "sidecar serves HTTP on one libevent thread, so this is one core." % args.wrk_seconds,
           "- **Start-up**: the sidecar started %d times with no ComfyUI on its port; time from "
           "just before spawning it to the first accepted TCP connection (busy polling), and to "
           "the first `/health` answer (500 before ComfyUI is up)." % args.startup_runs,
           "- **Base64**: `bench/b64_bench.c` built with `gcc -O2` against `src/b64.c` and "
           "Debian's OpenSSL, the path the sidecar uses to encode into the reply buffer.",
           ""]
    # What was changed because of these measurements, and what it did: kept
    # by hand in bench/changes.md, since a run cannot know its history.
    notes = os.path.join(REPO, "bench", "changes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            md += ["", f.read().rstrip(), ""]
    with open(out_path, "w") as f:
        f.write("\n".join(md))


# ------------------------------------------------------------------- main --

async def amain(stack, args, R):
    trims = metric(stack.port, "comfy_sidecar_memory_trims_total")
    await phase_latency(stack, args, R)
    # Idle: the sidecar gives memory back IDLE_TRIM_S (5 s) after its last job.
    R["idle_trim_wait_s"] = wait_trim(stack, trims)
    R["rss_idle_after"] = rss_detail(stack.side.pid)
    await phase_after_trim(stack, args, R)
    log("latency: added p50 %.2f p90 %.2f p99 %.2f ms" % (
        R["lat"]["added"][50], R["lat"]["added"][90], R["lat"]["added"][99]))
    await phase_cpu(stack, args, R)
    log("cpu: %.2f ms per request" % R["cpu"]["ticks_ms"])
    await phase_concurrent(stack, args, R, args.concurrent, True, "c64")
    await phase_concurrent(stack, args, R, args.clients, False, "c1000")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--sidecar", default=os.path.join(REPO, "comfy-sidecar"))
    ap.add_argument("--b64-bin", default=None)
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--cpu-requests", type=int, default=100)
    ap.add_argument("--concurrent", type=int, default=64)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--concurrent-timeout", type=float, default=180)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--startup-runs", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    ap.add_argument("--json", default=None, help="also dump raw results here")
    ap.add_argument("--from-json", default=None,
                    help="measure nothing: render the table and BENCHMARKS.md from a --json dump")
    args = ARGS = ap.parse_args()
    if args.pairs < 1:
        ap.error("--pairs must be >= 1")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(4096, args.clients * 2 + 256)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
        except (ValueError, OSError):
            pass
    if args.from_json:
        def keys(o):
            if isinstance(o, dict):
                return {(int(k) if k.isdigit() else k): keys(v) for k, v in o.items()}
            return o
        with open(args.from_json) as f:
            R = keys(json.load(f))
        for k in ("pairs", "warmup", "cpu_requests", "clients", "wrk_seconds", "startup_runs"):
            if k in R.get("args", {}):
                setattr(args, k, R["args"][k])
        report(R, args)
        return 0
    R = {"args": {k: getattr(args, k) for k in (
        "pairs", "warmup", "cpu_requests", "clients", "wrk_seconds", "startup_runs")}}
    R["machine"] = machine()
    stack = Stack(args.sidecar, args.keep)
    try:
        phase_b64(args, R)
        stack.start_emulator()
        stack.start_sidecar()
        # Idle after start: ready, websocket up, nothing asked yet.
        R["rss_idle"] = rss_detail(stack.side.pid)
        log("idle RSS %.1f MB" % (R["rss_idle"]["rss_kb"] / 1024))
        phase_idle_notrim(stack, args, R)
        phase_startup(stack, args, R)
        phase_wrk(stack, args, R)
        asyncio.run(amain(stack, args, R))
        if stack.side.poll() is not None:
            raise RuntimeError("the sidecar died during the run")
    finally:
        stack.stop()
    report(R, args)
    return 0


def report(R, args):
    table = render(build_table(R))
    print()
    print(table)
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(R, f, indent=1, default=str)
    if not args.no_write:
        write_markdown(args.out, table, R, args)
        log("wrote %s" % args.out)
    failed = [r for r in build_table(R) if r[3].startswith("**not met**")]
    log("%d target(s) not met" % len(failed))


if __name__ == "__main__":
    sys.exit(main())
