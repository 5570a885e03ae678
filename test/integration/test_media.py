"""Media inputs and outputs (issue 8), against the emulator and a download server on
loopback (mediaserver.py):

- LoadImage / LoadImageMask `image` given as base64, as a data: URL or as an http(s) URL is
  uploaded to ComfyUI with POST /upload/image (subfolder sidecar, overwrite true) and the
  node is rewritten to sidecar/<request id>_<node id>_<random>.<sniffed ext>; a plain file
  name passes through; the uploaded file is gone from the input folder after the answer.
- Refusals: not an image, too large, download failures and time-outs, too many redirects,
  unsupported schemes, and forgery targets (loopback, private, link-local, 169.254.169.254
  always, also behind a redirect or a numeric host form) -> 400 at prompt.<node>.inputs.image,
  before anything reaches ComfyUI.
- convert_output to jpeg/jpg/webp/png with each format's options, checked by decoding.
- Outputs that are not PNG images (animated WebP, GIF, WAV, text) are returned, not dropped.
- GET /models.

Run: /usr/bin/python3 test/pyrunner.py test/integration --name integration -k Media
"""
import base64
import hashlib
import io
import json
import os
import random
import re
import socket
import uuid
import wave

from PIL import Image, ImageOps, JpegImagePlugin

import harness
from harness import SidecarTestCase
from mediaserver import MediaServer

REPO = harness.REPO
WORKFLOW_DIR = os.path.join(REPO, "comfy-workflows")
ACCEPTED = ("PNG", "JPEG", "WebP", "GIF", "BMP")
FORBIDDEN_RE = (r"(?i)(forbidden|not allowed|disallowed|private|loopback|link-local|"
                r"blocked|reserved|internal|metadata)")
# numeric host forms (2130706433, 0x7f000001, 127.1): refusing them as forbidden or as
# invalid hosts are both safe; downloading them is not
ODD_HOST_RE = FORBIDDEN_RE[:-1] + r"|invalid|malformed|bad host|bad url|unsupported)"
EXT_RE = {"png": r"png", "jpeg": r"jpe?g", "webp": r"webp", "gif": r"gif", "bmp": r"bmp"}
MODEL_FOLDERS_CKPT = ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"]


def new_id(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:10])


def b64(data):
    return base64.b64encode(data).decode("ascii")


def test_image(w=96, h=64, seed=1):
    """A photo-like RGB image: gradients plus moderate noise (so that JPEG/WebP quality
    matters), deterministic for a seed."""
    rnd = random.Random(seed)
    r = Image.linear_gradient("L").resize((w, h))
    g = Image.linear_gradient("L").rotate(90).resize((w, h))
    noise = Image.frombytes("L", (w, h), bytes(rnd.randrange(256) for _ in range(w * h)))
    b = Image.blend(r, noise, 0.5)
    img = Image.merge("RGB", (Image.blend(r, noise, 0.25), Image.blend(g, noise, 0.3), b))
    img.putpixel((0, 0), (250, 10, 30))
    img.putpixel((w - 1, h - 1), (5, 200, 90))
    return img


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def open_image(data):
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def rgb_bytes(data):
    return open_image(data).convert("RGB").tobytes()


def invert_graph(image, load_id="10", prefix="inv"):
    """LoadImage -> ImageInvert -> SaveImage: the answer is the inverted input at its size."""
    return {load_id: {"class_type": "LoadImage", "inputs": {"image": image}},
            "11": {"class_type": "ImageInvert", "inputs": {"image": [load_id, 0]}},
            "12": {"class_type": "SaveImage",
                   "inputs": {"images": ["11", 0], "filename_prefix": prefix}}}


