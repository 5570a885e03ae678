"""Deployment files agree with each other and with the code.

docker/Dockerfile, docker/salad/container-group.json and docker/k8s/*.yaml are
parsed (no Docker engine or cluster needed) and checked against src/config.c
(variable names and defaults), src/api.c (routes, pages served from WEB_DIR),
src/metrics.c (metric names), src/life.c (the shutdown sequence the grace
periods must cover), README.md (documented defaults) and the repository
(copied files exist). The Dockerfile is also run
through two linters installed from npm under test/deploy/node_modules
(`npm ci --prefix test/deploy`), and docker/bundle-runtime.sh is run on the
host's build of the sidecar.

Run: /usr/bin/python3 test/pyrunner.py test/deploy --name deploy
DEPLOY_TEST_ROOT=<tree> checks another copy of the repository.
"""
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("DEPLOY_TEST_ROOT") or os.path.dirname(os.path.dirname(HERE))
NODE_BIN = os.path.join(HERE, "node_modules", ".bin")


def path(*parts):
    return os.path.join(ROOT, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


# Variables set in the deployment files that are not the sidecar's, and why.
NOT_THE_SIDECARS = {
    "PYTHONUNBUFFERED": "Python's own: ComfyUI's log lines reach the sidecar "
                        "as they are written instead of in 4 KiB blocks",
}
# Slack on top of the computed shutdown time (exit, reaping, kubelet timing).
SHUTDOWN_SLACK_S = 5


# --------------------------------------------------------------------------
# The code's side

def config_table():
    """{name: default or None} from the entries table of src/config.c."""
    src = read("src", "config.c")
    table = {}
    for m in re.finditer(r'\{\s*"([A-Z][A-Z0-9_]*)"\s*,\s*CFG_[A-Z]+\s*,\s*'
                         r'(NULL|"((?:[^"\\]|\\.)*)")', src):
        table[m.group(1)] = None if m.group(2) == "NULL" else m.group(3)
    return table


def readme_defaults():
    """{name: default} from README.md's configuration table."""
    out = {}
    for m in re.finditer(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(`([^`]*)`|[^|]*?)\s*\|",
                         read("README.md"), re.M):
        out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2).strip()
    return out


def api_routes():
    """Every string literal in src/api.c that looks like a route."""
    return set(re.findall(r'"(/[A-Za-z0-9_./-]*)"', read("src", "api.c")))


def served_web_dirs():
    """The WEB_DIR subfolders src/api.c serves files from (serve_file calls)."""
    return set(re.findall(r'serve_file\(\s*api\s*,\s*req\s*,\s*"([^"]+)"', read("src", "api.c")))


def metric_families():
    """{name: type} of the families src/metrics.c renders."""
    src = read("src", "metrics.c")
    out = dict(re.findall(r'head\(\s*out\s*,\s*"(comfy_sidecar_[a-z_]+)"\s*,\s*"([a-z]+)"', src))
    for name in re.findall(r'histogram\(\s*out\s*,\s*"(comfy_sidecar_[a-z_]+)"', src):
        out[name] = "histogram"
    return out


def webhook_drain_cap():
    """The cap on the webhooks' last window in src/life.c's stop_step:
    min(cap, WEBHOOK_TIMEOUT_S) seconds after the jobs' grace."""
    m = re.search(r"webhook_timeout_s\s*<\s*(\d+)\s*\?\s*l->cfg->webhook_timeout_s\s*:\s*(\d+)",
                  read("src", "life.c"))
    if not m or m.group(1) != m.group(2):
        raise AssertionError("src/life.c: the webhook drain window of stop_step no longer "
                             "parses; update test/deploy")
    return int(m.group(1))


# --------------------------------------------------------------------------
# Dockerfile

def substitute(value, env):
    def one(m):
        name = m.group(1) or m.group(2)
        return env.get(name, "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                  one, value)


class Dockerfile:
    """Enough of a Dockerfile parser for these checks: stages, ARG, ENV, COPY,
    and the final stage's EXPOSE, USER, HEALTHCHECK, ENTRYPOINT, CMD."""

    def __init__(self, text):
        self.global_args = {}
        self.stages = []
        logical, cur = [], ""
        for line in text.splitlines():
            if re.match(r"\s*#", line):
                continue      # comments, also inside continued instructions
            if line.rstrip().endswith("\\"):
                cur += line.rstrip()[:-1] + " "
                continue
            cur += line
            if cur.strip():
                logical.append(cur.strip())
            cur = ""
        if cur.strip():
            logical.append(cur.strip())
        for instr in logical:
            kw, _, rest = instr.partition(" ")
            kw, rest = kw.upper(), rest.strip()
            if kw == "FROM":
                words = rest.split()
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                self.stages.append({"from": words[0], "name": name, "instrs": [],
                                    "args": {}, "env": {}})
            elif not self.stages:
                if kw == "ARG":
                    n, eq, v = rest.partition("=")
                    self.global_args[n] = v if eq else None
            else:
                st = self.stages[-1]
                st["instrs"].append((kw, rest))
                scope = dict(st["args"])
                scope.update(st["env"])
                if kw == "ARG":
                    n, eq, v = rest.partition("=")
                    st["args"][n] = substitute(v, scope) if eq else self.global_args.get(n)
                elif kw == "ENV":
                    for word in shlex.split(rest):
                        n, _, v = word.partition("=")
                        st["env"][n] = substitute(v, scope)
        self.final = self.stages[-1]

    def stage(self, name):
        return next(s for s in self.stages if s["name"] == name)

    def instrs(self, kw, stage=None):
        return [rest for k, rest in (stage or self.final)["instrs"] if k == kw]

    def one(self, kw):
        found = self.instrs(kw)
        if len(found) != 1:
            raise AssertionError("final stage: expected one %s, found %d" % (kw, len(found)))
        return found[0]

    def scope(self, stage=None):
        st = stage or self.final
        s = dict(st["args"])
        s.update(st["env"])
        return s

    def copies(self, stage=None):
        """[(from_stage or None, [sources], dest)] with variables substituted."""
        st = stage or self.final
        out, scope = [], dict(st["args"])
        for kw, rest in st["instrs"]:
            if kw == "ENV":
                scope.update(st["env"])
            if kw not in ("COPY", "ADD"):
                continue
            words = [substitute(w, scope) for w in shlex.split(rest)]
            frm = None
            while words and words[0].startswith("--"):
                flag = words.pop(0)
                if flag.startswith("--from="):
                    frm = flag.split("=", 1)[1]
            out.append((frm, words[:-1], words[-1]))
        return out

    def exec_form(self, kw):
        rest = self.one(kw)
        try:
            v = json.loads(rest)
        except ValueError:
            raise AssertionError("%s is not in exec (JSON) form: %s" % (kw, rest))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise AssertionError("%s is not a JSON list of strings" % kw)
        return v


def dockerignore_allows(patterns, rel):
    """Docker's rule: a pattern matches a path when it matches the path or
    one of its parent folders; the last matching pattern wins ("!" keeps)."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    keep = True
    for pat in patterns:
        neg = pat.startswith("!")
        p = (pat[1:] if neg else pat).strip("/")
        if any(fnmatch.fnmatchcase(x, p) for x in prefixes):
            keep = neg
    return keep


def load_k8s():
    docs = []
    for f in sorted(glob.glob(path("docker", "k8s", "*.yaml"))):
        with open(f, encoding="utf-8") as fh:
            docs += [d for d in yaml.safe_load_all(fh) if d]
    return docs


class DeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cfg = config_table()
        cls.df = Dockerfile(read("docker", "Dockerfile"))
        cls.image_env = cls.df.final["env"]
        with open(path("docker", "salad", "container-group.json"), encoding="utf-8") as f:
            cls.salad = json.load(f)
        cls.k8s = load_k8s()
        cls.deploy = cls.kind("Deployment")
        cls.container = cls.deploy["spec"]["template"]["spec"]["containers"][0]
        cls.k8s_env = {e["name"]: e.get("value") for e in cls.container.get("env", [])}
        cls.salad_env = cls.salad["container"].get("environment_variables", {})

    @classmethod
    def kind(cls, kind):
        found = [d for d in cls.k8s if d.get("kind") == kind]
        if len(found) != 1:
            raise AssertionError("docker/k8s: expected one %s, found %d" % (kind, len(found)))
        return found[0]

    def effective(self, name, platform_env=None):
        """The value the sidecar sees: platform env, else image ENV, else the
        config.c default."""
        for env in (platform_env or {}, self.image_env):
            if name in env and env[name] is not None:
                return str(env[name])
        return self.cfg.get(name)

    # ----------------------------------------------------------------- code
    def test_config_table_parsed(self):
        for name in ("PORT", "HOST", "CMD", "COMFYUI_PORT_HOST", "WARMUP_PROMPT_FILE",
                     "COMFY_STOP_TIMEOUT_S"):
            self.assertIn(name, self.cfg, "src/config.c's table no longer parses")

    def test_port_is_3000_everywhere(self):
        self.assertEqual(self.cfg["PORT"], "3000", "src/config.c default PORT")
        self.assertEqual(readme_defaults().get("PORT"), "3000", "README.md default PORT")
        self.assertEqual(self.image_env.get("PORT"), "3000", "Dockerfile ENV PORT")
        self.assertEqual(self.df.instrs("EXPOSE"), ["3000"], "Dockerfile EXPOSE")
        # Salad
        port = int(self.effective("PORT", self.salad_env))
        self.assertEqual(port, 3000)
        self.assertEqual(self.salad["networking"]["port"], port)
        for probe in ("startup_probe", "readiness_probe"):
            self.assertEqual(self.salad[probe]["http"]["port"], port, probe)
        # Kubernetes
        port = int(self.effective("PORT", self.k8s_env))
        self.assertEqual(port, 3000)
        named = {p.get("name"): p["containerPort"] for p in self.container["ports"]}
        self.assertEqual(named.get("http"), port, "containerPort named http")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertIn(self.container[probe]["httpGet"]["port"], ("http", port), probe)
        svc = self.kind("Service")
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        sp = svc["spec"]["ports"][0]
        self.assertEqual(sp["port"], 80)
        self.assertIn(sp["targetPort"], ("http", port))
        self.assertEqual(svc["spec"]["selector"],
                         self.deploy["spec"]["template"]["metadata"]["labels"])
        self.assertEqual(self.deploy["spec"]["selector"]["matchLabels"],
                         self.deploy["spec"]["template"]["metadata"]["labels"])
        ann = self.deploy["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" in ann:
            self.assertEqual(int(ann["prometheus.io/port"]), port)

    def test_probe_routes_exist_in_api(self):
        routes = api_routes()
        self.assertIn("/health", routes)
        self.assertIn("/ready", routes)
        self.assertEqual(self.salad["startup_probe"]["http"]["path"], "/health")
        self.assertEqual(self.salad["readiness_probe"]["http"]["path"], "/ready")
        self.assertEqual(self.container["startupProbe"]["httpGet"]["path"], "/health")
        self.assertEqual(self.container["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(self.container["livenessProbe"]["httpGet"]["path"], "/health")
        hc = self.df.one("HEALTHCHECK")
        m = re.search(r"https?://([^/\s\"']+)(/[^\s\"']*)", hc)
        self.assertIsNotNone(m, "HEALTHCHECK has no URL")
        self.assertEqual(m.group(2), "/health")
        host_port = substitute(m.group(1), self.df.scope())
        self.assertEqual(host_port.rsplit(":", 1)[-1], self.image_env["PORT"],
                         "HEALTHCHECK port")
        # Every route a probe or the HEALTHCHECK asks is one the sidecar serves.
        probes = {"HEALTHCHECK": m.group(2)}
        for name in ("startup_probe", "readiness_probe", "liveness_probe"):
            if name in self.salad:
                probes["salad " + name] = self.salad[name]["http"]["path"]
                self.assertEqual(self.salad[name]["http"]["scheme"], "http", name)
                self.assertEqual(self.salad[name]["http"]["port"], self.salad["networking"]["port"])
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probes["k8s " + name] = self.container[name]["httpGet"]["path"]
        for where, route in probes.items():
            self.assertIn(route, routes, "%s asks %s, which src/api.c does not serve"
                          % (where, route))
        # Readiness is /ready (503 while ComfyUI is down), never /health.
        self.assertEqual(self.salad["readiness_probe"]["http"]["path"],
                         self.container["readinessProbe"]["httpGet"]["path"])
        self.assertEqual(self.salad["startup_probe"]["http"]["path"],
                         self.container["startupProbe"]["httpGet"]["path"])

    def test_env_names_are_known(self):
        known = set(self.cfg) | set(NOT_THE_SIDECARS)
        for where, names in (("docker/Dockerfile ENV", self.image_env),
                             ("docker/salad/container-group.json", self.salad_env),
                             ("docker/k8s Deployment", self.k8s_env)):
            for name in names:
                self.assertIn(name, known,
                              "%s sets %s, which the sidecar does not know" % (where, name))
        # docker/README.md's table of what the image sets names real variables,
        # and every one the image sets.
        readme = read("docker", "README.md")
        table = readme.split("The image sets the following variables", 1)[1].split("\n\n", 2)[1]
        rows = set()
        for line in table.splitlines():
            cell = line.split("|")[1] if line.startswith("|") else ""
            rows |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", cell))
        self.assertTrue(rows, "docker/README.md: no table of the image's variables")
        for name in rows:
            self.assertIn(name, known, "docker/README.md lists %s, which the sidecar does not "
                                       "know" % name)
        self.assertEqual(set(self.image_env) - rows, set(),
                         "variables the image sets that docker/README.md's table omits")
        for name in re.findall(r"\b(LATER_FEATURES|later feature|not exist yet|once the "
                               r"templates work lands)\b", readme, re.I):
            self.fail("docker/README.md still has a stale note: %r" % name)

    def test_config_values_are_valid(self):
        """Values of numeric and boolean variables are what config.c accepts."""
        src = read("src", "config.c")
        types = dict(re.findall(r'\{\s*"([A-Z][A-Z0-9_]*)"\s*,\s*CFG_([A-Z]+)', src))
        for env in (self.image_env, self.salad_env, self.k8s_env):
            for name, value in env.items():
                t = types.get(name)
                if t == "INT":
                    self.assertRegex(str(value), r"^-?[0-9]+$", name)
                elif t == "BOOL":
                    self.assertIn(str(value).lower(),
                                  ("true", "false", "1", "0", "yes", "no", "on", "off"), name)
                elif t == "LEVEL":
                    self.assertIn(value, ("debug", "info", "warn", "error"), name)

    def test_salad_listens_on_ipv6(self):
        self.assertEqual(self.effective("HOST", self.salad_env), "::")

    # ------------------------------------------------------------ the image
    def context_copy_source(self, dest_file):
        """The repository path the final stage copies to dest_file."""
        for frm, sources, dest in self.df.copies():
            if frm is not None:
                continue
            for src in sources:
                if dest_file == dest or (dest.endswith("/") and len(sources) == 1
                                         and src.endswith("/")
                                         and dest_file.startswith(dest)):
                    rel = src if dest_file == dest else src + dest_file[len(dest):]
                    return rel
        return None

    def test_copy_sources_exist_and_are_in_context(self):
        with open(path("docker", "Dockerfile.dockerignore"), encoding="utf-8") as f:
            patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        stage_names = {s["name"] for s in self.df.stages}
        for st in self.df.stages:
            for frm, sources, dest in self.df.copies(st):
                if frm is not None:
                    self.assertIn(frm, stage_names, "COPY --from=%s" % frm)
                    continue
                for src in sources:
                    self.assertTrue(os.path.exists(path(src)), "COPY source %s missing" % src)
                    self.assertTrue(dockerignore_allows(patterns, src),
                                    "COPY source %s is excluded by Dockerfile.dockerignore" % src)

    def test_warmup_file_is_copied_from_the_repo(self):
        target = self.image_env.get("WARMUP_PROMPT_FILE")
        self.assertTrue(target, "the image sets no WARMUP_PROMPT_FILE")
        self.assertTrue(target.startswith("/"), "WARMUP_PROMPT_FILE must be absolute")
        rel = self.context_copy_source(target)
        self.assertIsNotNone(rel, "no COPY puts a file at %s" % target)
        self.assertTrue(os.path.isfile(path(rel)), "%s (copied to %s) missing" % (rel, target))
        with open(path(rel), encoding="utf-8") as f:
            graph = json.load(f)
        ckpts = {n["inputs"]["ckpt_name"] for n in graph.values()
                 if isinstance(n.get("inputs", {}).get("ckpt_name"), str)}
        self.assertTrue(ckpts, "the warmup graph loads no checkpoint")
        self.assertLessEqual(ckpts, self.shipped_checkpoints())

    def shipped_checkpoints(self):
        g = self.df.global_args
        return {g["SDXL_BASE_FILE"], g["SDXL_REFINER_FILE"]}

    def test_templates_use_shipped_checkpoints(self):
        shipped = self.shipped_checkpoints()
        for f in glob.glob(path("comfy-workflows", "**", "*.json"), recursive=True):
            rel = os.path.relpath(f, path("comfy-workflows"))
            if rel.startswith("warmup" + os.sep):
                continue
            with open(f, encoding="utf-8") as fh:
                t = json.load(fh)
            for node in t.get("graph", {}).values():
                v = node.get("inputs", {}).get("ckpt_name")
                if isinstance(v, str):
                    self.assertIn(v, shipped, rel)
            for name, p in t.get("parameters", {}).items():
                if any(str(x).endswith(".ckpt_name") for x in p.get("targets", [])) \
                        and "default" in p:
                    self.assertIn(p["default"], shipped, "%s: parameter %s" % (rel, name))

    def test_workflow_dir_is_copied(self):
        self.assertIn("WORKFLOW_DIR", self.cfg, "src/config.c has no WORKFLOW_DIR")
        self.assertEqual(self.cfg["WORKFLOW_DIR"], readme_defaults().get("WORKFLOW_DIR"),
                         "README.md's WORKFLOW_DIR default")
        wd = self.image_env.get("WORKFLOW_DIR")
        self.assertTrue(wd)
        self.assertTrue(wd.startswith("/"), "WORKFLOW_DIR must be absolute (the WORKDIR may "
                                            "change)")
        rel = self.context_copy_source(wd.rstrip("/") + "/")
        self.assertEqual((rel or "").rstrip("/"), "comfy-workflows")
        self.assertTrue(glob.glob(path("comfy-workflows", "**", "*.json"), recursive=True))
        # The Salad and Kubernetes files leave it to the image.
        for env in (self.salad_env, self.k8s_env):
            self.assertEqual(self.effective("WORKFLOW_DIR", env), wd)

    def test_web_dir_holds_every_page_served(self):
        """Every folder src/api.c serves from WEB_DIR is in the image's
        WEB_DIR: built into the bundle by the build stage, from a repository
        folder in the build context, and checked by the final stage's RUN."""
        self.assertIn("WEB_DIR", self.cfg, "src/config.c has no WEB_DIR")
        self.assertEqual(self.cfg["WEB_DIR"], readme_defaults().get("WEB_DIR"),
                         "README.md's WEB_DIR default")
        web = self.image_env.get("WEB_DIR")
        self.assertTrue(web and web.startswith("/"), "the image's WEB_DIR must be absolute")
        for env in (self.salad_env, self.k8s_env):
            self.assertEqual(self.effective("WEB_DIR", env), web)
        bundles = [dest.rstrip("/") for frm, _, dest in self.df.copies() if frm == "build"]
        self.assertEqual(len(bundles), 1)
        self.assertTrue(web.startswith(bundles[0] + "/"),
                        "WEB_DIR %s is not inside the bundle copied from the build stage (%s)"
                        % (web, bundles[0]))
        build = self.df.stage("build")
        build_run = " ".join(self.df.instrs("RUN", build))
        build_copies = {srcs[0].rstrip("/") for frm, srcs, _ in self.df.copies(build)
                        if frm is None}
        final_run = " ".join(self.df.instrs("RUN"))
        served = served_web_dirs()
        self.assertEqual(served >= {"docs", "playground", "node_modules/swagger-ui-dist"}, True,
                         "src/api.c's serve_file calls no longer parse: %r" % served)
        for d in sorted(served):
            # WORKDIR /src: web/<d> -> the bundle's web/<d>
            self.assertRegex(build_run, r"cp -R web/%s %s/%s(\s|$)" % (
                re.escape(d), re.escape(web), re.escape(d)),
                "the build stage does not put web/%s into WEB_DIR" % d)
            if d.startswith("node_modules/"):
                self.assertIn("npm ci --prefix web", build_run)
            else:
                self.assertIn("web/" + d, build_copies,
                              "the build stage does not COPY web/%s/" % d)
                self.assertTrue(os.path.isfile(path("web", d, "index.html")),
                                "web/%s/index.html missing" % d)
            self.assertRegex(final_run, r'test -r "\$WEB_DIR/%s/' % re.escape(d),
                             "the image build does not check $WEB_DIR/%s" % d)

    def test_checkpoints_download_is_checked(self):
        models = self.df.stage("models")
        args = models["args"]
        for key in ("SDXL_BASE_SHA256", "SDXL_REFINER_SHA256"):
            self.assertRegex(args.get(key) or "", r"^[0-9a-f]{64}$", key)
        for key, repo in (("SDXL_BASE_URL", "stabilityai/stable-diffusion-xl-base-1.0"),
                          ("SDXL_REFINER_URL", "stabilityai/stable-diffusion-xl-refiner-1.0")):
            self.assertTrue(args[key].startswith("https://huggingface.co/%s/resolve/" % repo), key)
        run = " ".join(self.df.instrs("RUN", models))
        self.assertIn("sha256sum -c", run)
        for key in ("SDXL_BASE_SHA256", "SDXL_REFINER_SHA256", "SDXL_BASE_FILE",
                    "SDXL_REFINER_FILE"):
            self.assertIn("$" + key, run)
        home = self.df.scope()["COMFY_HOME"]
        dests = [d for frm, _, d in self.df.copies() if frm == "models"]
        self.assertEqual([d.rstrip("/") for d in dests], [home + "/models/checkpoints"])

    def test_comfyui_command_line(self):
        for label, platform in (("image", {}), ("salad", self.salad_env), ("k8s", self.k8s_env)):
            cmd = self.effective("CMD", platform)
            self.assertTrue(cmd, "%s: CMD is empty (the sidecar would not launch ComfyUI)" % label)
            self.assertNotRegex(cmd, r"[\"'`$*?\[\]\\;|&<>]",
                                "CMD is split on whitespace without a shell")
            words = cmd.split()
            home = self.effective("COMFY_HOME", platform)
            self.assertEqual(words[1], home + "/main.py", label)

            def flag(name):
                self.assertEqual(words.count(name), 1, "%s: CMD needs %s once" % (label, name))
                return words[words.index(name) + 1]
            self.assertEqual(flag("--port"), self.effective("COMFYUI_PORT_HOST", platform), label)
            self.assertEqual(flag("--listen"), self.effective("DIRECT_ADDRESS", platform), label)
            self.assertIn("--disable-auto-launch", words)
            out = self.effective("OUTPUT_DIR", platform) or home + "/output"
            inp = self.effective("INPUT_DIR", platform) or home + "/input"
            self.assertEqual(flag("--output-directory"), out, label)
            self.assertEqual(flag("--input-directory"), inp, label)
        self.assertEqual(self.image_env["COMFYUI_PORT_HOST"], self.cfg["COMFYUI_PORT_HOST"])
        self.assertEqual(self.cfg["COMFYUI_PORT_HOST"], "8188")
        self.assertNotIn("8188", self.df.instrs("EXPOSE"), "ComfyUI's port stays private")

    def test_image_settings(self):
        self.assertEqual(self.image_env.get("HOST"), "::")
        self.assertEqual(self.image_env.get("ALWAYS_RESTART_COMFYUI"), "true")
        self.assertGreaterEqual(int(self.image_env.get("STARTUP_CHECK_MAX_TRIES", 0)), 30)

    def test_pid1_and_user(self):
        entry = self.df.exec_form("ENTRYPOINT")
        cmd = self.df.exec_form("CMD")
        self.assertEqual(os.path.basename(entry[0]), "tini")
        self.assertEqual(entry[-1], "--")
        self.assertEqual(os.path.basename(cmd[0]), "comfy-sidecar")
        self.assertEqual(len(cmd), 1, "the sidecar takes no arguments")
        # Both come from the bundle that the build stage makes.
        bundles = [(srcs[0].rstrip("/"), dest.rstrip("/"))
                   for frm, srcs, dest in self.df.copies() if frm == "build"]
        self.assertEqual(len(bundles), 1)
        src, dest = bundles[0]
        self.assertEqual(src, dest, "the bundle must keep its build-time path")
        for p in (entry[0], cmd[0]):
            self.assertTrue(p.startswith(dest + "/bin/"), p)
        build_run = " ".join(self.df.instrs("RUN", self.df.stage("build")))
        self.assertRegex(build_run, r"bundle-runtime\.sh %s \S*comfy-sidecar" % re.escape(src))
        self.assertIn("%s/bin/tini" % src, build_run)
        hc = self.df.one("HEALTHCHECK")
        self.assertIn("%s/bin/curl" % dest, hc)
        self.assertRegex(build_run, r"bundle-runtime\.sh %s .*/usr/bin/curl" % re.escape(src))
        # non-root, numeric (so that runAsNonRoot can check it)
        user = self.df.instrs("USER")[-1]
        uid = user.split(":")[0]
        self.assertRegex(uid, r"^[0-9]+$")
        self.assertNotEqual(int(uid), 0)
        sc = self.deploy["spec"]["template"]["spec"]["securityContext"]
        self.assertEqual(sc.get("runAsUser"), int(uid))
        self.assertTrue(sc.get("runAsNonRoot"))
        self.assertIn(self.df.instrs("STOPSIGNAL"), ([], ["SIGTERM"]))

    # ------------------------------------------------------------ platforms
    def test_salad_recipe_values(self):
        s = self.salad
        self.assertEqual(s["replicas"], 3)
        self.assertEqual(s["restart_policy"], "always")
        res = s["container"]["resources"]
        self.assertEqual(res["cpu"], 4)
        self.assertEqual(res["memory"], 30720)
        self.assertEqual(len(res["gpu_classes"]), 1)
        self.assertRegex(res["gpu_classes"][0], r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
        n = s["networking"]
        self.assertEqual((n["protocol"], n["auth"]), ("http", False))
        sp, rp = s["startup_probe"], s["readiness_probe"]
        self.assertEqual((sp["initial_delay_seconds"], sp["period_seconds"],
                          sp["timeout_seconds"], sp["failure_threshold"]), (5, 2, 10, 100))
        self.assertEqual((rp["period_seconds"], rp["timeout_seconds"],
                          rp["failure_threshold"]), (2, 2, 3))
        self.assertRegex(s["name"], r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")
        self.assertRegex(s.get("display_name", "x"), r"^[ ,\-.0-9A-Za-z]+$")

    def test_k8s_deployment(self):
        spec = self.deploy["spec"]["template"]["spec"]
        res = self.container["resources"]
        self.assertEqual(int(res["limits"]["nvidia.com/gpu"]), 1)
        self.assertEqual(res["requests"]["memory"], "30Gi")
        self.assertEqual(str(res["requests"]["cpu"]), "4")
        sp = self.container["startupProbe"]
        budget = sp.get("initialDelaySeconds", 0) + sp["periodSeconds"] * sp["failureThreshold"]
        self.assertGreaterEqual(budget, 600, "startup probe must allow 10 minutes")
        rp = self.container["readinessProbe"]
        self.assertEqual((rp["periodSeconds"], rp["timeoutSeconds"], rp["failureThreshold"]),
                         (2, 2, 3))
        # The grace period covers preStop and the sidecar's own shutdown.
        pre = self.container["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(os.path.basename(pre[0]), "sleep")
        self.assertIn("test -x %s" % pre[0], " ".join(self.df.instrs("RUN")),
                      "the image build must check that %s exists" % pre[0])
        need = int(pre[1]) + self.shutdown_seconds(self.k8s_env) + SHUTDOWN_SLACK_S
        grace = spec["terminationGracePeriodSeconds"]
        self.assertGreaterEqual(
            grace, need, "terminationGracePeriodSeconds must cover preStop + SHUTDOWN_GRACE_S "
            "+ webhooks + COMFY_STOP_TIMEOUT_S + %d s" % SHUTDOWN_SLACK_S)
        # docker/README.md quotes the value.
        self.assertIn("`terminationGracePeriodSeconds: %d`" % grace, read("docker", "README.md"))
        # ComfyUI's output folder, if mounted, is the one the image uses.
        out = self.effective("OUTPUT_DIR", self.k8s_env)
        mounts = {m["name"]: m["mountPath"] for m in self.container.get("volumeMounts", [])}
        if "output" in mounts:
            self.assertEqual(mounts["output"], out)
        self.assertEqual(self.container["image"], self.salad["container"]["image"])

    def shutdown_seconds(self, platform_env):
        """Longest time from SIGTERM to the sidecar's exit (src/life.c
        stop_step): the jobs' grace, the webhooks' last window, ComfyUI's
        SIGTERM-to-SIGKILL time."""
        grace = int(self.effective("SHUTDOWN_GRACE_S", platform_env))
        hooks = min(webhook_drain_cap(), int(self.effective("WEBHOOK_TIMEOUT_S", platform_env)))
        stop = int(self.effective("COMFY_STOP_TIMEOUT_S", platform_env))
        return grace + hooks + stop

    def test_docker_stop_timeout_covers_shutdown(self):
        need = self.shutdown_seconds({}) + SHUTDOWN_SLACK_S
        found = []
        for name in (("docker", "Dockerfile"), ("docker", "README.md")):
            text = read(*name)
            for m in re.finditer(r"--stop-timeout[ =](\d+)|docker stop -t (\d+)", text):
                found.append(("/".join(name), int(m.group(1) or m.group(2))))
        self.assertTrue(found, "no --stop-timeout shown")
        for where, v in found:
            self.assertGreaterEqual(v, need, "%s: docker stop timeout %d s, the sidecar may take "
                                             "%d s + slack" % (where, v, need - SHUTDOWN_SLACK_S))

    def test_k8s_autoscaler(self):
        hpa = self.kind("HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        ref = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((ref["kind"], ref["name"]), ("Deployment", self.deploy["metadata"]["name"]))
        names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        self.assertEqual(names, ["comfy_sidecar_queue_depth"])
        fams = metric_families()
        self.assertGreaterEqual(len(fams), 10, "src/metrics.c's families no longer parse")
        for name in names:
            self.assertEqual(fams.get(name), "gauge",
                             "the HPA scales on %s, which src/metrics.c does not render as a "
                             "gauge" % name)
        self.assertIn("/metrics", api_routes())
        self.assertIn("/metrics", read("docker", "README.md"))
        # Every metric the READMEs name exists.
        for doc in (("README.md",), ("docker", "README.md"), ("docker", "k8s", "hpa.yaml")):
            for name in set(re.findall(r"\bcomfy_sidecar_[a-z_]+", read(*doc))):
                self.assertIn(name, fams, "%s names %s, which src/metrics.c does not render"
                              % ("/".join(doc), name))

    def test_prometheus_annotations(self):
        ann = self.deploy["spec"]["template"]["metadata"].get("annotations", {})
        self.assertEqual(ann.get("prometheus.io/scrape"), "true")
        self.assertIn(ann.get("prometheus.io/path"), api_routes())
        self.assertEqual(ann.get("prometheus.io/path"), "/metrics")
        self.assertEqual(int(ann["prometheus.io/port"]), int(self.effective("PORT", self.k8s_env)))

    def test_yaml_and_json_syntax(self):
        for f in glob.glob(path("docker", "**", "*.json"), recursive=True):
            with open(f, encoding="utf-8") as fh:
                json.load(fh)
        files = glob.glob(path("docker", "**", "*.yaml"), recursive=True)
        self.assertTrue(files)
        for f in files:
            with open(f, encoding="utf-8") as fh:
                for doc in yaml.safe_load_all(fh):
                    self.assertIsInstance(doc, dict, f)
                    self.assertIn("apiVersion", doc, f)
                    self.assertIn("kind", doc, f)
        kust = [d for d in self.k8s if d["kind"] == "Kustomization"]
        for k in kust:
            for r in k["resources"]:
                self.assertTrue(os.path.isfile(path("docker", "k8s", r)), r)

    # ---------------------------------------------------------------- tools
    def node_tool(self, name):
        tool = os.path.join(NODE_BIN, name)
        if not shutil.which("node") or not os.path.exists(tool):
            self.skipTest("%s not installed: npm ci --prefix test/deploy" % name)
        return tool

    def test_dockerfile_lint_dockerfile_utils(self):
        tool = self.node_tool("dockerfile-utils")
        r = subprocess.run([tool, "lint", path("docker", "Dockerfile")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, ""), r.stdout + r.stderr)

    # dockerfilelint 1.8.0's false positives, each on one line it cannot read.
    DOCKERFILELINT_FALSE_POSITIVES = (
        # a base image given as a build argument has its tag in the argument
        ("missing_tag", r"^FROM \$\{[A-Z_]+\}$"),
        # its HEALTHCHECK check matches options with --\w+, so --start-period
        # reads as an unknown "--start"
        ("invalid_format", r"^HEALTHCHECK .*--start-period="),
    )

    def test_dockerfile_lint_dockerfilelint(self):
        tool = self.node_tool("dockerfilelint")
        r = subprocess.run([tool, "-o", "json", path("docker", "Dockerfile")],
                           capture_output=True, text=True, timeout=120)
        report = json.loads(r.stdout)
        titles = {}
        ref = os.path.join(HERE, "node_modules", "dockerfilelint", "lib", "reference.js")
        with open(ref, encoding="utf-8") as f:
            for m in re.finditer(r"'([a-z_-]+)':\s*\{\s*'title':\s*'([^']*)'", f.read()):
                titles[m.group(2)] = m.group(1)
        lines = read("docker", "Dockerfile").splitlines()
        left = []
        for fobj in report["files"]:
            for issue in fobj["issues"]:
                rule = titles.get(issue["title"], issue["title"])
                text = lines[int(issue["line"]) - 1].strip()
                if any(rule == r and re.search(p, text)
                       for r, p in self.DOCKERFILELINT_FALSE_POSITIVES):
                    continue
                left.append("line %s: %s (%s): %s" % (issue["line"], issue["title"], rule, text))
        self.assertEqual(left, [])

    def test_bundle_runs_with_its_own_libraries(self):
        if not shutil.which("patchelf"):
            self.skipTest("patchelf not installed (apt-get install patchelf)")
        sidecar = os.environ.get("SIDECAR_BIN") or path("comfy-sidecar")
        if not os.path.exists(sidecar):
            self.skipTest("%s not built (make)" % sidecar)
        with tempfile.TemporaryDirectory() as tmp:
            dest = os.path.join(tmp, "opt", "comfy-sidecar")
            r = subprocess.run(["sh", path("docker", "bundle-runtime.sh"), dest, sidecar,
                                shutil.which("curl") or "/usr/bin/curl"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = subprocess.run([os.path.join(dest, "bin", "comfy-sidecar"), "--version"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.startswith("comfy-sidecar "))
            r = subprocess.run(["patchelf", "--print-interpreter",
                                os.path.join(dest, "bin", "comfy-sidecar")],
                               capture_output=True, text=True, timeout=30)
            self.assertTrue(r.stdout.strip().startswith(dest + "/lib/"))
            # Every library comes from the bundle, even with LD_LIBRARY_PATH
            # pointing at the system's (CUDA images set it).
            env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1",
                       LD_LIBRARY_PATH="/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:"
                                       "/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu")
            r = subprocess.run([os.path.join(dest, "bin", "comfy-sidecar")], env=env,
                               capture_output=True, text=True, timeout=30)
            loaded = re.findall(r"=>\s*(\S+)", r.stdout)
            self.assertTrue(loaded, r.stdout + r.stderr)
            for p in loaded:
                self.assertTrue(p.startswith(dest + "/lib/"), p)

if __name__ == "__main__":
    unittest.main()
