#!/usr/bin/env python3
"""Regenerate the seed corpora of test/fuzz/corpus/ (run from anywhere).

    test/fuzz/seed-corpus.py [TRANSCRIPTS_DIR]

TRANSCRIPTS_DIR holds ComfyUI's recorded *.jsonl transcripts (default
/work/shared/comfyui-transcripts); without it the comfy_msg seeds taken from
them are kept as they are. Files are named after their content's hash, so a
rerun only adds what is new. The committed corpus is small on purpose:
libFuzzer grows its own copy under build/fuzz/corpus/ (run.sh fuzz).
"""
import copy
import glob
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))
import graphs  # noqa: E402


def put(harness, name, data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    elif isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:10]
    with open(os.path.join(d, f"{name}-{h}"), "wb") as f:
        f.write(data)


# ---- request: POST /prompt and POST /workflow bodies -------------------------
def request():
    ks = graphs.ksampler()
    put("request", "ok-ksampler", {"prompt": ks})
    put("request", "ok-refiner-id", {"id": "job-1.a_b", "prompt": graphs.sdxl_refiner()})
    put("request", "ok-empty-image-webhooks",
        {"prompt": graphs.empty_image(prefix="sub/dir/img"), "id": "x",
         "webhook": "http://example.com/hook", "webhook_v2": "https://h.example/v2?a=1"})
    put("request", "ok-multi", {"prompt": graphs.multi_save(
        [("10", 8, 8, "a"), ("2", 8, 8, "b/"), ("x", 8, 8, "")])})
    put("request", "ok-preview", {"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}})
    put("request", "ok-no-inputs", {"prompt": {
        "1": {"class_type": "Foo"},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "p"}}}})
    put("request", "ok-workflow", {"input": {"prompt": "a cat", "steps": 4}, "id": "wf-1"})
    put("request", "ok-workflow-empty", {})
    put("request", "ok-convert-jpeg", {"prompt": ks, "convert_output": {
        "format": "jpeg", "options": {"quality": 90, "progressive": True,
                                      "chromaSubsampling": "4:4:4", "quantisationTable": 3}}})
    put("request", "ok-convert-webp", {"prompt": ks, "convert_output": {
        "format": "webp", "options": {"lossless": False, "effort": 6, "preset": "photo",
                                      "alphaQuality": 50}}})
    put("request", "ok-convert-png", {"input": {}, "convert_output": {
        "format": "png", "options": {"compressionLevel": 9}}})
    put("request", "bad-convert", {"prompt": ks, "convert_output": {
        "format": "png", "options": {"quality": 101.5}}})
    put("request", "bad-prefix-dotdot", {"prompt": graphs.empty_image(prefix="../x")})
    put("request", "bad-prefix-abs", {"prompt": graphs.empty_image(prefix="/etc/x")})
    put("request", "bad-id", {"id": "a..b", "prompt": ks})
    put("request", "bad-id-long", {"id": "a" * 129, "prompt": ks})
    put("request", "bad-webhook", {"webhook": "ftp://x", "prompt": ks})
    put("request", "bad-unknown", {"prompt": ks, "s3": {"bucket": "b"}})
    put("request", "bad-unknown2", {"prompt": ks, "s\u00e9\u00e9": 1})
    put("request", "bad-no-output", {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}})
    put("request", "bad-class", {"prompt": {"1": {"class_type": "", "inputs": {}}}})
    put("request", "bad-inputs", {"prompt": {"1": {"class_type": "A", "inputs": [1]}}})
    put("request", "bad-node", {"prompt": {"\u00e9" * 80: 3}})
    put("request", "bad-prompt-type", {"prompt": [1, 2]})
    put("request", "bad-input-type", {"input": [1]})
    put("request", "bad-json", b'{"prompt": {"1": ')
    put("request", "bad-json-dup", b'{"prompt": {}, "prompt": {}}')
    put("request", "bad-not-object", b'[1,2,3]')


# ---- template: input objects and template files -----------------------------
def template():
    for f in sorted(glob.glob(os.path.join(ROOT, "test/golden/sdxl/*/*.input.json"))):
        name = os.path.basename(os.path.dirname(f)) + "-" + os.path.basename(f)[:-11]
        with open(f, "rb") as fh:
            put("template", "input-" + name, fh.read())
    put("template", "input-bad-type", {"width": "1024", "steps": 2.5})
    put("template", "input-unknown", {"nope": 1})
    put("template", "input-not-object", [1])
    for f in sorted(glob.glob(os.path.join(ROOT, "comfy-workflows/sdxl/*.json"))):
        with open(f, "rb") as fh:
            put("template", "tpl-" + os.path.basename(f)[:-5], fh.read())
    g = graphs.ksampler()
    small = {
        "summary": "s", "description": "d",
        "parameters": {
            "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20,
                      "targets": ["3.steps"]},
            "seed": {"type": "integer", "minimum": 5, "maximum": 9, "default": "random",
                     "targets": ["3.seed"]},
            "cfg": {"type": "number", "default_from": "steps", "targets": ["3.cfg"]},
            "sampler": {"type": "enum", "enum": ["euler", "ddim"], "default": "euler",
                        "targets": ["3.sampler_name"]},
            "sched": {"type": "enum", "enum_from": "KSampler.scheduler", "default": "normal",
                      "targets": ["3.scheduler"]},
            "text": {"type": "string", "required": True, "example": "hi",
                     "targets": ["6.text", "7.text"]},
            "prefix": {"type": "string", "default": "out", "targets": ["9.filename_prefix"]},
        },
        "rules": [{"rule": "steps >= 2", "message": "at least 2"},
                  {"rule": "cfg != 7"}],
        "graph": g,
        "$fuzz_input": {"text": "a cat", "steps": 8, "seed": 6},
    }
    put("template", "tpl-small", small)
    t = copy.deepcopy(small)
    t["parameters"]["flag"] = {"type": "boolean", "default": False,
                               "targets": ["5.batch_size"]}
    put("template", "tpl-bad-target-type", t)
    t = copy.deepcopy(small)
    t["rules"] = [{"rule": "steps < nope"}]
    put("template", "tpl-bad-rule", t)
    t = copy.deepcopy(small)
    t["parameters"]["steps"]["targets"] = ["3.model"]
    put("template", "tpl-bad-link", t)
    put("template", "tpl-plain-graph", g)