def free_closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class MediaTestCase(SidecarTestCase):
    """Helpers shared by the classes below; cls.sc and cls.media are set by setUpClass."""

    def answer_images(self, r):
        """The decoded bytes of every entry of the answer's images."""
        self.assertEqual(r.status, 200, r)
        self.assertIsInstance(r.json.get("images"), list, r)
        self.assertIsInstance(r.json.get("filenames"), list, r)
        self.assertEqual(len(r.json["images"]), len(r.json["filenames"]), r.json["filenames"])
        return [base64.b64decode(s, validate=True) for s in r.json["images"]]

    def emu_graph(self, prefix):
        """The graph of the one POST /prompt whose SaveImage prefix is `prefix`."""
        found = [rec for rec in self.sc.emu_prompts()
                 if any((n.get("inputs") or {}).get("filename_prefix") == prefix
                        for n in ((rec.get("body") or {}).get("prompt") or {}).values())]
        self.assertEqual(len(found), 1, "prompts ComfyUI received with prefix %s" % prefix)
        return found[0]["body"]["prompt"]

    def uploads(self):
        return [q for q in self.sc.emu_requests() if q["path"] in ("/upload/image",
                                                                    "/api/upload/image")]

    def n_prompts(self):
        return len(self.sc.emu_prompts())

    def input_path(self, rel):
        return os.path.join(self.sc.dir, "input", rel)

    def assert_uploaded(self, rid, graph, load_id, src, kind, before_uploads):
        """The node was rewritten to sidecar/<rid>_<load_id>_<x>.<ext>, that file was uploaded
        with the documented form fields and exactly the input's bytes, and it is gone from the
        input folder soon after the answer. Returns the rewritten name."""
        name = graph[load_id]["inputs"]["image"]
        self.assertRegex(name, r"^sidecar/%s_%s_[^/]+\.(%s)$" % (
            re.escape(rid), re.escape(load_id), EXT_RE[kind]),
            "LoadImage input ComfyUI received for node %s" % load_id)
        base = name.split("/", 1)[1]
        ups = [u for u in self.uploads()[before_uploads:]
               if (u.get("form") or {}).get("image", {}).get("filename") == base]
        self.assertEqual(len(ups), 1, "uploads of %s: %r" % (base, self.uploads()[before_uploads:]))
        form = ups[0]["form"]
        self.assertEqual(form.get("subfolder"), "sidecar", form)
        self.assertEqual(form.get("type", "input"), "input", form)
        self.assertEqual(form.get("overwrite"), "true", form)
        self.assertEqual(form["image"]["sha256"], hashlib.sha256(src).hexdigest(),
                         "the uploaded bytes are not the input's")
        harness.poll(lambda: not os.path.exists(self.input_path(name)), 5,
                     what="%s to be removed from the input folder" % name)
        return name

    def check_inverted(self, r, src, size):
        raws = self.answer_images(r)
        self.assertEqual(len(raws), 1, r.json.get("filenames"))
        out = open_image(raws[0])
        self.assertEqual(out.format, "PNG")
        self.assertEqual(out.size, size)
        want = ImageOps.invert(open_image(src).convert("RGB"))
        got = out.convert("RGB")
        for xy in ((0, 0), (size[0] - 1, size[1] - 1), (size[0] // 2, size[1] // 3)):
            self.assertEqual(got.getpixel(xy), want.getpixel(xy), "pixel %r" % (xy,))
        self.assertTrue(got.tobytes() == want.tobytes(), "output is not the inverted input")

    def run_accepted(self, value, src, kind, size, load_id="10"):
        """POST the invert graph with `value` as image; check everything about the upload."""
        rid = new_id("in-" + kind)
        n_up = len(self.uploads())
        r = self.sc.post_prompt({"id": rid, "prompt": invert_graph(value, load_id)})
        self.assertEqual(r.status, 200, r)
        self.check_inverted(r, src, size)
        graph = self.emu_graph("%s_inv" % rid)
        self.assert_uploaded(rid, graph, load_id, src, kind, n_up)
        return r

    def assert_refused(self, value, pattern=None, load_id="10", max_time=None, label=""):
        """400 at prompt.<load_id>.inputs.image whose message matches pattern; nothing reached
        ComfyUI (no prompt, no upload). Returns the response."""
        n_p, n_u = self.n_prompts(), len(self.uploads())
        r = self.sc.post_prompt({"id": new_id("bad"), "prompt": invert_graph(value, load_id)},
                                timeout=30)
        err = self.assertError(r, 400, "prompt.%s.inputs.image" % load_id,
                               msg="%s: %r" % (label or value[:100], r))
        if pattern:
            self.assertRegex(err["error"], pattern, "%s: message" % (label or value[:100]))
        if max_time is not None:
            self.assertLess(r.elapsed, max_time, "%s: answered after %.2fs" % (label, r.elapsed))
        self.assertEqual(self.n_prompts(), n_p, "%s: a refused input reached ComfyUI" % label)
        self.assertEqual(len(self.uploads()), n_u, "%s: a refused input was uploaded" % label)
        return r


# ---------------------------------------------------------------------------------------------

class MediaTests(harness.SharedSidecarMixin, MediaTestCase):
    """One sidecar with ALLOW_PRIVATE_URLS=true (the download server is on loopback),
    MAX_INPUT_MB=1 and INPUT_DOWNLOAD_TIMEOUT_S=2."""

    @classmethod
    def make_sidecar(cls):
        sc = harness.Sidecar("media", env={
            "ALLOW_PRIVATE_URLS": "true", "MAX_INPUT_MB": "1", "INPUT_DOWNLOAD_TIMEOUT_S": "2",
            "MAX_BODY_SIZE_MB": "20", "WORKFLOW_DIR": WORKFLOW_DIR, "COMFY_TIMEOUT_S": "20"})
        # files a plain file name may refer to
        for rel, color in (("example.png", (200, 120, 40)), ("sub/x.png", (40, 120, 200))):
            os.makedirs(os.path.dirname(sc.dir + "/input/" + rel), exist_ok=True)
            Image.new("RGB", (30, 20), color).save(os.path.join(sc.dir, "input", rel))
        return sc

    @classmethod
    def setUpClass(cls):
        cls.media = MediaServer().start()
        try:
            super().setUpClass()
        except BaseException:
            cls.media.stop()
            raise
        cls.img = test_image(96, 64)
        cls.png = encode(cls.img, "PNG")
        cls.media.add("in.png", cls.png, "image/png")

    @classmethod
    def tearDownClass(cls):
        cls.media.stop()
        super().tearDownClass()

    # -- accepted inputs ----------------------------------------------------------------
    def test_base64_png_and_jpeg(self):
        with self.soft("png"):
            self.run_accepted(b64(self.png), self.png, "png", (96, 64))
        jpg = encode(self.img, "JPEG", quality=90)
        with self.soft("jpeg"):
            self.run_accepted(b64(jpg), jpg, "jpeg", (96, 64))

    def test_base64_webp_gif_bmp(self):
        for fmt, kind, kw in (("WEBP", "webp", {"lossless": True}), ("GIF", "gif", {}),
                              ("BMP", "bmp", {})):
            data = encode(test_image(40, 30, seed=3), fmt, **kw)
            with self.soft(kind):
                self.run_accepted(b64(data), data, kind, (40, 30))

    def test_data_url(self):
        with self.soft("data:image/png"):
            self.run_accepted("data:image/png;base64," + b64(self.png), self.png, "png", (96, 64))
        # the extension follows the bytes, not the declared type
        with self.soft("data:image/jpeg holding a PNG"):
            self.run_accepted("data:image/jpeg;base64," + b64(self.png), self.png, "png",
                              (96, 64))
        jpg = encode(self.img, "JPEG", quality=85)
        with self.soft("data:image/jpeg"):
            self.run_accepted("data:image/jpeg;base64," + b64(jpg), jpg, "jpeg", (96, 64))

    def test_url(self):
        with self.soft("plain URL"):
            n = len(self.media.hits("/f/in.png"))
            self.run_accepted(self.media.url("/f/in.png"), self.png, "png", (96, 64))
            self.assertEqual(len(self.media.hits("/f/in.png")), n + 1)
        with self.soft("URL with a query, served as application/octet-stream"):
            jpg = encode(self.img, "JPEG", quality=70)
            self.media.add("blob", jpg, "application/octet-stream")
            self.run_accepted(self.media.url("/f/blob?v=1&w=2"), jpg, "jpeg", (96, 64))
        with self.soft("URL on another node id"):
            self.run_accepted(self.media.url("/f/in.png"), self.png, "png", (96, 64),
                              load_id="load7")

    def test_redirects(self):
        with self.soft("5 redirects: allowed"):
            before = len(self.media.hits("/redirect/"))
            self.run_accepted(self.media.url("/redirect/5/f/in.png"), self.png, "png", (96, 64))
            self.assertEqual(len(self.media.hits("/redirect/")) - before, 6,
                             "5 hops and the file")
        with self.soft("a relative Location"):
            self.run_accepted(self.media.url("/relredirect/f/in.png"), self.png, "png",
                              (96, 64))
        for code in (301, 303, 307, 308):
            with self.soft("a %d redirect" % code):
                self.run_accepted(self.media.url("/to?code=%d&url=%s" % (
                    code, self.media.url("/f/in.png"))), self.png, "png", (96, 64))
        for target in ("file:///etc/passwd", "ftp://127.0.0.1:%d/x.png" % free_closed_port()):
            with self.soft("a redirect to " + target):
                self.assert_refused(self.media.url("/to?url=" + target),
                                    r"(?i)(scheme|protocol)", label="redirect to " + target)
        with self.soft("6 redirects: refused"):
            before = len(self.media.hits("/redirect/"))
            self.assert_refused(self.media.url("/redirect/6/f/in.png"), r"(?i)redirect",
                                label="6 redirects")
            self.assertLessEqual(len(self.media.hits("/redirect/")) - before, 6,
                                 "followed more than 5 redirects")

    def test_concurrent_requests_with_the_same_input(self):
        import concurrent.futures
        value = b64(self.png)

        def one(k):
            rid = new_id("cc%d" % k)
            return rid, self.sc.post_prompt({"id": rid, "prompt": invert_graph(value)})
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            results = list(ex.map(one, range(4)))
        names = set()
        for rid, r in results:
            with self.soft(rid):
                self.check_inverted(r, self.png, (96, 64))
                name = self.emu_graph("%s_inv" % rid)["10"]["inputs"]["image"]
                self.assertRegex(name, r"^sidecar/%s_10_[^/]+\.png$" % re.escape(rid))
                names.add(name)
                harness.poll(lambda: not os.path.exists(self.input_path(name)), 5,
                             what="%s removed" % name)
        self.assertEqual(len(names), 4)

    def test_plain_file_names_pass_through(self):
        n_up = len(self.uploads())
        for name, color in (("example.png", (200, 120, 40)), ("sub/x.png", (40, 120, 200))):
            with self.soft(name):
                rid = new_id("name")
                g = invert_graph(name)
                r = self.sc.post_prompt({"id": rid, "prompt": g})
                raws = self.answer_images(r)
                self.assertEqual(len(raws), 1)
                im = open_image(raws[0]).convert("RGB")
                self.assertEqual(im.size, (30, 20))
                self.assertEqual(im.getpixel((3, 3)), tuple(255 - c for c in color))
                self.assertEqual(self.emu_graph("%s_inv" % rid)["10"]["inputs"]["image"], name)
        with self.soft("no upload for file names"):
            self.assertEqual(self.uploads()[n_up:], [])
        with self.soft("still on disk"):
            self.assertTrue(os.path.isfile(self.input_path("example.png")))
        with self.soft("a missing file is ComfyUI's validation error"):
            r = self.sc.post_prompt({"id": new_id("missing"),
                                     "prompt": invert_graph("missing.png")})
            self.assertError(r, 400)
            self.assertEqual(self.uploads()[n_up:], [])

    def test_two_loaders_and_load_image_mask(self):
        """LoadImage (base64) and LoadImageMask (URL) in one graph: both uploaded under
        their own node ids, the mask's red channel comes back as grey."""
        rid = new_id("two")
        mask_src = encode(test_image(48, 32, seed=9), "PNG")
        self.media.add("mask.png", mask_src, "image/png")
        g = {"20": {"class_type": "LoadImage", "inputs": {"image": b64(self.png)}},
             "21": {"class_type": "ImageInvert", "inputs": {"image": ["20", 0]}},
             "22": {"class_type": "SaveImage",
                    "inputs": {"images": ["21", 0], "filename_prefix": "a"}},
             "30": {"class_type": "LoadImageMask",
                    "inputs": {"image": self.media.url("/f/mask.png"), "channel": "red"}},
             "31": {"class_type": "MaskToImage", "inputs": {"mask": ["30", 0]}},
             "32": {"class_type": "SaveImage",
                    "inputs": {"images": ["31", 0], "filename_prefix": "b"}}}
        n_up = len(self.uploads())
        r = self.sc.post_prompt({"id": rid, "prompt": g})
        raws = self.answer_images(r)
        self.assertEqual(sorted(open_image(x).size for x in raws), [(48, 32), (96, 64)])
        graph = self.emu_graph("%s_a" % rid)
        a = self.assert_uploaded(rid, graph, "20", self.png, "png", n_up)
        b = self.assert_uploaded(rid, graph, "30", mask_src, "png", n_up)
        self.assertNotEqual(a, b)
        self.assertEqual(graph["30"]["inputs"]["channel"], "red")
        mask = next(open_image(x) for x in raws if open_image(x).size == (48, 32))
        red = open_image(mask_src).convert("RGB").getchannel("R")
        self.assertTrue(mask.convert("L").tobytes() == red.tobytes(),
                        "mask output is not the red channel of the input")

    # -- refusals ---------------------------------------------------------------------
    def test_wrong_type(self):
        types_re = r"(?is)%s" % "".join("(?=.*%s)" % t for t in ACCEPTED)
        text = b"hello, this is a text file and not an image at all\n" * 4
        tiff = encode(test_image(16, 16), "TIFF")
        cases = [
            ("data: text/plain", "data:text/plain;base64," + b64(text)),
            ("data: image/png with random bytes", "data:image/png;base64," + b64(os.urandom(300))),
            ("data: TIFF", "data:image/tiff;base64," + b64(tiff)),
            ("URL serving text", self.media.add("t.txt", text, "text/plain")),
            ("URL serving random bytes as image/png",
             self.media.add("r.png", os.urandom(500), "image/png")),
        ]
        for label, value in cases:
            with self.soft(label):
                self.assert_refused(value, types_re, label=label)
        with self.soft("bad base64 in a data: URL"):
            self.assert_refused("data:image/png;base64,!!!not base64!!!", label="bad base64")

    def test_oversized(self):
        big = Image.frombytes("RGB", (1024, 700), os.urandom(1024 * 700 * 3))
        data = encode(big, "PNG", compress_level=0)
        self.assertGreater(len(data), 2 * 1024 * 1024)
        size_re = r"(?i)(too large|too big|size|exceed|limit|MB|bytes)"
        with self.soft("base64"):
            self.assert_refused(b64(data), size_re, label="2 MB base64")
        with self.soft("data: URL"):
            self.assert_refused("data:image/png;base64," + b64(data), size_re,
                                label="2 MB data: URL")
        with self.soft("URL with Content-Length"):
            self.assert_refused(self.media.url("/big/%d" % (3 * 1024 * 1024)), size_re,
                                max_time=5, label="3 MB download")
        with self.soft("URL without Content-Length (chunked)"):
            self.assert_refused(self.media.url("/bigchunked/%d" % (50 * 1024 * 1024)),
                                size_re, max_time=5, label="50 MB chunked download")
        with self.soft("a 1 MB - 1 KB image is accepted"):
            small = encode(Image.frombytes("RGB", (500, 600), os.urandom(500 * 600 * 3)),
                           "PNG", compress_level=0)
            self.assertLess(len(small), 1024 * 1024)
            self.run_accepted(b64(small), small, "png", (500, 600))

    def test_download_failures(self):
        for label, path, pat in (("404", "/status/404", r"404"), ("500", "/status/500", r"500"),
                                 ("missing file", "/f/nope.png", r"404")):
            with self.soft(label):
                self.assert_refused(self.media.url(path), pat, label=label)
        with self.soft("connection refused"):
            self.assert_refused("http://127.0.0.1:%d/x.png" % free_closed_port(),
                                max_time=5, label="connection refused")
        with self.soft("no answer within INPUT_DOWNLOAD_TIMEOUT_S=2"):
            r = self.assert_refused(self.media.url("/slow/8/f/in.png"), r"(?i)tim",
                                    max_time=6, label="slow server")
            self.assertGreater(r.elapsed, 1.5)
        with self.soft("a body that never ends is cut at the timeout"):
            r = self.assert_refused(self.media.url("/trickle/20"), r"(?i)tim", max_time=6,
                                    label="trickling server")
            self.assertGreater(r.elapsed, 1.5)

    def test_unsupported_schemes(self):
        for value in ("file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/x",
                      "s3://bucket/x.png", "FILE:///etc/passwd"):
            with self.soft(value):
                self.assert_refused(value, r"(?i)scheme", label=value)
        with self.soft("http:// without a host"):
            self.assert_refused("http:///x.png", label="no host")

    def test_metadata_address_refused_even_when_private_allowed(self):
        for url, pat in (("http://169.254.169.254/latest/meta-data", FORBIDDEN_RE),
                         ("http://169.254.169.254:80/latest/meta-data/iam/", FORBIDDEN_RE),
                         ("https://169.254.169.254/", FORBIDDEN_RE),
                         ("http://[::ffff:169.254.169.254]/latest/meta-data", ODD_HOST_RE),
                         ("http://2852039166/latest/meta-data", ODD_HOST_RE),  # as a number
                         ("http://0xA9FEA9FE/latest/meta-data", ODD_HOST_RE)):  # in hex
            with self.soft(url):
                self.assert_refused(url, pat, max_time=1.5, label=url)

    def test_redirect_to_metadata_address_refused(self):
        for target in ("http://169.254.169.254/latest/meta-data",
                       "http://2852039166/latest/meta-data"):
            with self.soft(target):
                hop = "/to?url=" + target
                n = len(self.media.hits("/to?"))
                pat = FORBIDDEN_RE if "169.254" in target else ODD_HOST_RE
                self.assert_refused(self.media.url(hop), pat, max_time=1.5,
                                    label="redirect to " + target)
                self.assertEqual(len(self.media.hits("/to?")), n + 1,
                                 "the media server did not see the first hop")

    # -- cleanup on failure -----------------------------------------------------------
    def test_cleanup_after_failed_jobs(self):
        with self.soft("runtime error"):
            rid = new_id("rt")
            n_up = len(self.uploads())
            self.sc.emu_fault(mode="runtime_error", class_type="ImageInvert")
            r = self.sc.post_prompt({"id": rid, "prompt": invert_graph(b64(self.png))})
            self.assertGreaterEqual(r.status, 400, r)
            self.assert_uploaded(rid, self.emu_graph("%s_inv" % rid), "10", self.png, "png", n_up)
        with self.soft("ComfyUI validation error"):
            rid = new_id("val")
            n_up = len(self.uploads())
            g = invert_graph(self.media.url("/f/in.png"))
            g["13"] = {"class_type": "ImageScale", "inputs": {
                "image": ["11", 0], "upscale_method": "no-such-method", "width": 8,
                "height": 8, "crop": "disabled"}}
            g["12"]["inputs"]["images"] = ["13", 0]     # the only output fails validation
            r = self.sc.post_prompt({"id": rid, "prompt": g})
            self.assertError(r, 400)
            self.assert_uploaded(rid, self.emu_graph("%s_inv" % rid), "10", self.png, "png", n_up)

    # -- sdxl/img2img -------------------------------------------------------------------
    def img2img(self, image, convert=None):
        rid = new_id("i2i")
        body = {"id": rid, "input": {"prompt": "a watercolor", "image": image, "steps": 2,
                                     "target_width": 256, "target_height": 320}}
        if convert:
            body["convert_output"] = convert
        n_up = len(self.uploads())
        r = self.sc.req("POST", "/workflow/sdxl/img2img", body=body, timeout=60)
        self.assertEqual(r.status, 200, r)
        raws = self.answer_images(r)
        self.assertEqual(len(raws), 1)
        graph = self.emu_graph("%s_img2img" % rid)
        self.assertEqual(graph["40"]["inputs"]["width"], 256)
        return rid, r, raws[0], graph, n_up

    def test_img2img_url_and_base64(self):
        with self.soft("URL"):
            rid, r, raw, graph, n_up = self.img2img(self.media.url("/f/in.png"))
            self.assertEqual(open_image(raw).size, (256, 320))
            self.assert_uploaded(rid, graph, "38", self.png, "png", n_up)
        jpg = encode(self.img, "JPEG", quality=90)
        with self.soft("base64"):
            rid, r, raw, graph, n_up = self.img2img(b64(jpg))
            self.assertEqual(open_image(raw).size, (256, 320))
            self.assert_uploaded(rid, graph, "38", jpg, "jpeg", n_up)
        with self.soft("data: URL with convert_output webp"):
            rid, r, raw, graph, n_up = self.img2img("data:image/png;base64," + b64(self.png),
                                                    {"format": "webp",
                                                     "options": {"quality": 60}})
            im = open_image(raw)
            self.assertEqual((im.format, im.size), ("WEBP", (256, 320)))
            self.assertRegex(r.json["filenames"][0], r"\.webp$")
            self.assert_uploaded(rid, graph, "38", self.png, "png", n_up)
        with self.soft("a forbidden URL is refused before ComfyUI"):
            n_p, n_u = self.n_prompts(), len(self.uploads())
            r = self.sc.req("POST", "/workflow/sdxl/img2img", body={
                "input": {"prompt": "p", "image": "http://169.254.169.254/latest/meta-data"}})
            self.assertError(r, 400)
            self.assertRegex(r.json["error"], FORBIDDEN_RE)
            self.assertEqual((self.n_prompts(), len(self.uploads())), (n_p, n_u))
        with self.soft("file name"):
            rid, r, raw, graph, n_up = self.img2img("example.png")
            self.assertEqual(graph["38"]["inputs"]["image"], "example.png")
            self.assertEqual(self.uploads()[n_up:], [])

    # -- convert_output ---------------------------------------------------------------
    def convert(self, fmt, options=None, img=None, prefix="conv"):
        """POST the invert graph with a base64 input and convert_output; returns (answer
        bytes, filename, response). The expected pixels are the inverted input."""
        rid = new_id("cv")
        co = {"format": fmt}
        if options is not None:
            co["options"] = options
        src = encode(img or self.conv_img, "PNG")
        r = self.sc.post_prompt({"id": rid, "prompt": invert_graph(b64(src), prefix=prefix),
                                 "convert_output": co})
        raws = self.answer_images(r)
        self.assertEqual(len(raws), 1, r.json.get("filenames"))
        return raws[0], r.json["filenames"][0], r

    @property
    def conv_img(self):
        return test_image(256, 192, seed=5)

    def conv_expected(self):
        return ImageOps.invert(self.conv_img).tobytes()

    def test_convert_jpeg(self):
        sizes = {}
        for q in (10, 95):
            with self.soft("quality %d" % q):
                raw, fn, r = self.convert("jpeg", {"quality": q})
                im = open_image(raw)
                self.assertEqual((im.format, im.size), ("JPEG", (256, 192)))
                self.assertRegex(fn, r"_conv_\d{5}_\.jpeg$")
                sizes[q] = len(raw)
                outs = r.json.get("outputs")
                if isinstance(outs, list) and outs:
                    self.assertEqual(outs[0].get("mime"), "image/jpeg", outs)
        with self.soft("quality 10 is much smaller than 95"):
            self.assertLess(sizes[10] * 2, sizes[95], sizes)
        with self.soft("default quality 80 lies between"):
            raw, fn, _ = self.convert("jpeg")
            self.assertTrue(sizes[10] < len(raw) < sizes[95], (len(raw), sizes))
        with self.soft("jpg: .jpg"):
            raw, fn, _ = self.convert("jpg", {"quality": 90})
            self.assertEqual(open_image(raw).format, "JPEG")
            self.assertRegex(fn, r"_conv_\d{5}_\.jpg$")
        with self.soft("progressive"):
            base = open_image(self.convert("jpeg", {"quality": 80})[0])
            prog = open_image(self.convert("jpeg", {"quality": 80, "progressive": True})[0])
            self.assertFalse(base.info.get("progressive") or base.info.get("progression"))
            self.assertTrue(prog.info.get("progressive") or prog.info.get("progression"),
                            "progressive: true gave a baseline JPEG")
        with self.soft("chromaSubsampling"):
            d = open_image(self.convert("jpeg", {"quality": 90})[0])
            full = open_image(self.convert("jpeg", {"quality": 90,
                                                    "chromaSubsampling": "4:4:4"})[0])
            self.assertEqual(JpegImagePlugin.get_sampling(d), 2, "default is 4:2:0")
            self.assertEqual(JpegImagePlugin.get_sampling(full), 0, "4:4:4 asked")
        with self.soft("optimizeCoding"):
            opt = self.convert("jpeg", {"quality": 90, "optimizeCoding": True})[0]
            plain = self.convert("jpeg", {"quality": 90, "optimizeCoding": False})[0]
            self.assertLess(len(opt), len(plain), "optimized Huffman tables are not smaller")
        with self.soft("every JPEG option accepted"):
            raw, fn, _ = self.convert("jpeg", {
                "quality": 75, "progressive": True, "chromaSubsampling": "4:4:4",
                "optimizeCoding": True, "mozjpeg": False, "trellisQuantisation": True,
                "overshootDeringing": True, "optimizeScans": True, "quantisationTable": 3})
            self.assertEqual(open_image(raw).size, (256, 192))

    def test_convert_webp(self):
        want = self.conv_expected()
        with self.soft("lossless: pixel-identical"):
            raw, fn, r = self.convert("webp", {"lossless": True})
            im = open_image(raw)
            self.assertEqual((im.format, im.size), ("WEBP", (256, 192)))
            self.assertRegex(fn, r"_conv_\d{5}_\.webp$")
            self.assertIn(b"VP8L", raw[:64], "lossless: true did not give a VP8L bitstream")
            self.assertTrue(im.convert("RGB").tobytes() == want,
                            "lossless WebP is not pixel-identical to the PNG output")
            outs = r.json.get("outputs")
            if isinstance(outs, list) and outs:
                self.assertEqual(outs[0].get("mime"), "image/webp", outs)
        sizes = {}
        for q in (10, 95):
            with self.soft("lossy quality %d" % q):
                raw, fn, _ = self.convert("webp", {"quality": q})
                im = open_image(raw)
                self.assertEqual((im.format, im.size), ("WEBP", (256, 192)))
                self.assertNotIn(b"VP8L", raw[:64])
                self.assertFalse(im.convert("RGB").tobytes() == want, "lossy but identical")
                sizes[q] = len(raw)
        with self.soft("quality 10 is much smaller than 95"):
            self.assertLess(sizes[10] * 2, sizes[95], sizes)
        with self.soft("lossless differs in size from the default lossy"):
            lossy = self.convert("webp")[0]
            lossless = self.convert("webp", {"lossless": True, "quality": 80})[0]
            self.assertNotEqual(len(lossy), len(lossless))
        with self.soft("nearLossless uses the lossless coder"):
            raw = self.convert("webp", {"nearLossless": True, "quality": 60})[0]
            self.assertIn(b"VP8L", raw[:64], "nearLossless: true ignored")
        with self.soft("effort changes the encoding"):
            e0 = self.convert("webp", {"quality": 80, "effort": 0})[0]
            e6 = self.convert("webp", {"quality": 80, "effort": 6})[0]
            self.assertNotEqual(e0, e6, "effort 0 and 6 gave the same file")
        with self.soft("every WebP option accepted"):
            raw, fn, _ = self.convert("webp", {
                "quality": 70, "alphaQuality": 50, "lossless": False, "nearLossless": False,
                "smartSubsample": True, "preset": "photo", "effort": 3})
            self.assertEqual(open_image(raw).format, "WEBP")

    def test_convert_png(self):
        smooth = Image.merge("RGB", (Image.linear_gradient("L").resize((256, 192)),) * 3)
        want = ImageOps.invert(smooth).tobytes()
        raws = {}
        for lvl in (0, 9):
            with self.soft("compressionLevel %d" % lvl):
                raw, fn, _ = self.convert("png", {"compressionLevel": lvl}, img=smooth)
                im = open_image(raw)
                self.assertEqual((im.format, im.size), ("PNG", (256, 192)))
                self.assertRegex(fn, r"_conv_\d{5}_\.png$")
                self.assertTrue(im.convert("RGB").tobytes() == want)
                raws[lvl] = raw
        with self.soft("level 0 is bigger than level 9"):
            self.assertGreater(len(raws[0]), len(raws[9]) * 3,
                               {k: len(v) for k, v in raws.items()})

    def test_convert_output_refused(self):
        cases = [
            ("jpeg", "convert_output"),
            ({"format": "gif"}, "convert_output.format"),
            ({"options": {"quality": 80}}, "convert_output.format"),
            ({"format": 5}, "convert_output.format"),
            ({"format": "JPEG2000"}, "convert_output.format"),
            ({"format": "jpeg", "options": {"quality": 50.5}}, "convert_output.options.quality"),
            ({"format": "jpeg", "options": "high"}, "convert_output.options"),
            ({"format": "jpeg", "options": {"lossless": True}}, "convert_output.options.lossless"),
            ({"format": "jpeg", "options": {"effort": 4}}, "convert_output.options.effort"),
            ({"format": "jpeg", "options": {"foo": 1}}, "convert_output.options.foo"),
            ({"format": "webp", "options": {"progressive": True}},
             "convert_output.options.progressive"),
            ({"format": "webp", "options": {"compressionLevel": 5}},
             "convert_output.options.compressionLevel"),
            ({"format": "png", "options": {"quality": 80}}, "convert_output.options.quality"),
            ({"format": "jpeg", "options": {"quality": 0}}, "convert_output.options.quality"),
            ({"format": "jpeg", "options": {"quality": 101}}, "convert_output.options.quality"),
            ({"format": "jpeg", "options": {"quality": "80"}}, "convert_output.options.quality"),
            ({"format": "jpeg", "options": {"progressive": "yes"}},
             "convert_output.options.progressive"),
            ({"format": "jpeg", "options": {"chromaSubsampling": "4:1:1"}},
             "convert_output.options.chromaSubsampling"),
            ({"format": "jpeg", "options": {"quantisationTable": 9}},
             "convert_output.options.quantisationTable"),
            ({"format": "webp", "options": {"quality": 0}}, "convert_output.options.quality"),
            ({"format": "webp", "options": {"effort": 7}}, "convert_output.options.effort"),
            ({"format": "webp", "options": {"preset": "foo"}}, "convert_output.options.preset"),
            ({"format": "webp", "options": {"alphaQuality": 101}},
             "convert_output.options.alphaQuality"),
            ({"format": "png", "options": {"compressionLevel": 10}},
             "convert_output.options.compressionLevel"),
        ]
        n = self.n_prompts()
        for co, loc in cases:
            with self.soft(json.dumps(co)):
                r = self.sc.post_prompt({"prompt": invert_graph("example.png"),
                                         "convert_output": co})
                self.assertError(r, 400)
                if co == "jpeg":     # not an object: either place is right
                    self.assertIn(r.json.get("location"), (loc, loc + ".format"), r)
                else:
                    self.assertEqual(r.json.get("location"), loc, r)
        with self.soft("nothing reached ComfyUI"):
            self.assertEqual(self.n_prompts(), n)

    # -- outputs that are not PNG images ---------------------------------------------
    def test_non_png_outputs(self):
        rid = new_id("media-out")
        text = "hello from the graph"
        g = {"1": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": MODEL_FOLDERS_CKPT[0]}},
             "2": {"class_type": "EmptyLatentImage",
                   "inputs": {"width": 48, "height": 32, "batch_size": 3}},
             "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
             "4": {"class_type": "SaveAnimatedWEBP", "inputs": {
                 "images": ["3", 0], "filename_prefix": "anim", "fps": 4.0, "lossless": True,
                 "quality": 80, "method": "default"}},
             "5": {"class_type": "VHS_VideoCombine", "inputs": {
                 "images": ["3", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": "clip",
                 "format": "image/gif", "pingpong": False, "save_output": True}},
             "6": {"class_type": "EmulatorSineAudio",
                   "inputs": {"duration": 0.25, "sample_rate": 8000, "frequency": 440.0}},
             "7": {"class_type": "SaveAudio",
                   "inputs": {"audio": ["6", 0], "filename_prefix": "audio/snd"}},
             "8": {"class_type": "PreviewAny", "inputs": {"source": text}},
             "9": {"class_type": "SaveImage",
                   "inputs": {"images": ["3", 0], "filename_prefix": "still"}},
             "10": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
        r = self.sc.post_prompt({"id": rid, "prompt": g})
        raws = self.answer_images(r)
        body = r.json
        outs = body.get("outputs")
        self.assertIsInstance(outs, list, "no outputs list in the answer: %r" % list(body))
        self.assertEqual(len(outs), len(raws), outs)
        by_node = {}
        for o, raw, fn in zip(outs, raws, body["filenames"]):
            self.assertIsInstance(o, dict, outs)
            by_node.setdefault(str(o.get("node")), []).append((o, raw, fn))
        with self.soft("nodes"):
            self.assertEqual(sorted(by_node), ["10", "4", "5", "7", "9"], outs)
            self.assertEqual([len(v) for _, v in sorted(by_node.items())], [3, 1, 1, 1, 3],
                             outs)
        with self.soft("animated WebP"):
            o, raw, fn = by_node["4"][0]
            self.assertEqual((o.get("kind"), o.get("mime"), o.get("type"), o.get("subfolder")),
                             ("images", "image/webp", "output", ""), o)
            self.assertRegex(o.get("filename", ""), r"%s_anim_\d{5}_\.webp$" % re.escape(rid))
            self.assertRegex(fn, r"\.webp$")
            im = open_image(raw)
            self.assertEqual((im.format, im.size, getattr(im, "n_frames", 1)),
                             ("WEBP", (48, 32), 3))
        with self.soft("GIF"):
            o, raw, fn = by_node["5"][0]
            self.assertEqual((o.get("kind"), o.get("mime"), o.get("type")),
                             ("gifs", "image/gif", "output"), o)
            self.assertRegex(o.get("filename", ""), r"%s_clip_\d{5}\.gif$" % re.escape(rid))
            self.assertRegex(fn, r"\.gif$")
            im = open_image(raw)
            self.assertEqual((im.format, im.size, im.n_frames), ("GIF", (48, 32), 3))
        with self.soft("WAV"):
            o, raw, fn = by_node["7"][0]
            self.assertEqual((o.get("kind"), o.get("type"), o.get("subfolder")),
                             ("audio", "output", "audio"), o)
            self.assertIn(o.get("mime"), ("audio/wav", "audio/x-wav", "audio/wave",
                                          "audio/vnd.wave"), o)
            self.assertRegex(o.get("filename", ""), r"%s_snd_\d{5}_\.wav$" % re.escape(rid))
            self.assertRegex(fn, r"\.wav$")
            with wave.open(io.BytesIO(raw), "rb") as w:
                self.assertEqual((w.getnchannels(), w.getframerate(), w.getnframes()),
                                 (1, 8000, 2000))
        with self.soft("PNG stills"):
            for o, raw, fn in by_node.get("9", []):
                self.assertEqual((o.get("kind"), o.get("mime")), ("images", "image/png"), o)
                self.assertEqual(open_image(raw).size, (48, 32))
        with self.soft("PreviewImage: temp PNGs"):
            for o, raw, fn in by_node.get("10", []):
                self.assertEqual((o.get("kind"), o.get("mime"), o.get("type")),
                                 ("images", "image/png", "temp"), o)
                self.assertEqual(open_image(raw).size, (48, 32))
        with self.soft("VHS's first-frame PNG is not an output"):
            self.assertFalse([f for f in body["filenames"] if re.search(r"clip_\d{5}\.png$", f)],
                             body["filenames"])
        with self.soft("text"):
            self.assertEqual(body.get("texts"), {"8": [text]})

    def test_convert_output_leaves_non_images_alone(self):
        """Contract 5.3: conversion applies to images; other outputs pass through unchanged."""
        rid = new_id("cv-audio")
        g = {"6": {"class_type": "EmulatorSineAudio",
                   "inputs": {"duration": 0.25, "sample_rate": 8000, "frequency": 440.0}},
             "7": {"class_type": "SaveAudio",
                   "inputs": {"audio": ["6", 0], "filename_prefix": "snd"}},
             "1": {"class_type": "EmptyImage",
                   "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": 0x336699}},
             "2": {"class_type": "SaveImage",
                   "inputs": {"images": ["1", 0], "filename_prefix": "img"}}}
        r = self.sc.post_prompt({"id": rid, "prompt": g,
                                 "convert_output": {"format": "jpeg"}})
        raws = self.answer_images(r)
        self.assertEqual(len(raws), 2, r.json.get("filenames"))
        fns = r.json["filenames"]
        wav = [raw for raw, fn in zip(raws, fns) if fn.endswith(".wav")]
        jpg = [raw for raw, fn in zip(raws, fns) if fn.endswith(".jpeg")]
        self.assertEqual((len(wav), len(jpg)), (1, 1), fns)
        with wave.open(io.BytesIO(wav[0]), "rb") as w:
            self.assertEqual(w.getnframes(), 2000)
        self.assertEqual(open_image(jpg[0]).format, "JPEG")

    # -- GET /models --------------------------------------------------------------------
    def test_models(self):
        r = self.sc.get("/models")
        self.assertEqual(r.status, 200, r)
        self.assertIn("application/json", r.headers.get("content-type", ""))
        folders = self.sc.emu("GET", "/models").json
        self.assertIsInstance(r.json, dict, r)
        self.assertEqual(sorted(r.json), sorted(folders))
        self.assertEqual(r.json["checkpoints"], MODEL_FOLDERS_CKPT)
        for k, v in r.json.items():
            if k != "checkpoints":
                self.assertEqual(v, [], k)


class ForgeryTests(harness.SharedSidecarMixin, MediaTestCase):
    """ALLOW_PRIVATE_URLS=false: every loopback/private/link-local target is refused before
    any connection (the media servers on 127.0.0.1 and ::1 must see nothing)."""

    @classmethod
    def make_sidecar(cls):
        return harness.Sidecar("forgery", env={"ALLOW_PRIVATE_URLS": "false",
                                               "INPUT_DOWNLOAD_TIMEOUT_S": "2"})

    @classmethod
    def setUpClass(cls):
        cls.media = MediaServer("127.0.0.1").start()
        cls.media6 = MediaServer("::1").start()
        try:
            super().setUpClass()
        except BaseException:
            cls.media.stop()
            cls.media6.stop()
            raise
        cls.png = encode(test_image(32, 24), "PNG")
        cls.media.add("x.png", cls.png, "image/png")
        cls.media6.add("x.png", cls.png, "image/png")

    @classmethod
    def tearDownClass(cls):
        cls.media.stop()
        cls.media6.stop()
        super().tearDownClass()

    def test_private_targets_refused(self):
        p, p6 = self.media.port, self.media6.port
        odd = [
            "http://127.1:%d/f/x.png" % p,                   # short numeric forms
            "http://2130706433:%d/f/x.png" % p,
            "http://0x7f000001:%d/f/x.png" % p,
            "http://[::ffff:127.0.0.1]:%d/f/x.png" % p,      # IPv4-mapped IPv6
        ]
        for url in odd:
            with self.soft(url):
                self.assert_refused(url, ODD_HOST_RE, max_time=1.5, label=url)
        # URL parser differentials: whatever the sidecar makes of these, it must not
        # connect to the loopback server (the hits check below)
        tricky = [
            "http:///127.0.0.1:%d/f/x.png" % p,
            "http://example.com@127.0.0.1:%d/f/x.png" % p,
            "http://127.0.0.1:%d#@example.com/f/x.png" % p,
            "http://127.0.0.1:%d\\@example.com/f/x.png" % p,
            "HTTP://127.0.0.1:%d/f/x.png" % p,
            "http://127.0.0.1:%d%%2f@example.com/f/x.png" % p,
        ]
        for url in tricky:
            with self.soft(url):
                r = self.sc.post_prompt({"prompt": invert_graph(url)}, timeout=30)
                self.assertEqual(r.status, 400, "%s: %r" % (url, r))
        urls = [
            "http://127.0.0.1:%d/f/x.png" % p,
            "http://localhost:%d/f/x.png" % p,               # a name resolving to loopback
            "http://LocalHost:%d/f/x.png" % p,
            "http://127.0.0.2:%d/f/x.png" % p,
            "http://[::1]:%d/f/x.png" % p6,
            "http://0.0.0.0:%d/f/x.png" % p,
            "http://user:pw@127.0.0.1:%d/f/x.png" % p,
            "https://127.0.0.1:%d/f/x.png" % p,
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.1.1/x.png",
            "http://[fe80::1]/x.png",
            "http://10.1.2.3/x.png",
            "http://172.16.0.1/x.png",
            "http://172.31.255.254/x.png",
            "http://192.168.1.1/x.png",
            "http://100.64.0.1/x.png",
            "http://224.0.0.1/x.png",
            "http://[fc00::1]/x.png",
            "http://[fd12:3456::1]/x.png",
        ]
        for url in urls:
            with self.soft(url):
                self.assert_refused(url, FORBIDDEN_RE, max_time=1.5, label=url)
        with self.soft("no connection reached the loopback servers"):
            self.assertEqual(self.media.hits(), [])
            self.assertEqual(self.media6.hits(), [])

    def test_inline_inputs_still_work(self):
        """base64 and data: URLs need no network: accepted with ALLOW_PRIVATE_URLS=false."""
        with self.soft("base64"):
            self.run_accepted(b64(self.png), self.png, "png", (32, 24))
        with self.soft("data: URL"):
            self.run_accepted("data:image/png;base64," + b64(self.png), self.png, "png",
                              (32, 24))


class ModelsDownTests(MediaTestCase):
    """GET /models while a supervised ComfyUI restarts: 503 with Retry-After, then 200."""

    def test_models_while_comfyui_restarts(self):
        sc = self.new_sidecar("models-down", emu_args=["--startup-delay", "1.5"],
                              env={"ALWAYS_RESTART_COMFYUI": "true",
                                   "STARTUP_CHECK_MAX_TRIES": "1000"})
        r = sc.get("/models")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json.get("checkpoints"), MODEL_FOLDERS_CKPT)
        emus = [pid for pid, cmd in harness.find_processes(marker=sc.dir)
                if "comfyui_emulator.py" in cmd]
        self.assertEqual(len(emus), 1, "the supervised emulator's process")
        os.kill(emus[0], 9)
        r = harness.poll(lambda: (lambda x: x if x.status == 503 else None)(sc.get("/models")),
                         5, interval=0.05, what="GET /models 503 while ComfyUI restarts")
        self.assertError(r, 503)
        self.assertIn("retry-after", r.headers)
        r = harness.poll(lambda: (lambda x: x if x.status == 200 else None)(sc.get("/models")),
                         15, interval=0.1, what="GET /models 200 after the restart")
        self.assertEqual(r.json.get("checkpoints"), MODEL_FOLDERS_CKPT)


class RemoteInputCleanupTests(SidecarTestCase):
    """INPUT_DIR is not ComfyUI's input folder (as with a ComfyUI on another
    host): the upload cannot be deleted, so it is overwritten with a 1x1 image
    through /upload/image once the job ends."""

    def test_upload_shrunk_when_not_shared(self):
        sc = self.new_sidecar("remote-input", env={"INPUT_DIR": "/nonexistent-input"})
        g = {"1": {"class_type": "LoadImage", "inputs": {"image": b64(encode(test_image(80, 60), "PNG"))}},
             "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "rm"}}}
        r = sc.post_prompt({"id": "remote-1", "prompt": g})
        self.assertImages(r, [(80, 60)])
        folder = os.path.join(sc.dir, "input", "sidecar")

        def shrunk():
            names = [n for n in os.listdir(folder) if n.startswith("remote-1_")]
            if len(names) != 1:
                return None
            with open(os.path.join(folder, names[0]), "rb") as f:
                data = f.read()
            return data if len(data) < 100 else None

        data = harness.poll(shrunk, 10, what="the upload to be overwritten with a 1x1 image")
        self.assertEqual(Image.open(io.BytesIO(data)).size, (1, 1))
        sc.stop(expect_code=0)
