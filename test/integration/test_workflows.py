"""Workflow templates end to end: POST /workflow/<path> against the emulator,
the OpenAPI document (/docs/json, /openapi.json), the /docs page, enum lists
from ComfyUI's /object_info, and SIGHUP reload.

- Golden graphs: every case under test/golden/sdxl/<template>/ (<case>.input.json,
  with the golden seed added when the case leaves it random) is POSTed to the
  running sidecar, and the graph ComfyUI (the emulator) received must be
  <case>.graph.json exactly, except for the one documented rewrite: every
  filename_prefix becomes <id>_<prefix>. The answer's `input` must be
  <case>.filled.json. The unit tests (test/unit/test_template.c) render the
  same cases in-process.
- Every invalid input gets the documented 400 and never reaches ComfyUI.
- The OpenAPI document is checked by @seriousme/openapi-schema-validator
  (test/node/validate-openapi.js; `npm ci --prefix test/node`); node or the
  package missing is a failure, not a skip.

Run: /usr/bin/python3 test/pyrunner.py test/integration --name integration -k Workflow
"""
import base64
import glob
import io
import json
import os
import re
import shutil
import signal
import subprocess
import uuid

from PIL import Image

import harness
from harness import SidecarTestCase, decode_image

REPO = harness.REPO
WORKFLOW_DIR = os.path.join(REPO, "comfy-workflows")
WEB_DIR = os.path.join(REPO, "web")
GOLDEN = os.path.join(REPO, "test", "golden")
NODE_DIR = os.path.join(REPO, "test", "node")
VALIDATE_JS = os.path.join(NODE_DIR, "validate-openapi.js")

REFINER = "sdxl/txt2img-with-refiner"
MAX_SEED = 9007199254740991
STATIC_FILES = {"swagger-ui.css": "text/css",
                "swagger-ui-bundle.js": "text/javascript",
                "swagger-ui-standalone-preset.js": "text/javascript"}

# Golden cases that ComfyUI itself refuses (the sidecar's own checks pass them):
# the graph is still compared, and the answer must be ComfyUI's error, passed on
# as documented: (status, location, error_type or exception_type).
COMFY_REFUSES = {
    # refiner_checkpoint "" is not in CheckpointLoaderSimple's list: validation 400
    ("sdxl/txt2img-with-refiner", "minimum"):
        (400, "prompt.12.inputs.ckpt_name", "prompt_outputs_failed_validation"),
}
# Refused by the sidecar before ComfyUI sees them: an empty image would pass
# LoadImage's validation (ComfyUI checks that input/"" exists, and the folder
# does) and fail only when the node runs, so the sidecar answers the 400.
SIDECAR_REFUSES = {
    ("sdxl/img2img", "minimum"): (400, "prompt.38.inputs.image"),
}
# Checkpoints the emulator lists for the golden cases (maximum uses a custom refiner).
GOLDEN_CHECKPOINTS = "sd_xl_base_1.0.safetensors,sd_xl_refiner_1.0.safetensors,my_refiner.safetensors"