# ---- comfy_msg: websocket text frames, binary frames, error bodies ----------
def comfy_msg(transcripts):
    seen = set()
    for f in sorted(glob.glob(os.path.join(transcripts, "*.jsonl"))):
        base = os.path.basename(f)[:-6]
        with open(f) as fh:
            for line in fh:
                ev = json.loads(line)
                if ev.get("kind") == "text" and ev.get("dir") == "recv":
                    msg = ev["msg"]
                    # One seed per message shape (type and data keys) is plenty.
                    data = msg.get("data")
                    key = (msg.get("type"),
                           tuple(sorted(data)) if isinstance(data, dict) else None)
                    if key in seen:
                        continue
                    seen.add(key)
                    put("comfy_msg", f"text-{base}-{msg.get('type')}", msg)
                elif ev.get("dir") == "http" and isinstance(ev.get("msg"), dict) \
                        and ev["msg"].get("status") == 400:
                    put("comfy_msg", f"http400-{base}", ev["msg"]["body"])
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    put("comfy_msg", "bin-type1-jpeg", struct.pack(">II", 1, 1) + jpeg)
    put("comfy_msg", "bin-type1-png", struct.pack(">II", 1, 2) + png)
    meta = json.dumps({"node_id": "3", "prompt_id": "212c8364-6b7a-4a1e-8da5-d936b99414ac",
                       "display_node_id": "3", "parent_node_id": None,
                       "real_node_id": "3", "image_type": "image/jpeg"}).encode()
    put("comfy_msg", "bin-type4-jpeg", struct.pack(">II", 4, len(meta)) + meta + jpeg)
    meta2 = json.dumps({"node_id": "9", "prompt_id": "p", "image_type": "image/png"}).encode()
    put("comfy_msg", "bin-type4-png", struct.pack(">II", 4, len(meta2)) + meta2 + png)
    put("comfy_msg", "bin-type4-short", struct.pack(">II", 4, 999) + meta2)
    put("comfy_msg", "bin-type3-text", struct.pack(">II", 3, 1) + b"7" + b"step 3/20")
    put("comfy_msg", "http400-invalid-prompt",
        {"error": {"type": "invalid_prompt", "message": "Cannot execute because a node is "
                   "missing the class_type property.", "details": "Node ID '#5'",
                   "extra_info": {}}, "node_errors": {}})
    put("comfy_msg", "http400-string-error", {"error": "no prompt", "node_errors": []})
    put("comfy_msg", "http400-html", b"<html><body>502 Bad Gateway</body></html>")
    put("comfy_msg", "text-oom", {"type": "execution_error", "data": {
        "prompt_id": "p", "node_id": "8", "node_type": "KSamplerAdvanced",
        "exception_type": "torch.OutOfMemoryError",
        "exception_message": "CUDA out of memory. Tried to allocate 20.00 MiB\nTip: ...",
        "traceback": [], "timestamp": 1}})
    put("comfy_msg", "text-blocked", {"type": "execution_error", "data": {
        "prompt_id": "p", "node_id": "4", "node_type": "X",
        "exception_type": "ExecutionBlocked", "exception_message": "Execution Blocked: x",
        "traceback": [], "current_inputs": [], "current_outputs": []}})
    put("comfy_msg", "text-reconnect-executing", {"type": "executing", "data": {"node": None}})


# ---- b64 -------------------------------------------------------------------------
def b64():
    import base64
    for n in (0, 1, 2, 3, 4, 5, 51, 52, 53, 54, 200):
        raw = bytes((i * 37 + 11) & 0xFF for i in range(n))
        put("b64", f"raw-{n}", raw)
        put("b64", f"text-{n}", base64.b64encode(raw))
    put("b64", "text-unpadded", b"QUJDRA")
    put("b64", "text-noncanonical", b"QR==")
    put("b64", "text-bad-pad", b"QQ=")
    put("b64", "text-bad-char", b"QUJD\nRA==")
    put("b64", "text-webhook-key", base64.b64encode(b"k" * 32))


if __name__ == "__main__":
    tr = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/comfyui-transcripts"
    request()
    template()
    if os.path.isdir(tr):
        comfy_msg(tr)
    else:
        print(f"seed-corpus: {tr} not found; comfy_msg transcript seeds left as they are")
    b64()
