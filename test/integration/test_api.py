"""POST /prompt, /health, /ready and the error table of README.md, against one
supervised sidecar+emulator shared by the whole class (the tests run one after
another and disarm the emulator's faults before each test)."""
import concurrent.futures
import copy
import re
import urllib.parse
import uuid

import graphs
import harness
from harness import SidecarTestCase, decode_image

UNIMPLEMENTED = {
    "s3": {"bucket": "b", "prefix": "p/"},
    "hf_upload": {"repo": "user/repo"},
    "azure_blob_upload": {"container": "c"},
    "http_upload": {"url_prefix": "http://127.0.0.1:9/up"},
    "credentials": [{"url_pattern": "https://example.com/**",
                     "auth": {"type": "bearer", "token": "t"}}],
}


def new_id(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class ApiTests(harness.SharedSidecarMixin, SidecarTestCase):

    @classmethod
    def make_sidecar(cls):
        # READ_OUTPUT_DIR=false: these tests exercise /view (and its faults).
        return harness.Sidecar("api", emu_args=["--step-time", "0.01"],
                               env={"COMFY_TIMEOUT_S": "5", "READ_OUTPUT_DIR": "false"})

    @classmethod
    def after_ready(cls):
        cls.prompts_at_start = cls.sc.emu_prompts()
        cls.state_at_start = cls.sc.emu_state()

    # -- helpers ---------------------------------------------------------------
    def emu_record(self, prefix_input):
        """The POST /prompt the emulator received whose graph has a
        filename_prefix equal to prefix_input."""
        for rec in self.sc.emu_prompts():
            body = rec.get("body") or {}
            for node in (body.get("prompt") or {}).values():
                if (node.get("inputs") or {}).get("filename_prefix") == prefix_input:
                    return rec
        self.fail("the emulator received no prompt with filename_prefix %r" % prefix_input)

    def emu_view(self, filename, subfolder="", type_="output"):
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type_})
        r = self.sc.emu("GET", "/view?" + q)
        self.assertEqual(r.status, 200, "emulator /view %s: %r" % (q, r))
        return r.data

    def ws_connects(self):
        return sum(1 for q in self.sc.emu_requests()
                   if q["method"] == "GET" and q["path"] in ("/ws", "/api/ws"))

    def n_emu_prompts(self):
        return len(self.sc.emu_prompts())

    # -- readiness -------------------------------------------------------------
    def test_ready_and_health_without_warmup(self):
        r = self.ready_at_start
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json.get("status"), "ready", r)
        self.assertIsInstance(r.json.get("version"), str, r)
        self.assertEqual(r.json.get("comfyui"), "up", r)
        self.assertEqual(r.json.get("websocket"), "connected", r)
        self.assertIs(r.json.get("warm"), True, r)
        qd = r.json.get("queue_depth")
        self.assertTrue(isinstance(qd, int) and not isinstance(qd, bool), r)
        # no warmup file: nothing was run before /ready, and the websocket is open
        self.assertEqual(self.prompts_at_start, [])
        self.assertTrue(self.state_at_start.get("ws_clients"),
                        "no websocket client on the emulator when /ready said 200")
        h = self.sc.get("/health")
        self.assertEqual(h.status, 200, h)
        self.assertEqual(h.json.get("status"), "healthy", h)
        self.assertIsInstance(h.json.get("version"), str, h)

    # -- success paths -----------------------------------------------------------
    def test_sdxl_base_refiner_1024(self):
        rid = new_id("sdxl")
        graph = graphs.sdxl_refiner(1024, 1024, seed=1234, prefix="sdxl")
        r = self.sc.post_prompt({"id": rid, "prompt": graph}, timeout=60)
        self.assertEqual(r.status, 200, r)
        self.assertIn("application/json", r.headers.get("content-type", ""))
        body = r.json
        self.assertEqual(body.get("id"), rid)
        raws = self.assertImages(r, [(1024, 1024)])
        self.assertEqual(len(body["filenames"]), 1)
        fn = body["filenames"][0]
        self.assertTrue(fn.startswith(rid), fn)
        self.assertRegex(fn, r"^%s_sdxl_\d{5}_\.png$" % re.escape(rid))

        expected = graphs.with_prefix(graph, {"11": "%s_sdxl" % rid})
        self.assertEqual(body.get("prompt"), expected, "echoed prompt")

        stats = body.get("stats")
        self.assertIsInstance(stats, dict, body.keys())
        for k in ("preprocess_time", "comfy_round_trip_time", "postprocess_time",
                  "upload_time", "total_time"):
            self.assertTrue(is_number(stats.get(k)), "stats.%s = %r" % (k, stats.get(k)))
            self.assertGreaterEqual(stats[k], 0, k)
        ce = stats.get("comfy_execution")
        self.assertIsInstance(ce, dict, stats)
        for k in ("start", "end", "duration"):
            self.assertTrue(is_number(ce.get(k)), "stats.comfy_execution.%s = %r" % (k, ce.get(k)))
        self.assertGreaterEqual(ce["end"], ce["start"])
        self.assertGreaterEqual(ce["duration"], 0)
        self.assertIsInstance(ce.get("nodes"), dict, ce)
        for nid, n in ce["nodes"].items():
            self.assertTrue(is_number(n.get("start")), "nodes[%s] = %r" % (nid, n))

        # What ComfyUI received: the rewritten graph and a websocket client id.
        rec = self.emu_record("%s_sdxl" % rid)
        self.assertEqual(rec["status"], 200)
        self.assertEqual(rec["body"]["prompt"], expected)
        self.assertIsInstance(rec["body"].get("client_id"), str)
        self.assertTrue(rec["body"]["client_id"])
        # The bytes are the file ComfyUI wrote.
        self.assertEqual(raws[0], self.emu_view(fn))

    def test_output_order_by_node_id(self):
        rounds = [
            # (node id, width, height, prefix) in JSON order; expected answer order
            ([("10", 40, 10, "a10"), ("9", 30, 10, "a9"), ("2", 20, 10, "a2")], ["2", "9", "10"]),
            ([("2", 20, 11, "b2"), ("9", 30, 11, "b9"), ("10", 40, 11, "b10")], ["2", "9", "10"]),
            ([("9", 30, 12, "c9"), ("2", 20, 12, "c2"), ("10", 40, 12, "c10")], ["2", "9", "10"]),
            ([("2", 50, 13, "d2"), ("100", 21, 13, "d100"), ("33", 35, 13, "d33")], ["2", "33", "100"]),
            ([("7", 15, 14, "e7"), ("11", 60, 14, "e11"), ("1", 25, 14, "e1")], ["1", "7", "11"]),
        ]
        for outputs, order in rounds:
            with self.soft(repr(dict(order=order, json_order=[o[0] for o in outputs]))):
                rid = new_id("order")
                by_id = {o[0]: o for o in outputs}
                r = self.sc.post_prompt({"id": rid, "prompt": graphs.multi_save(outputs)})
                sizes = [(by_id[n][1], by_id[n][2]) for n in order]
                self.assertImages(r, sizes)
                for i, n in enumerate(order):
                    self.assertRegex(r.json["filenames"][i],
                                     r"^%s_%s_\d{5}_\.png$" % (re.escape(rid), by_id[n][3]))

    def test_batch_images_in_index_order(self):
        rid = new_id("batch")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(24, 20, prefix="bt",
                                                                          batch_size=3)})
        self.assertImages(r, [(24, 20)] * 3)
        counters = [int(re.match(r"^%s_bt_(\d{5})_\.png$" % re.escape(rid), f).group(1))
                    for f in r.json["filenames"]]
        self.assertEqual(counters, sorted(counters))
        self.assertEqual(len(set(counters)), 3, r.json["filenames"])

    def test_subfolder_output(self):
        rid = new_id("sub")
        graph = graphs.empty_image(40, 30, color=0x336699, prefix="sub/x")
        r = self.sc.post_prompt({"id": rid, "prompt": graph})
        raws = self.assertImages(r, [(40, 30)])
        fn = r.json["filenames"][0]
        self.assertRegex(fn, r"^sub/%s_x_\d{5}_\.png$" % re.escape(rid))
        self.assertEqual(r.json["prompt"]["2"]["inputs"]["filename_prefix"], "sub/%s_x" % rid)
        self.assertEqual(self.emu_record("sub/%s_x" % rid)["body"]["prompt"]["2"]["inputs"]
                         ["filename_prefix"], "sub/%s_x" % rid)
        self.assertEqual(raws[0], self.emu_view(fn.split("/", 1)[1], subfolder="sub"))

    def test_preview_image_output(self):
        rid = new_id("preview")
        graph = {"1": {"class_type": "EmptyImage",
                       "inputs": {"width": 33, "height": 17, "batch_size": 1, "color": 255}},
                 "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        r = self.sc.post_prompt({"id": rid, "prompt": graph})
        self.assertImages(r, [(33, 17)])
        self.assertEqual(r.json.get("id"), rid)

    # -- ids -------------------------------------------------------------------
    def test_valid_client_ids(self):
        for rid in ("My.Req-01_a", "x" * 128, "7"):
            with self.soft(repr(dict(id=rid))):
                r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(16, 8, prefix="vid")})
                self.assertImages(r, [(16, 8)])
                self.assertEqual(r.json["id"], rid)
                self.assertTrue(r.json["filenames"][0].startswith(rid + "_vid_"), r.json["filenames"])
                self.emu_record("%s_vid" % rid)

    def test_id_with_dots_does_not_break_the_job(self):
        # README: letters, digits, '-', '_' and '.' are allowed, so ".." and "a..b"
        # are valid ids. ComfyUI's /view refuses file names containing "..", so
        # the sidecar must either refuse such an id up front (400, location id)
        # or still deliver the image; running the job and then failing it with
        # a 502 is wrong.
        for rid in ("a..b", ".."):
            with self.soft(rid):
                r = self.sc.post_prompt({"id": rid, "prompt": graphs.empty_image(10, 6, prefix="dd")})
                if r.status == 400:
                    self.assertError(r, 400, location="id")
                else:
                    self.assertImages(r, [(10, 6)])

    def test_random_id_when_absent(self):
        r = self.sc.post_prompt({"prompt": graphs.empty_image(16, 9, prefix="rnd")})
        self.assertImages(r, [(16, 9)])
        rid = r.json.get("id")
        self.assertRegex(rid, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertTrue(r.json["filenames"][0].startswith(rid + "_rnd_"))

    def test_invalid_ids(self):
        before = self.n_emu_prompts()
        for bad in ("../x", "a/b", "x" * 129, "", "a b", "a\\b", 123, None, ["a"], {"a": 1}):
            with self.soft(repr(dict(id=bad))):
                r = self.sc.post_prompt({"id": bad, "prompt": graphs.empty_image(8, 8)})
                self.assertError(r, 400, location="id")
        with self.soft("ComfyUI untouched"):
            self.assertEqual(self.n_emu_prompts(), before, "a refused request reached ComfyUI")

    # -- request errors ----------------------------------------------------------
    def test_malformed_json(self):
        for raw in (b'{"prompt": ', b"not json", b'{"prompt": {}} trailing', b""):
            with self.soft(repr(dict(body=raw))):
                self.assertError(self.sc.post_prompt(raw), 400)

    def test_body_not_an_object(self):
        for raw in (b"[1, 2]", b'"prompt"', b"42", b"null", b"true"):
            with self.soft(repr(dict(body=raw))):
                self.assertError(self.sc.post_prompt(raw), 400)

    def test_missing_prompt(self):
        self.assertError(self.sc.post_prompt({"id": "nop"}), 400, location="prompt")
        self.assertError(self.sc.post_prompt({}), 400, location="prompt")

    def test_prompt_not_an_object(self):
        for bad in ([1, 2], "graph", 5, None, True):
            with self.soft(repr(dict(prompt=bad))):
                self.assertError(self.sc.post_prompt({"prompt": bad}), 400, location="prompt")

    def test_bad_nodes(self):
        save = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bn"}}
        img = {"class_type": "EmptyImage",
               "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
        before = self.n_emu_prompts()
        # node without class_type
        r = self.sc.post_prompt({"prompt": {"1": {"inputs": img["inputs"]}, "2": save}})
        j = self.assertError(r, 400)
        self.assertTrue(str(j.get("location", "")).startswith("prompt"), j)
        # node that is not an object
        r = self.sc.post_prompt({"prompt": {"1": 5, "2": save}})
        j = self.assertError(r, 400)
        self.assertTrue(str(j.get("location", "")).startswith("prompt"), j)
        # class_type not a string
        r = self.sc.post_prompt({"prompt": {"1": dict(img, class_type=7), "2": save}})
        j = self.assertError(r, 400)
        self.assertTrue(str(j.get("location", "")).startswith("prompt"), j)
        # inputs of the wrong type (README's example location "prompt.4.inputs")
        r = self.sc.post_prompt({"prompt": {"1": img, "4": {"class_type": "SaveImage",
                                                            "inputs": [["1", 0], "bn"]}}})
        self.assertError(r, 400, location="prompt.4.inputs")
        # only a node without class_type was allowed to reach ComfyUI (its invalid_prompt)
        self.assertLessEqual(self.n_emu_prompts() - before, 1)

    def test_no_output_node(self):
        before = self.n_emu_prompts()
        g = {"1": {"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}}
        j = self.assertError(self.sc.post_prompt({"prompt": g}), 400)
        self.assertTrue(str(j.get("location", "")).startswith("prompt"), j)
        self.assertError(self.sc.post_prompt({"prompt": {}}), 400)
        self.assertEqual(self.n_emu_prompts(), before, "a graph without output reached ComfyUI")

    def test_unimplemented_fields(self):
        before = self.n_emu_prompts()
        for field, value in UNIMPLEMENTED.items():
            with self.soft(repr(dict(field=field))):
                r = self.sc.post_prompt({"prompt": graphs.empty_image(8, 8), field: value})
                self.assertError(r, 400, location=field)
        with self.soft("ComfyUI untouched"):
            self.assertEqual(self.n_emu_prompts(), before, "a refused request reached ComfyUI")

    def test_unknown_field(self):
        for field in ("foo", "client_id", "prompt_id", "input"):
            with self.soft(repr(dict(field=field))):
                r = self.sc.post_prompt({"prompt": graphs.empty_image(8, 8), field: "x"})
                self.assertError(r, 400, location=field)

    # -- ComfyUI's answers ---------------------------------------------------------
    def test_validation_error_bad_ckpt(self):
        graph = graphs.ksampler(64, 64, steps=4, prefix="val", ckpt="does-not-exist.safetensors")
        # ComfyUI's own verdict on this graph, asked directly
        direct = self.sc.emu("POST", "/prompt", {"prompt": graph})
        self.assertEqual(direct.status, 400, direct)
        comfy_entry = direct.json["node_errors"]["4"]
        r = self.sc.post_prompt({"prompt": graph})
        j = self.assertError(r, 400, location="prompt.4.inputs.ckpt_name")
        self.assertEqual(j.get("error_type"), "prompt_outputs_failed_validation", j)
        self.assertIsInstance(j.get("node_errors"), dict, j)
        self.assertEqual(j["node_errors"].get("4"), comfy_entry)
        self.assertEqual(j["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list")

    def test_unknown_class_type(self):
        g = graphs.empty_image(8, 8, prefix="unk")
        g["5"] = {"class_type": "NoSuchNodeAnywhere", "inputs": {"image": ["1", 0]}}
        j = self.assertError(self.sc.post_prompt({"prompt": g}), 400)
        self.assertEqual(j.get("error_type"), "invalid_prompt", j)

    def test_runtime_error(self):
        msg = "mat1 and mat2 shapes cannot be multiplied (77x768 and 1024x320)"
        self.sc.emu_fault(mode="runtime_error", node="3", message=msg, exception_type="RuntimeError")
        r = self.sc.post_prompt({"prompt": graphs.ksampler(64, 64, steps=4, prefix="rt")})
        j = self.assertError(r, 500, location="prompt.3")
        self.assertEqual(j.get("node_id"), "3", j)
        self.assertEqual(j.get("node_type"), "KSampler", j)
        self.assertEqual(j.get("exception_type"), "RuntimeError", j)
        # ComfyUI's text verbatim: the message, a newline and ComfyUI's tip (empty here)
        self.assertEqual(j.get("exception_message", "").rstrip("\n"), msg, j)

    def test_oom(self):
        self.sc.emu_fault(mode="oom")
        r = self.sc.post_prompt({"prompt": graphs.ksampler(64, 64, steps=4, prefix="oom")})
        j = self.assertError(r, 500, location="prompt.3")
        self.assertEqual(j.get("node_id"), "3", j)
        self.assertIn("OutOfMemory", str(j.get("exception_type")), j)
        self.assertIn("memory", (j["error"] + " " + str(j.get("exception_message"))).lower(), j)

    def test_interrupted_in_comfyui(self):
        # 300 steps x 0.01 s: about 3 s of sampling; interrupted (in ComfyUI,
        # not through the sidecar) as soon as it runs
        graph = graphs.ksampler(64, 64, steps=300, prefix="intr")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            fut = ex.submit(self.sc.post_prompt, {"prompt": graph}, 30)

            def running():
                return self.sc.emu_state().get("running")
            pid = harness.poll(running, 10, what="the prompt to run in the emulator")
            self.assertEqual(self.sc.emu("POST", "/interrupt", {"prompt_id": pid}).status, 200)
            r = fut.result(30)
        j = self.assertError(r, 500)
        nid = j.get("node_id")
        self.assertIn(nid, graph, j)
        self.assertEqual(j.get("node_type"), graph[nid]["class_type"], j)
        self.assertEqual(j.get("location"), "prompt.%s" % nid, j)
        self.assertLess(r.elapsed, 2.9, "the interrupt was not noticed before the job would have ended")

    def test_comfy_prompt_500_is_502(self):
        self.sc.emu_fault(mode="prompt_500")
        r = self.sc.post_prompt({"prompt": graphs.empty_image(8, 8, prefix="p500")})
        self.assertError(r, 502)
        # and the next one works
        self.assertImages(self.sc.post_prompt({"prompt": graphs.empty_image(9, 8)}), [(9, 8)])

    def test_view_error_is_502(self):
        self.sc.emu_fault(mode="view_error", status=500)
        r = self.sc.post_prompt({"prompt": graphs.empty_image(8, 8, prefix="verr")})
        self.assertError(r, 502)
        self.assertTrue(any(q["path"].endswith("/view") for q in self.sc.emu_requests()))

    def test_slow_view_times_out_502(self):
        # COMFY_TIMEOUT_S=5 for this sidecar; /view answers after 8 s
        self.sc.emu_fault(mode="slow_view", delay=8)
        r = self.sc.post_prompt({"prompt": graphs.empty_image(8, 8, prefix="slow")}, timeout=30)
        self.assertError(r, 502)
        self.assertLess(r.elapsed, 7.9, "answered after the view, not after COMFY_TIMEOUT_S")

    def test_routes_not_found(self):
        for method, path, ok in (("GET", "/prompt", (404, 405)), ("GET", "/nope", (404,)),
                                 ("POST", "/nope", (404,)), ("DELETE", "/prompt", (404, 405))):
            with self.soft(repr(dict(method=method, path=path))):
                r = self.sc.req(method, path, body=b"{}" if method == "POST" else None)
                self.assertIn(r.status, ok, r)
                self.assertIsInstance(r.json, dict, "not JSON: %r" % r)
                self.assertIsInstance(r.json.get("error"), str, r)

    # -- websocket trouble -----------------------------------------------------------
    def test_ws_drop_mid_job(self):
        for abrupt in (False, True):
            with self.soft(repr(dict(abrupt=abrupt))):
                self.sc.wait_ready()
                n_ws = self.ws_connects()
                self.sc.emu_fault(mode="ws_drop", after=3, abrupt=abrupt)
                rid = new_id("wsdrop")
                r = self.sc.post_prompt({"id": rid, "prompt": graphs.sdxl_refiner(256, 192, seed=7,
                                                                                  prefix="wd")},
                                        timeout=30)
                self.assertImages(r, [(256, 192)])
                self.assertEqual(r.json["id"], rid)
                # the websocket was dropped and comes back
                self.sc.wait_ready()
                self.assertGreater(self.ws_connects(), n_ws, "no websocket reconnection seen")

    def test_ws_silence_mid_job(self):
        self.sc.emu_fault(mode="ws_silence")
        rid = new_id("wssil")
        r = self.sc.post_prompt({"id": rid, "prompt": graphs.ksampler(96, 80, steps=10, prefix="ws")},
                                timeout=30)
        self.assertImages(r, [(96, 80)])
        self.assertEqual(r.json["id"], rid)
        self.emu_record("%s_ws" % rid)
        asked = [q for q in self.sc.emu_requests()
                 if q["method"] == "GET" and "/history" in q["path"]]
        self.assertTrue(asked, "the sidecar never asked /history although the websocket was silent")

    # -- load --------------------------------------------------------------------------
    def test_100_concurrent_requests(self):
        n = 100
        reqs = []
        for i in range(n):
            w, h = 8 + i, 8 + (i * 7) % 41
            reqs.append(("conc-%03d" % i, w, h,
                         graphs.empty_image(w, h, color=i * 2551, prefix="c")))

        def one(item):
            rid, w, h, g = item
            return item, self.sc.post_prompt({"id": rid, "prompt": g}, timeout=90)

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
            results = list(ex.map(one, reqs))
        bad = [(it[0], r.status, r.data[:200]) for it, r in results if r.status != 200]
        self.assertEqual(bad, [], "%d of %d requests failed" % (len(bad), n))
        for (rid, w, h, _), r in results:
            self.assertEqual(r.json.get("id"), rid)
            self.assertEqual(len(r.json["images"]), 1, (rid, r.json.get("filenames")))
            _, size = decode_image(self, r.json["images"][0])
            self.assertEqual(size, (w, h), "request %s got an image of another request" % rid)
            self.assertTrue(r.json["filenames"][0].startswith(rid + "_c_"), r.json["filenames"])
        self.assertEqual(self.sc.emu_state().get("pending"), [])


class OutputDirTests(SidecarTestCase):
    """The fast path: with OUTPUT_DIR the emulator's output folder (the
    harness's default layout), outputs are read from disk, not /view."""

    def test_outputs_read_from_disk_without_view(self):
        sc = self.new_sidecar("outdir")
        r = sc.post_prompt({"id": "disk-1", "prompt": graphs.empty_image(40, 30, prefix="disk")})
        self.assertImages(r, [(40, 30)])
        views = [q for q in sc.emu_requests() if q["path"] in ("/view", "/api/view")]
        self.assertEqual(views, [], "outputs were fetched through /view")
        self.assertIn("from OUTPUT_DIR directly", sc.log_text())
        # A file the disk does not have (a temp output) still comes through /view.
        g = graphs.empty_image(20, 10, prefix="x")
        for node in g.values():
            if node["class_type"] == "SaveImage":
                node["class_type"] = "PreviewImage"
                del node["inputs"]["filename_prefix"]
        r = sc.post_prompt({"prompt": g})
        self.assertImages(r, [(20, 10)])
        views = [q for q in sc.emu_requests() if q["path"] in ("/view", "/api/view")]
        self.assertEqual(len(views), 1, views)
        sc.stop(expect_code=0)