def new_id(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def template_paths(root=WORKFLOW_DIR):
    """Endpoint paths of the templates under root, as comfy-workflows/README.md defines them."""
    out = []
    for f in glob.glob(os.path.join(root, "**", "*.json"), recursive=True):
        rel = os.path.relpath(f, root)[:-5]
        parts = rel.split(os.sep)
        if parts[0] == "warmup" or any(p.startswith(".") for p in parts):
            continue
        out.append("/".join(parts))
    return sorted(out)


def golden_cases():
    """[(template path, case name)] for every test/golden/sdxl/<t>/<case>.input.json."""
    out = []
    for f in sorted(glob.glob(os.path.join(GOLDEN, "sdxl", "*", "*.input.json"))):
        tpl = "sdxl/" + os.path.basename(os.path.dirname(f))
        out.append((tpl, os.path.basename(f)[:-len(".input.json")]))
    return out


def with_id_prefix(graph, rid):
    """The graph with every filename_prefix rewritten as the sidecar documents
    (PREPEND_FILENAMES=true): <id>_<prefix>, the id in front of the file name
    part (sub/x -> sub/<id>_x). Nothing else changes."""
    g = json.loads(json.dumps(graph))
    for node in g.values():
        inputs = node.get("inputs") or {}
        if isinstance(inputs.get("filename_prefix"), str):
            head, sep, tail = inputs["filename_prefix"].rpartition("/")
            inputs["filename_prefix"] = head + sep + rid + "_" + tail
    return g


def canonical(v):
    """JSON text that tells 8 from 8.0 (assertEqual on objects does not)."""
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def png_bytes(w, h, color):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def resolve(doc, obj):
    """Follow local $refs (#/...) from obj."""
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        assert ref.startswith("#/"), ref
        obj = doc
        for part in ref[2:].split("/"):
            obj = obj[part.replace("~1", "/").replace("~0", "~")]
    return obj


def input_schema(doc, tpl):
    op = doc["paths"]["/workflow/" + tpl]["post"]
    req = resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
    return resolve(doc, req["properties"]["input"])


def node_problem():
    if not shutil.which("node"):
        return "node (Node.js) is not on PATH; the OpenAPI validator needs it"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@seriousme",
                                      "openapi-schema-validator")):
        return ("%s/node_modules/@seriousme/openapi-schema-validator is missing: run "
                "`npm ci --prefix test/node`" % NODE_DIR)
    return None


def validate_openapi(text):
    """(exit status, output) of test/node/validate-openapi.js on the document text."""
    p = subprocess.run(["node", VALIDATE_JS], input=text.encode("utf-8"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace")


class WorkflowTestCase(SidecarTestCase):
    """Helpers shared by the classes below."""

    def post_wf(self, sc, tpl, body, timeout=60):
        return sc.req("POST", "/workflow/" + tpl, body=body, timeout=timeout)

    def emu_graph(self, sc, rid):
        """The graph of the one POST /prompt the emulator received whose output
        prefixes carry this request id, and the status the emulator answered."""
        found = []
        for rec in sc.emu_prompts():
            prompt = (rec.get("body") or {}).get("prompt") or {}
            for node in prompt.values():
                p = (node.get("inputs") or {}).get("filename_prefix")
                if isinstance(p, str) and p.rpartition("/")[2].startswith(rid + "_"):
                    found.append(rec)
                    break
        self.assertEqual(len(found), 1, "the emulator received %d prompts for id %s"
                         % (len(found), rid))
        return found[0]["body"]["prompt"], found[0]["status"]


# ---------------------------------------------------------------------------

class WorkflowTests(harness.SharedSidecarMixin, WorkflowTestCase):
    """One sidecar + emulator (supervised) for the whole class, with the repository's
    templates and web/ folder."""

    @classmethod
    def make_sidecar(cls):
        sc = harness.Sidecar("workflows",
                             emu_args=["--checkpoints", GOLDEN_CHECKPOINTS],
                             env={"WORKFLOW_DIR": WORKFLOW_DIR, "WEB_DIR": WEB_DIR,
                                  "COMFY_TIMEOUT_S": "20"})
        # The input images the img2img golden cases name.
        inp = os.path.join(sc.dir, "input")
        os.makedirs(os.path.join(inp, "sub"), exist_ok=True)
        for rel, color in (("cat.png", (200, 120, 40)), ("sub/cat.png", (40, 120, 200))):
            with open(os.path.join(inp, rel), "wb") as f:
                f.write(png_bytes(64, 48, color))
        return sc

    # -- acceptance 1: golden graphs over HTTP ----------------------------------
    def test_golden_graphs_end_to_end(self):
        cases = golden_cases()
        self.assertGreaterEqual(len(cases), 10, cases)
        self.assertEqual(sorted({t for t, _ in cases}), template_paths(),
                         "every template has golden cases and every golden dir is a template")
        for tpl in template_paths():
            names = {c for t, c in cases if t == tpl}
            self.assertLessEqual({"defaults", "minimum", "maximum"}, names, tpl)
        for tpl, case in cases:
            with self.soft("%s %s" % (tpl, case)):
                self.check_golden_case(tpl, case)

    def check_golden_case(self, tpl, case):
        base = os.path.join(GOLDEN, tpl, case)
        inp = load_json(base + ".input.json")
        filled = load_json(base + ".filled.json")
        golden = load_json(base + ".graph.json")
        if "seed" not in inp:
            # random seed: send the golden one so the graph is deterministic
            inp["seed"] = filled["seed"]
        rid = new_id(case)
        r = self.post_wf(self.sc, tpl, {"id": rid, "input": inp})
        if (tpl, case) in SIDECAR_REFUSES:
            status, loc = SIDECAR_REFUSES[(tpl, case)]
            self.assertError(r, status, loc)
            return
        expected = with_id_prefix(golden, rid)
        got, emu_status = self.emu_graph(self.sc, rid)
        self.assertEqual(got, expected, "graph the emulator received for %s %s" % (tpl, case))
        self.assertEqual(canonical(got), canonical(expected), "number types differ")
        refused = COMFY_REFUSES.get((tpl, case))
        if refused:
            status, loc, kind = refused
            self.assertEqual(emu_status, status if status == 400 else 200)
            err = self.assertError(r, status, loc)
            self.assertIn(kind, (err.get("error_type"), err.get("exception_type")), r)
            return
        self.assertEqual(emu_status, 200)
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual(body.get("id"), rid)
        self.assertEqual(canonical(body.get("input")), canonical(filled), "answer's input")
        self.assertEqual(body.get("prompt"), expected, "answer's prompt")
        if tpl == "sdxl/img2img":
            size = (filled["target_width"], filled["target_height"])
        else:
            size = (filled["width"], filled["height"])
        self.assertImages(r, [size])

    # -- acceptance 3: prompt only, 1024x1024, reproducible ---------------------
    def test_refiner_prompt_only_and_reproducible(self):
        golden_in = load_json(os.path.join(GOLDEN, REFINER, "defaults.input.json"))
        self.assertEqual(list(golden_in), ["prompt"])
        filled = load_json(os.path.join(GOLDEN, REFINER, "defaults.filled.json"))
        golden = load_json(os.path.join(GOLDEN, REFINER, "defaults.graph.json"))

        rid1 = new_id("only-prompt")
        r1 = self.post_wf(self.sc, REFINER, {"id": rid1, "input": golden_in})
        raws1 = self.assertImages(r1, [(1024, 1024)])
        self.assertTrue(r1.json["filenames"][0].startswith(rid1 + "_ComfyUI_"), r1.json["filenames"])
        used = r1.json.get("input")
        self.assertIsInstance(used, dict, r1)
        seed = used.get("seed")
        self.assertTrue(isinstance(seed, int) and not isinstance(seed, bool),
                        "input.seed is not an integer: %r" % (seed,))
        self.assertTrue(0 <= seed <= MAX_SEED, seed)
        # every default filled in (the golden filled input, with the seed drawn)
        self.assertEqual(canonical(dict(used, seed=None)), canonical(dict(filled, seed=None)))
        # the graph ComfyUI received is the template's, with that seed
        want = json.loads(json.dumps(golden))
        want["10"]["inputs"]["noise_seed"] = seed
        got1, _ = self.emu_graph(self.sc, rid1)
        self.assertEqual(canonical(got1), canonical(with_id_prefix(want, rid1)))

        # the answer's input, posted back, gives the same graph (apart from the prefix)
        rid2 = new_id("replay")
        r2 = self.post_wf(self.sc, REFINER, {"id": rid2, "input": used})
        raws2 = self.assertImages(r2, [(1024, 1024)])
        self.assertEqual(canonical(r2.json.get("input")), canonical(used))
        got2, _ = self.emu_graph(self.sc, rid2)
        self.assertEqual(canonical(got2), canonical(with_id_prefix(want, rid2)))
        # and the same pixels
        px = [Image.open(io.BytesIO(raw)).convert("RGB").tobytes() for raw in (raws1[0], raws2[0])]
        self.assertTrue(px[0] == px[1], "the replayed input gave different pixels")

        # another request without a seed draws another one
        rid3 = new_id("other-seed")
        r3 = self.post_wf(self.sc, REFINER, {"id": rid3, "input": golden_in})
        self.assertEqual(r3.status, 200, r3)
        self.assertNotEqual(r3.json["input"]["seed"], seed, "two random seeds in a row are equal")

    # -- acceptance 2: every invalid input gets the documented 400 --------------
    INVALID = [
        # (label, template, body, location, regex the message must match)
        ("unknown field", REFINER, {"input": {"prompt": "p", "foo": 1}},
         "input.foo", r'unknown parameter "foo"'),
        ("integer as string", REFINER, {"input": {"prompt": "p", "steps": "25"}},
         "input.steps", r'"steps" must be an integer'),
        ("integer as fraction", REFINER, {"input": {"prompt": "p", "steps": 25.5}},
         "input.steps", r'"steps" must be an integer'),
        ("integer as 25.0", REFINER, '{"input": {"prompt": "p", "steps": 25.0}}',
         "input.steps", r'"steps" must be an integer'),
        ("number as string", REFINER, {"input": {"prompt": "p", "cfg_scale": "8"}},
         "input.cfg_scale", r'"cfg_scale" must be a number'),
        ("string as number", REFINER, {"input": {"prompt": 5}},
         "input.prompt", r'"prompt" must be a string'),
        ("enum as number", REFINER, {"input": {"prompt": "p", "sampler_name": 1}},
         "input.sampler_name", r'"sampler_name"'),
        ("boolean as integer", REFINER, {"input": {"prompt": "p", "width": True}},
         "input.width", r'"width" must be an integer'),
        ("below minimum", REFINER, {"input": {"prompt": "p", "steps": 0}},
         "input.steps", r'"steps" must be >= 1 \(minimum\); got 0'),
        ("above maximum", REFINER, {"input": {"prompt": "p", "steps": 101}},
         "input.steps", r'"steps" must be <= 100 \(maximum\); got 101'),
        ("width below minimum", "sdxl/txt2img", {"input": {"prompt": "p", "width": 255}},
         "input.width", r'"width" must be >= 256'),
        ("cfg above maximum", "sdxl/txt2img", {"input": {"prompt": "p", "cfg_scale": 20.5}},
         "input.cfg_scale", r'"cfg_scale" must be <= 20'),
        ("denoise above maximum", "sdxl/txt2img", {"input": {"prompt": "p", "denoise": 1.01}},
         "input.denoise", r'"denoise" must be <= 1'),
        ("negative seed", REFINER, {"input": {"prompt": "p", "seed": -1}},
         "input.seed", r'"seed" must be >= 0'),
        ("seed above 2^53-1", REFINER, {"input": {"prompt": "p", "seed": MAX_SEED + 1}},
         "input.seed", r'"seed" must be <= 9007199254740991'),
        ("bad sampler", REFINER, {"input": {"prompt": "p", "sampler_name": "bogus"}},
         "input.sampler_name", r'"sampler_name" must be one of: .*got "bogus"'),
        ("bad scheduler", "sdxl/img2img", {"input": {"prompt": "p", "image": "cat.png",
                                                     "scheduler": "bogus"}},
         "input.scheduler", r'"scheduler" must be one of: .*got "bogus"'),
        ("bad upscale method", "sdxl/img2img", {"input": {"prompt": "p", "image": "cat.png",
                                                          "upscale_method": "magic"}},
         "input.upscale_method", r'"upscale_method" must be one of'),
        ("rule base_start_step < base_end_step", REFINER,
         {"input": {"prompt": "p", "base_start_step": 20, "base_end_step": 20}},
         "input.base_start_step",
         r'the base model must run at least one step: rule "base_start_step < base_end_step" '
         r'is broken: 20 < 20 is false'),
        ("rule base_start_step < base_end_step (start after end)", REFINER,
         {"input": {"prompt": "p", "base_start_step": 21}},
         "input.base_start_step", r'rule "base_start_step < base_end_step" is broken: 21 < 20'),
        ("rule base_end_step <= steps", REFINER,
         {"input": {"prompt": "p", "steps": 10}},
         "input.base_end_step",
         r'rule "base_end_step <= steps" is broken: 20 <= 10 is false'),
        ("rule base_end_step <= steps (explicit)", REFINER,
         {"input": {"prompt": "p", "steps": 30, "base_end_step": 31, "refiner_start_step": 30}},
         "input.base_end_step", r'rule "base_end_step <= steps" is broken: 31 <= 30'),
        ("rule refiner_start_step <= steps", REFINER,
         {"input": {"prompt": "p", "refiner_start_step": 26}},
         "input.refiner_start_step",
         r'the refiner cannot start after the last step: rule "refiner_start_step <= steps" '
         r'is broken: 26 <= 25 is false'),
        ("missing prompt", REFINER, {"input": {"steps": 20}},
         "input.prompt", r'"prompt" is required'),
        ("missing image", "sdxl/img2img", {"input": {"prompt": "p"}},
         "input.image", r'"image" is required'),
        ("no input at all", REFINER, {},
         "input.prompt", r'"prompt" is required'),
        ("input is a list", REFINER, {"input": []}, "input", r'"input" must be an object'),
        ("input is a string", REFINER, {"input": "a cat"}, "input", r'"input" must be an object'),
        ("input is a number", REFINER, {"input": 7}, "input", r'"input" must be an object'),
        ("unknown top-level field", REFINER, {"input": {"prompt": "p"}, "bar": 1},
         "bar", r'unknown field "bar"'),
        ("prompt next to input", REFINER, {"input": {"prompt": "p"}, "prompt": {}},
         "prompt", r'prompt'),
        ("bad id", REFINER, {"input": {"prompt": "p"}, "id": "a/b"}, "id", r'.'),
        ("body not JSON", REFINER, "{not json", None, r'.'),
        ("body a JSON list", REFINER, "[]", None, r'.'),
    ]

    def test_invalid_inputs_get_400(self):
        n_before = len(self.sc.emu_prompts())
        for label, tpl, body, loc, pattern in self.INVALID:
            with self.soft(label):
                r = self.post_wf(self.sc, tpl, body)
                err = self.assertError(r, 400, loc)
                self.assertRegex(err["error"], pattern)
        self.assertEqual(len(self.sc.emu_prompts()), n_before,
                         "an invalid input reached ComfyUI")

    def test_boundaries_accepted(self):
        """Each bound itself is valid, and a rule holding with equality passes."""
        for label, inp in (
                ("steps 1", {"steps": 1, "base_end_step": 1, "refiner_start_step": 1}),
                ("steps 100", {"steps": 100}),
                ("rule equalities", {"steps": 20, "base_end_step": 20, "refiner_start_step": 20}),
                ("cfg 0 and seed 0", {"cfg_scale": 0, "seed": 0}),
                ("seed 2^53-1", {"seed": MAX_SEED})):
            with self.soft(label):
                rid = new_id("bound")
                r = self.post_wf(self.sc, REFINER, {"id": rid, "input": dict(inp, prompt="p")})
                self.assertEqual(r.status, 200, r)
                for k, v in inp.items():
                    self.assertEqual(canonical(r.json["input"][k]), canonical(v), k)

    def test_unknown_template_404_and_get_405(self):
        for path in ("sdxl/nope", "nope", "warmup/sdxl-with-refiner", "sdxl", "sdxl/txt2img/x",
                     "sdxl/txt2img.json"):
            with self.soft(path):
                r = self.post_wf(self.sc, path, {"input": {"prompt": "p"}})
                self.assertError(r, 404, "path")
                self.assertIn(path, r.json["error"])
                self.assertEqual(sorted(r.json.get("available") or []), template_paths(), r)
        for tpl in template_paths():
            with self.soft("GET " + tpl):
                r = self.sc.req("GET", "/workflow/" + tpl)
                self.assertError(r, 405, "method")
                self.assertEqual(r.headers.get("allow"), "POST", r.headers)

    # -- acceptance 6: the OpenAPI document ---------------------------------------
    def test_openapi_document_is_valid(self):
        problem = node_problem()
        self.assertIsNone(problem, problem)
        r = self.sc.get("/docs/json")
        self.assertEqual(r.status, 200, r)
        self.assertIn("application/json", r.headers.get("content-type", ""))
        doc = r.json
        self.assertIsInstance(doc, dict, r)
        self.assertRegex(doc.get("openapi", ""), r"^3\.1\.\d+$")
        r2 = self.sc.get("/openapi.json")
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(r2.json, doc, "/openapi.json differs from /docs/json")

        code, out = validate_openapi(r.data.decode("utf-8"))
        self.assertEqual(code, 0, "validate-openapi.js rejected /docs/json:\n" + out[:4000])
        self.assertIn("valid OpenAPI 3.1", out)

        # the validator is not a rubber stamp: a broken copy fails
        broken = json.loads(json.dumps(doc))
        del broken["info"]
        broken["paths"]["/workflow/" + REFINER]["post"]["responses"]["200"]["content"][
            "application/json"]["schema"] = {"$ref": "#/components/schemas/NoSuchSchema"}
        code, out = validate_openapi(json.dumps(broken))
        self.assertEqual(code, 1, "validate-openapi.js accepted a broken document:\n" + out)

        # every template has one POST operation; operationIds are unique
        op_ids = []
        for p, item in doc["paths"].items():
            for method, op in item.items():
                if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
                    self.assertIsInstance(op.get("operationId"), str, "%s %s" % (method, p))
                    op_ids.append(op["operationId"])
        self.assertEqual(len(op_ids), len(set(op_ids)),
                         "duplicate operationIds: %r" % sorted(x for x in op_ids
                                                             if op_ids.count(x) > 1))
        wf_paths = sorted(p[len("/workflow/"):] for p in doc["paths"] if p.startswith("/workflow/"))
        self.assertEqual(wf_paths, template_paths())
        for tpl in template_paths():
            with self.soft("operation " + tpl):
                t = load_json(os.path.join(WORKFLOW_DIR, tpl + ".json"))
                item = doc["paths"]["/workflow/" + tpl]
                self.assertEqual(sorted(item), ["post"], tpl)
                op = item["post"]
                self.assertEqual(op.get("summary"), t.get("summary"))
                for st in ("200", "400", "404"):
                    self.assertIn(st, op["responses"], tpl)
                sch = input_schema(doc, tpl)
                self.assertEqual(sorted(sch["properties"]), sorted(t["parameters"]), tpl)
                self.assertEqual(sorted(sch.get("required", [])),
                                 sorted(n for n, p in t["parameters"].items() if p.get("required")))
                self.assertIs(sch.get("additionalProperties"), False, tpl)
                for name, p in t["parameters"].items():
                    ps = sch["properties"][name]
                    for k in ("minimum", "maximum"):
                        if k in p:
                            self.assertEqual(ps.get(k), p[k], "%s %s.%s" % (tpl, name, k))
                    if isinstance(p.get("enum"), list):
                        self.assertEqual(ps.get("enum"), p["enum"], "%s %s" % (tpl, name))
        # the enum_from lists are ComfyUI's
        oi = self.sc.emu("GET", "/object_info/KSamplerAdvanced").json
        samplers = oi["KSamplerAdvanced"]["input"]["required"]["sampler_name"][0]
        self.assertEqual(input_schema(doc, REFINER)["properties"]["sampler_name"].get("enum"),
                         samplers)

    # -- acceptance 7: /docs from local files -------------------------------------
    def test_docs_page_is_local(self):
        for path in ("/docs", "/docs/"):
            with self.soft(path):
                r = self.sc.get(path)
                self.assertEqual(r.status, 200, r)
                self.assertIn("text/html", r.headers.get("content-type", ""))
                html = r.data.decode("utf-8")
                with open(os.path.join(WEB_DIR, "docs", "index.html"), encoding="utf-8") as f:
                    self.assertEqual(html, f.read(), "GET /docs is not web/docs/index.html")
                self.assertNotRegex(html.lower(), r"https?://",
                                    "the /docs page names an external URL")
                self.assertNotRegex(html, r"""(src|href)\s*=\s*["']?//""",
                                    "protocol-relative URL in the /docs page")
                for name in STATIC_FILES:
                    self.assertIn('"/docs/static/%s"' % name, html)
                self.assertRegex(html, r"""url:\s*["']/docs/json["']""")
                for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html):
                    self.assertTrue(ref.startswith("/docs/static/"), ref)
        for name, ctype in STATIC_FILES.items():
            with self.soft(name):
                r = self.sc.get("/docs/static/" + name)
                self.assertEqual(r.status, 200, r)
                self.assertIn(ctype, r.headers.get("content-type", ""))
                with open(os.path.join(WEB_DIR, "node_modules", "swagger-ui-dist", name),
                          "rb") as f:
                    self.assertEqual(r.data, f.read(), name)
        # the installed Swagger UI is the pinned one
        pinned = load_json(os.path.join(WEB_DIR, "package.json"))["dependencies"]["swagger-ui-dist"]
        self.assertRegex(pinned, r"^\d+\.\d+\.\d+$", "swagger-ui-dist must be pinned")
        installed = load_json(os.path.join(WEB_DIR, "node_modules", "swagger-ui-dist",
                                           "package.json"))["version"]
        self.assertEqual(installed, pinned, "npm ci --prefix web installs the pinned version")
        # nothing outside the folder, nothing hidden
        for bad in ("/docs/static/..%2Fpackage.json", "/docs/static/.package-lock.json",
                    "/docs/static/", "/docs/static/nope.js", "/docs/static/a/b.js"):
            with self.soft(bad):
                self.assertError(self.sc.get(bad), 404, "path")
        self.assertError(self.sc.req("POST", "/docs", body={}), 405, "method")


# ---------------------------------------------------------------------------

class WorkflowEnumTests(WorkflowTestCase):
    """Acceptance 4: enum lists come from the running ComfyUI."""

    MINE = ["my_base.safetensors", "my_refiner.safetensors"]

    def test_checkpoint_enum_from_comfyui(self):
        sc = self.new_sidecar("wf-enum", emu_args=["--checkpoints", ",".join(self.MINE)],
                              env={"WORKFLOW_DIR": WORKFLOW_DIR, "WEB_DIR": WEB_DIR})

        # /object_info may be read after /ready: poll the document, with a deadline
        def live_list():
            doc = sc.get("/docs/json").json
            enum = input_schema(doc, REFINER)["properties"]["checkpoint"].get("enum")
            return doc if enum == self.MINE else None
        doc = harness.poll(live_list, 10, interval=0.1,
                           what="/docs/json to list the emulator's checkpoints")
        for tpl in template_paths():
            self.assertEqual(input_schema(doc, tpl)["properties"]["checkpoint"].get("enum"),
                             self.MINE, tpl)
        code, out = (0, "")
        if node_problem() is None:
            code, out = validate_openapi(json.dumps(doc))
        self.assertEqual(code, 0, out)

        # a checkpoint ComfyUI does not have: the sidecar's own 400
        n0 = len(sc.emu_prompts())
        r = self.post_wf(sc, REFINER, {"input": {"prompt": "p",
                                                 "checkpoint": "sd_xl_base_1.0.safetensors"}})
        err = self.assertError(r, 400, "input.checkpoint")
        self.assertRegex(err["error"], r'"checkpoint" must be one of: my_base\.safetensors, '
                                       r'my_refiner\.safetensors; got "sd_xl_base_1\.0\.safetensors"')
        self.assertEqual(len(sc.emu_prompts()), n0, "the refused checkpoint reached ComfyUI")

        # ComfyUI's own checkpoints work
        rid = new_id("mine")
        r = self.post_wf(sc, REFINER, {"id": rid, "input": {
            "prompt": "p", "checkpoint": "my_base.safetensors",
            "refiner_checkpoint": "my_refiner.safetensors"}})
        self.assertImages(r, [(1024, 1024)])
        got, _ = self.emu_graph(sc, rid)
        self.assertEqual(got["4"]["inputs"]["ckpt_name"], "my_base.safetensors")
        self.assertEqual(got["12"]["inputs"]["ckpt_name"], "my_refiner.safetensors")

        # The template default (sd_xl_base_1.0) is not in the live list. The
        # README: an enum_from default is not checked against the live list, so
        # ComfyUI refuses the prompt. That must be a clear 400, not a 500.
        r = self.post_wf(sc, REFINER, {"input": {"prompt": "p"}})
        err = self.assertError(r, 400)
        self.assertEqual(err.get("error_type"), "prompt_outputs_failed_validation", r)
        self.assertIn(err.get("location"), ("prompt.4.inputs.ckpt_name",
                                            "prompt.12.inputs.ckpt_name"), r)
        self.assertIn("4", err.get("node_errors") or {}, r)
        self.assertIn("sd_xl_base_1.0.safetensors", json.dumps(err["node_errors"]))
        sc.stop(expect_code=0)


# ---------------------------------------------------------------------------

class WorkflowReloadTests(WorkflowTestCase):
    """Acceptance 5: SIGHUP reloads WORKFLOW_DIR; a broken file is logged and skipped."""

    def test_sighup_reload(self):
        sc = self.new_sidecar("wf-reload", start=False, env={"WEB_DIR": WEB_DIR})
        wdir = os.path.join(sc.dir, "workflows")
        shutil.copytree(WORKFLOW_DIR, wdir)
        sc.extra_env["WORKFLOW_DIR"] = wdir
        sc.start_ready()
        before = template_paths(wdir)
        self.assertEqual(before, template_paths())

        r = self.post_wf(sc, "extra/mine", {"input": {"prompt": "p"}})
        self.assertError(r, 404, "path")
        self.assertNotIn("extra/mine", r.json.get("available", []))

        os.makedirs(os.path.join(wdir, "extra"))
        shutil.copy(os.path.join(wdir, "sdxl", "txt2img.json"),
                    os.path.join(wdir, "extra", "mine.json"))
        with open(os.path.join(wdir, "broken.json"), "w") as f:
            f.write('{"summary": "half a template", "parameters": {')
        log_before = len(sc.log_text())
        sc.proc.send_signal(signal.SIGHUP)

        # GET on a template answers 405, on no template 404: poll without running jobs
        harness.poll(lambda: sc.req("GET", "/workflow/extra/mine", timeout=5).status == 405,
                     10, interval=0.05, what="extra/mine to appear after SIGHUP")
        self.assertIsNone(sc.proc.poll(), "the sidecar exited on SIGHUP")

        rid = new_id("mine")
        golden = load_json(os.path.join(GOLDEN, "sdxl", "txt2img", "defaults.graph.json"))
        filled = load_json(os.path.join(GOLDEN, "sdxl", "txt2img", "defaults.filled.json"))
        inp = dict(load_json(os.path.join(GOLDEN, "sdxl", "txt2img", "defaults.input.json")),
                   seed=filled["seed"])
        r = self.post_wf(sc, "extra/mine", {"id": rid, "input": inp})
        self.assertImages(r, [(1024, 1024)])
        got, _ = self.emu_graph(sc, rid)
        self.assertEqual(canonical(got), canonical(with_id_prefix(golden, rid)))

        # the broken file is named in the log, with a reason
        def broken_logged():
            text = sc.log_text()[log_before:]
            return [l for l in text.splitlines() if "broken.json" in l]
        lines = harness.poll(broken_logged, 5, what="a log line naming broken.json")
        self.assertTrue(any(re.search(r"broken\.json: .*invalid JSON", l, re.I) for l in lines),
                        "the log names broken.json without the reason (invalid JSON): %r" % lines)

        # the other templates still work; broken is not a template
        rid = new_id("still")
        r = self.post_wf(sc, "sdxl/txt2img-with-refiner", {"id": rid, "input": {"prompt": "p"}})
        self.assertImages(r, [(1024, 1024)])
        r = self.post_wf(sc, "broken", {"input": {"prompt": "p"}})
        self.assertError(r, 404, "path")
        self.assertEqual(sorted(r.json.get("available", [])), sorted(before + ["extra/mine"]))
        paths = sc.get("/docs/json").json["paths"]
        self.assertIn("/workflow/extra/mine", paths)
        self.assertNotIn("/workflow/broken", paths)
        sc.stop(expect_code=0)
