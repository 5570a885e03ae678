/* test_template.c - workflow templates: loading and its error reports,
 * rendering against the golden graphs in test/golden/, every documented
 * 400, every parameter at and past its bounds, and the object_info combos.
 *
 * Run from the repository root. GOLDEN_UPDATE=1 rewrites the .graph.json
 * and .filled.json files from the current code (check the diff by eye). */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>

#include "template.h"
#include "unit.h"

#define WORKFLOWS "comfy-workflows"
#define GOLDEN "test/golden"

/* splitmix64: a fixed, portable sequence for "random" seeds. */
static uint64_t
test_rand(void *arg)
{
    uint64_t *s = arg, z;

    z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static json_t *
load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);

    if (j == NULL)
        fprintf(stderr, "  %s: %s\n", path, e.text);
    return j;
}

/* ComfyUI's seed inputs declare "max": 18446744073709551615, past
 * json_int_t: object_info must be decoded with JSON_DECODE_INT_AS_REAL. */
static json_t *
object_info(void)
{
    json_error_t e;
    json_t *j = json_load_file(GOLDEN "/object_info.json", JSON_DECODE_INT_AS_REAL, &e);

    if (j == NULL)
        fprintf(stderr, "  object_info.json: %s\n", e.text);
    return j;
}

static int
str_has(const char *s, const char *part)
{
    return s != NULL && strstr(s, part) != NULL;
}

/* Render t with input (JSON text) and the fixture object_info. */
static int
render_text(const struct tpl *t, const char *input, const json_t *oi,
            json_t **graph, json_t **filled, struct req_error *err)
{
    uint64_t rng = 42;
    json_t *in = json_loads(input, JSON_DECODE_ANY, NULL);
    int rc;

    if (in == NULL) {
        fprintf(stderr, "  bad test input: %s\n", input);
        return -2;
    }
    rc = tpl_render(t, in, oi, test_rand, &rng, graph, filled, err);
    json_decref(in);
    return rc;
}

/* ---- the shipped templates against test/golden ----------------------------- */

static int
golden_case(const struct tpl *t, const json_t *oi, const char *dir, const char *name)
{
    char in_path[1024], g_path[1024], f_path[1024];
    json_t *in = NULL, *graph = NULL, *filled = NULL, *want_g = NULL, *want_f = NULL;
    struct req_error err;
    uint64_t rng = 42;
    int ok = 0;
    size_t n = strlen(name) - strlen(".input.json");

    snprintf(in_path, sizeof(in_path), "%s/%s", dir, name);
    snprintf(g_path, sizeof(g_path), "%s/%.*s.graph.json", dir, (int)n, name);
    snprintf(f_path, sizeof(f_path), "%s/%.*s.filled.json", dir, (int)n, name);
    in = load(in_path);
    CHECK(in != NULL);
    if (tpl_render(t, in, oi, test_rand, &rng, &graph, &filled, &err) != 0) {
        fprintf(stderr, "  %s: %d %s: %s\n", in_path, err.status, err.location,
                err.message);
        CHECK(0);
    }
    if (getenv("GOLDEN_UPDATE") != NULL) {
        CHECK(json_dump_file(graph, g_path, JSON_INDENT(1)) == 0);
        CHECK(json_dump_file(filled, f_path, JSON_INDENT(1)) == 0);
    }
    want_g = load(g_path);
    want_f = load(f_path);
    CHECK(want_g != NULL && want_f != NULL);
    if (!json_equal(graph, want_g))
        fprintf(stderr, "  %s differs from the rendered graph\n", g_path);
    CHECK(json_equal(graph, want_g));
    if (!json_equal(filled, want_f))
        fprintf(stderr, "  %s differs from the filled-in input\n", f_path);
    CHECK(json_equal(filled, want_f));
    ok = 1;
end:
    json_decref(in);
    json_decref(graph);
    json_decref(filled);
    json_decref(want_g);
    json_decref(want_f);
    return ok;
}

static void
test_golden(void)
{
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    json_t *oi = object_info();
    size_t i;

    for (i = 0; i < tpl_error_count(set); i++)
        fprintf(stderr, "  %s\n", tpl_error_at(set, i));
    CHECK(tpl_error_count(set) == 0);
    CHECK(tpl_count(set) == 3);
    CHECK(tpl_find(set, "sdxl/txt2img-with-refiner") != NULL);
    CHECK(tpl_find(set, "sdxl/txt2img") != NULL);
    CHECK(tpl_find(set, "sdxl/img2img") != NULL);
    CHECK(tpl_find(set, "warmup/sdxl-with-refiner") == NULL);
    CHECK(oi != NULL);
    for (i = 0; i < tpl_count(set); i++) {
        const struct tpl *t = tpl_at(set, i);
        char dir[300];
        int seen = 0, have_def = 0, have_min = 0, have_max = 0;
        struct dirent *de;
        DIR *d;

        snprintf(dir, sizeof(dir), GOLDEN "/%s", tpl_path(t));
        d = opendir(dir);
        CHECK(d != NULL);
        while ((de = readdir(d)) != NULL) {
            size_t len = strlen(de->d_name);
            if (len < 11 || strcmp(de->d_name + len - 11, ".input.json") != 0)
                continue;
            seen++;
            have_def |= strcmp(de->d_name, "defaults.input.json") == 0;
            have_min |= strcmp(de->d_name, "minimum.input.json") == 0;
            have_max |= strcmp(de->d_name, "maximum.input.json") == 0;
            if (!golden_case(t, oi, dir, de->d_name)) {
                closedir(d);
                CHECK(0);
            }
        }
        closedir(d);
        CHECK(seen >= 3 && have_def && have_min && have_max);
    }
end:
    json_decref(oi);
    tpl_set_free(set);
}

/* The refiner template is exactly contract §6.2: spot-check the golden
 * defaults by hand, independent of the generator. */
static void
test_refiner_defaults(void)
{
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    const struct tpl *t = tpl_find(set, "sdxl/txt2img-with-refiner");
    json_t *oi = object_info(), *g = NULL, *f = NULL, *n10, *n11;
    struct req_error err;

    CHECK(t != NULL);
    CHECK_STR(tpl_summary(t), "Text to Image (+Refiner)");
    CHECK(render_text(t, "{\"prompt\":\"p\"}", oi, &g, &f, &err) == 0);
    n10 = json_object_get(json_object_get(g, "10"), "inputs");
    n11 = json_object_get(json_object_get(g, "11"), "inputs");
#define IN(node, key) json_object_get(json_object_get(json_object_get(g, node), "inputs"), key)
    CHECK_STR(json_string_value(IN("6", "text")), "p");
    CHECK_STR(json_string_value(IN("15", "text")), "p");
    CHECK_STR(json_string_value(IN("7", "text")), "text, watermark");
    CHECK_STR(json_string_value(IN("16", "text")), "text, watermark");
    CHECK(json_integer_value(IN("5", "width")) == 1024);
    CHECK(json_integer_value(IN("5", "height")) == 1024);
    CHECK(json_integer_value(IN("5", "batch_size")) == 1);
    CHECK_STR(json_string_value(IN("4", "ckpt_name")), "sd_xl_base_1.0.safetensors");
    CHECK_STR(json_string_value(IN("12", "ckpt_name")), "sd_xl_refiner_1.0.safetensors");
    CHECK_STR(json_string_value(IN("19", "filename_prefix")), "ComfyUI");
#undef IN
    CHECK(json_integer_value(json_object_get(n10, "steps")) == 25);
    CHECK(json_integer_value(json_object_get(n11, "steps")) == 25);
    CHECK(json_is_integer(json_object_get(n10, "cfg")));
    CHECK(json_integer_value(json_object_get(n10, "cfg")) == 8);
    CHECK_STR(json_string_value(json_object_get(n10, "sampler_name")), "euler");
    CHECK_STR(json_string_value(json_object_get(n11, "scheduler")), "normal");
    CHECK(json_integer_value(json_object_get(n10, "start_at_step")) == 0);
    CHECK(json_integer_value(json_object_get(n10, "end_at_step")) == 20);
    CHECK(json_integer_value(json_object_get(n11, "start_at_step")) == 20);
    CHECK(json_integer_value(json_object_get(n11, "end_at_step")) == 10000);
    CHECK(json_integer_value(json_object_get(n11, "noise_seed")) == 0);
    CHECK_STR(json_string_value(json_object_get(n10, "add_noise")), "enable");
    CHECK_STR(json_string_value(json_object_get(n11, "add_noise")), "disable");
    /* The seed used is reported and is the one in the graph. */
    CHECK(json_is_integer(json_object_get(f, "seed")));
    CHECK(json_equal(json_object_get(f, "seed"), json_object_get(n10, "noise_seed")));
    CHECK(json_integer_value(json_object_get(f, "seed")) >= 0);
    CHECK(json_integer_value(json_object_get(f, "seed")) <= TPL_RANDOM_MAX);
    CHECK(json_object_size(f) == 14);
    /* The graph differs from the export only where parameters point. */
    CHECK(json_object_size(g) == 11);
end:
    json_decref(g);
    json_decref(f);
    json_decref(oi);
    tpl_set_free(set);
}

/* Sending the filled-in input back reproduces the same graph. */
static void
test_reproducible(void)
{
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    json_t *oi = object_info(), *g1 = NULL, *f1 = NULL, *g2 = NULL, *f2 = NULL;
    struct req_error err;
    uint64_t rng = 7, rng2 = 99;
    size_t i;

    for (i = 0; i < tpl_count(set); i++) {
        const struct tpl *t = tpl_at(set, i);
        json_t *in = json_pack("{s:s, s:s}", "prompt", "x", "image", "a.png");

        /* img2img needs "image"; the others refuse it as unknown. */
        if (strcmp(tpl_path(t), "sdxl/img2img") != 0)
            json_object_del(in, "image");
        CHECK(tpl_render(t, in, oi, test_rand, &rng, &g1, &f1, &err) == 0);
        json_decref(in);
        CHECK(tpl_render(t, f1, oi, test_rand, &rng2, &g2, &f2, &err) == 0);
        CHECK(json_equal(g1, g2));
        CHECK(json_equal(f1, f2));
        json_decref(g1);
        json_decref(f1);
        json_decref(g2);
        json_decref(f2);
        g1 = f1 = g2 = f2 = NULL;
    }
end:
    json_decref(g1);
    json_decref(f1);
    json_decref(g2);
    json_decref(f2);
    json_decref(oi);
    tpl_set_free(set);
}

/* Every bounded parameter of every shipped template, at each bound and
 * one step past it. At a bound the value lands in every target, or a rule
 * (never a range check) refuses it; past a bound the 400 names the field
 * and the bound. */
static void
test_bounds_sweep(void)
{
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    json_t *oi = object_info(), *schema = NULL, *g = NULL, *f = NULL;
    struct req_error err;
    uint64_t rng = 1;
    size_t i;
    int checked = 0;

    for (i = 0; i < tpl_count(set); i++) {
        const struct tpl *t = tpl_at(set, i);
        const char *name;
        json_t *ps, *base;

        schema = tpl_input_schema(t, oi);
        ps = json_object_get(schema, "properties");
        base = json_pack("{s:s}", "prompt", "x");
        if (json_object_get(ps, "image") != NULL)
            json_object_set_new(base, "image", json_string("a.png"));
        json_object_foreach(ps, name, f) {
            static const char *const keys[] = {"minimum", "maximum"};
            int b;

            for (b = 0; b < 2; b++) {
                json_t *bound = json_object_get(f, keys[b]);
                json_t *in, *past, *gi = NULL, *fi = NULL;
                char loc[128];
                int integer = strcmp(json_string_value(json_object_get(f, "type")),
                                     "integer") == 0;

                if (bound == NULL)
                    continue;
                snprintf(loc, sizeof(loc), "input.%s", name);
                in = json_deep_copy(base);
                json_object_set(in, name, bound);
                if (tpl_render(t, in, oi, test_rand, &rng, &gi, &fi, &err) == 0) {
                    CHECK(json_equal(json_object_get(fi, name), bound));
                    json_decref(gi);
                    json_decref(fi);
                } else {
                    if (!str_has(err.message, "rule"))
                        fprintf(stderr, "  %s %s=%s: %s\n", tpl_path(t), name, keys[b],
                                err.message);
                    CHECK(err.status == 400);
                    CHECK(str_has(err.message, "rule"));
                    CHECK(strncmp(err.location, "input.", 6) == 0);
                }
                if (integer)
                    past = json_integer(json_integer_value(bound) + (b ? 1 : -1));
                else
                    past = json_real(json_number_value(bound) + (b ? 0.5 : -0.5));
                json_object_set_new(in, name, past);
                CHECK(tpl_render(t, in, oi, test_rand, &rng, &gi, &fi, &err) == -1);
                json_decref(in);
                CHECK(err.status == 400);
                CHECK_STR(err.location, loc);
                CHECK(str_has(err.message, keys[b]));
                checked++;
            }
        }
        f = NULL;
        json_decref(base);
        json_decref(schema);
        schema = NULL;
    }
    CHECK(checked >= 20);
end:
    json_decref(schema);
    json_decref(g);
    json_decref(oi);
    tpl_set_free(set);
}

/* ---- every documented 400 ------------------------------------------------------ */

struct bad_case {
    const char *input;
    const char *location;
    const char *says; /* part of the message */
};

static void
test_invalid_inputs(void)
{
    static const struct bad_case cases[] = {
        {"[]", "input", "must be an object"},
        {"\"x\"", "input", "must be an object"},
        {"{}", "input.prompt", "required"},
        {"{\"prompt\":\"p\",\"bogus\":1}", "input.bogus", "unknown parameter"},
        {"{\"prompt\":\"p\",\"Steps\":1}", "input.Steps", "known: prompt"},
        {"{\"prompt\":null}", "input.prompt", "must be a string"},
        {"{\"prompt\":5}", "input.prompt", "must be a string"},
        {"{\"prompt\":\"p\",\"steps\":\"25\"}", "input.steps", "must be an integer"},
        {"{\"prompt\":\"p\",\"steps\":25.0}", "input.steps", "must be an integer"},
        {"{\"prompt\":\"p\",\"steps\":25.5}", "input.steps", "must be an integer"},
        {"{\"prompt\":\"p\",\"steps\":true}", "input.steps", "must be an integer"},
        {"{\"prompt\":\"p\",\"steps\":0}", "input.steps", ">= 1 (minimum); got 0"},
        {"{\"prompt\":\"p\",\"steps\":101}", "input.steps", "<= 100 (maximum); got 101"},
        {"{\"prompt\":\"p\",\"width\":255}", "input.width", "minimum"},
        {"{\"prompt\":\"p\",\"height\":4096}", "input.height", "maximum"},
        {"{\"prompt\":\"p\",\"cfg_scale\":\"8\"}", "input.cfg_scale", "must be a number"},
        {"{\"prompt\":\"p\",\"cfg_scale\":20.01}", "input.cfg_scale", "maximum"},
        {"{\"prompt\":\"p\",\"cfg_scale\":-0.5}", "input.cfg_scale", "minimum"},
        {"{\"prompt\":\"p\",\"seed\":-1}", "input.seed", "minimum"},
        {"{\"prompt\":\"p\",\"seed\":9007199254740992}", "input.seed", "maximum"},
        {"{\"prompt\":\"p\",\"seed\":\"random\"}", "input.seed", "must be an integer"},
        {"{\"prompt\":\"p\",\"sampler_name\":\"nope\"}", "input.sampler_name",
         "must be one of: euler, euler_cfg_pp,"},
        {"{\"prompt\":\"p\",\"sampler_name\":\"nope\"}", "input.sampler_name",
         "(42 values); got \"nope\""},
        {"{\"prompt\":\"p\",\"sampler_name\":1}", "input.sampler_name", "must be a string"},
        {"{\"prompt\":\"p\",\"scheduler\":\"Normal\"}", "input.scheduler", "one of"},
        {"{\"prompt\":\"p\",\"checkpoint\":\"x.safetensors\"}", "input.checkpoint",
         "must be one of: sd_xl_base_1.0.safetensors, sd_xl_refiner_1.0.safetensors"},
        {"{\"prompt\":\"p\",\"refiner_checkpoint\":[]}", "input.refiner_checkpoint",
         "must be a string; got an array"},
        /* The cross-field rules of the refiner split. */
        {"{\"prompt\":\"p\",\"base_start_step\":20}", "input.base_start_step",
         "rule \"base_start_step < base_end_step\" is broken: 20 < 20 is false"},
        {"{\"prompt\":\"p\",\"base_end_step\":0}", "input.base_start_step",
         "base_start_step < base_end_step"},
        {"{\"prompt\":\"p\",\"base_end_step\":26}", "input.base_end_step",
         "rule \"base_end_step <= steps\" is broken: 26 <= 25 is false"},
        {"{\"prompt\":\"p\",\"steps\":10}", "input.base_end_step", "base_end_step <= steps"},
        {"{\"prompt\":\"p\",\"base_end_step\":10,\"steps\":10,\"refiner_start_step\":11}",
         "input.refiner_start_step", "rule \"refiner_start_step <= steps\""},
        {"{\"prompt\":\"p\",\"base_start_step\":5,\"base_end_step\":4}",
         "input.base_start_step", "the base model must run at least one step"},
    };
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    const struct tpl *t = tpl_find(set, "sdxl/txt2img-with-refiner");
    json_t *oi = object_info(), *g = NULL, *f = NULL;
    struct req_error err;
    size_t i;

    CHECK(t != NULL);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&err, 0, sizeof(err));
        if (render_text(t, cases[i].input, oi, &g, &f, &err) != -1) {
            fprintf(stderr, "  accepted: %s\n", cases[i].input);
            CHECK(0);
        }
        CHECK(g == NULL && f == NULL);
        CHECK(err.status == 400);
        if (strcmp(err.location, cases[i].location) != 0 ||
            !str_has(err.message, cases[i].says))
            fprintf(stderr, "  %s -> %s: %s\n", cases[i].input, err.location,
                    err.message);
        CHECK_STR(err.location, cases[i].location);
        CHECK(str_has(err.message, cases[i].says));
    }
    /* Without object_info, enum_from parameters take any string. */
    CHECK(render_text(t, "{\"prompt\":\"p\",\"sampler_name\":\"new_sampler\"}", NULL,
                      &g, &f, &err) == 0);
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(g, "10"), "inputs"), "sampler_name")),
              "new_sampler");
    /* NULL input is {}: fine for a template without required parameters. */
    json_decref(g);
    json_decref(f);
    g = f = NULL;
    CHECK(tpl_render(t, NULL, oi, test_rand, &(uint64_t){1}, &g, &f, &err) == -1);
    CHECK_STR(err.location, "input.prompt");
end:
    json_decref(g);
    json_decref(f);
    json_decref(oi);
    tpl_set_free(set);
}

/* ---- load-time checks ------------------------------------------------------------ */

#define TGRAPH                                                                 \
    "\"graph\":{\"1\":{\"class_type\":\"KSampler\",\"inputs\":{\"steps\":20,"    \
    "\"cfg\":8,\"seed\":1,\"sampler_name\":\"euler\",\"text\":\"t\",\"flag\":false," \
    "\"model\":[\"2\",0]}},\"2\":{\"class_type\":\"SaveImage\",\"inputs\":"       \
    "{\"filename_prefix\":\"x\",\"images\":[\"1\",0]}}}"

static struct tpl *
tpl_text(const char *text, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    struct tpl *t;

    if (root == NULL) {
        snprintf(err, errlen, "bad test JSON: %s", je.text);
        return NULL;
    }
    t = tpl_from_json("t", "t.json", root, err, errlen);
    json_decref(root);
    return t;
}

static void
test_load_errors(void)
{
    static const struct {
        const char *params; /* the "parameters" object, then more keys */
        const char *says;
    } cases[] = {
        {"{\"steps\":{\"type\":\"integer\",\"default\":20,\"targets\":[\"99.steps\"]}}",
         "parameter \"steps\": target \"99.steps\" names no node in the graph"},
        {"{\"steps\":{\"type\":\"integer\",\"default\":20,\"targets\":[\"1.stepz\"]}}",
         "node 1 (KSampler) has no input \"stepz\""},
        {"{\"m\":{\"type\":\"string\",\"default\":\"\",\"targets\":[\"1.model\"]}}",
         "is a link to another node"},
        {"{\"s\":{\"type\":\"string\",\"default\":\"\",\"targets\":[\"1.steps\"]}}",
         "holds an integer in the graph; a string parameter cannot set it"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[]}}", "\"targets\""},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"steps\"]}}",
         "\"<node id>.<input>\""},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]},"
         "\"t\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}}",
         "also set by parameter \"s\""},
        {"{\"s\":{\"type\":\"int\",\"default\":1,\"targets\":[\"1.steps\"]}}",
         "\"type\" must be one of"},
        {"{\"s\":{\"type\":\"integer\",\"default\":101,\"maximum\":100,\"targets\":[\"1.steps\"]}}",
         "\"default\" must be <= 100 (maximum)"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1.5,\"targets\":[\"1.steps\"]}}",
         "\"default\" must be an integer"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"minimum\":1.5,\"targets\":[\"1.steps\"]}}",
         "\"minimum\" must be an integer"},
        {"{\"s\":{\"type\":\"integer\",\"default\":5,\"minimum\":9,\"maximum\":1,\"targets\":[\"1.steps\"]}}",
         "greater than"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"minimun\":0,\"targets\":[\"1.steps\"]}}",
         "unknown key \"minimun\""},
        {"{\"s\":{\"type\":\"integer\",\"required\":true,\"default\":1,\"targets\":[\"1.steps\"]}}",
         "a required parameter has no default"},
        {"{\"s\":{\"type\":\"integer\",\"targets\":[\"1.steps\"]}}",
         "needs exactly one of \"default\" and \"default_from\""},
        {"{\"s\":{\"type\":\"string\",\"default\":\"random\",\"minimum\":0,\"targets\":[\"1.text\"]}}",
         "\"minimum\" applies to integer and number parameters only"},
        {"{\"s\":{\"type\":\"integer\",\"default\":\"random\",\"maximum\":-1,\"targets\":[\"1.seed\"]}}",
         "a \"random\" default needs a range inside"},
        {"{\"s\":{\"type\":\"number\",\"default\":\"random\",\"targets\":[\"1.cfg\"]}}",
         "\"default\" must be a number"},
        {"{\"e\":{\"type\":\"enum\",\"enum\":[\"a\",\"b\"],\"default\":\"c\",\"targets\":[\"1.sampler_name\"]}}",
         "\"default\" must be one of: a, b; got \"c\""},
        {"{\"e\":{\"type\":\"enum\",\"default\":\"a\",\"targets\":[\"1.sampler_name\"]}}",
         "exactly one of \"enum\" and \"enum_from\""},
        {"{\"e\":{\"type\":\"enum\",\"enum\":[],\"default\":\"a\",\"targets\":[\"1.sampler_name\"]}}",
         "non-empty list of strings"},
        {"{\"e\":{\"type\":\"enum\",\"enum_from\":\"KSampler\",\"default\":\"a\",\"targets\":[\"1.sampler_name\"]}}",
         "\"<NodeClass>.<input>\""},
        {"{\"e\":{\"type\":\"string\",\"enum_from\":\"A.b\",\"default\":\"a\",\"targets\":[\"1.text\"]}}",
         "applies to enum parameters only"},
        {"{\"a\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]},"
         "\"b\":{\"type\":\"integer\",\"default_from\":\"c\",\"targets\":[\"1.seed\"]}}",
         "\"default_from\" must name another parameter"},
        {"{\"a\":{\"type\":\"integer\",\"default_from\":\"b\",\"targets\":[\"1.steps\"]},"
         "\"b\":{\"type\":\"integer\",\"default_from\":\"a\",\"targets\":[\"1.seed\"]}}",
         "itself has \"default_from\""},
        {"{\"a\":{\"type\":\"string\",\"default\":\"x\",\"targets\":[\"1.text\"]},"
         "\"b\":{\"type\":\"integer\",\"default_from\":\"a\",\"targets\":[\"1.seed\"]}}",
         "of type string"},
        {"{\"9a\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}}",
         "names use letters"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}},"
         "\"rules\":[{\"rule\":\"s < t\"}]",
         "rule \"s < t\": \"t\" is not a parameter"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]},"
         "\"x\":{\"type\":\"string\",\"default\":\"\",\"targets\":[\"1.text\"]}},"
         "\"rules\":[{\"rule\":\"s < x\"}]",
         "rules compare integers and numbers"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}},"
         "\"rules\":[{\"rule\":\"s =< 3\"}]",
         "expected one of < <= > >= == !="},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}},"
         "\"rules\":[{\"rule\":\"s < 3 + 1\"}]",
         "unexpected text"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}},"
         "\"rules\":[{\"rule\":\"1 < 3\"}]",
         "name at least one parameter"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}},"
         "\"rules\":[{\"rule\":\"s < 99999999999999999999\"}]",
         "out of range"},
        {"{\"s\":{\"type\":\"integer\",\"default\":1,\"targets\":[\"1.steps\"]}},"
         "\"rules\":[{\"rule\":\"s < 3\",\"why\":\"\"}]",
         "rule 0: unknown key \"why\""},
        {"{},\"extra\":1", "unknown key \"extra\""},
        {"[]", "\"parameters\" must be an object"},
    };
    char err[600], text[2048];
    struct tpl *t = NULL;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "{\"parameters\":%s," TGRAPH "}", cases[i].params);
        err[0] = '\0';
        t = tpl_text(text, err, sizeof(err));
        if (t != NULL || !str_has(err, cases[i].says))
            fprintf(stderr, "  case %zu: got \"%s\"\n", i, err);
        CHECK(t == NULL);
        CHECK(str_has(err, cases[i].says));
    }
    /* The graph gets the same checks as POST /prompt. */
    t = tpl_text("{\"parameters\":{},\"graph\":{\"1\":{\"class_type\":\"KSampler\","
                 "\"inputs\":{}}}}",
                 err, sizeof(err));
    CHECK(t == NULL);
    CHECK(str_has(err, "\"graph\": "));
    t = tpl_text("{\"1\":{\"class_type\":\"SaveImage\",\"inputs\":{\"filename_prefix\":\"x\"}}}",
                 err, sizeof(err));
    CHECK(t == NULL);
    CHECK(str_has(err, "plain exported graph"));
    /* "$comment" keys are notes, and an empty parameter block is fine. */
    t = tpl_text("{\"$comment\":\"hi\",\"parameters\":{}," TGRAPH "}", err, sizeof(err));
    CHECK(t != NULL);
end:
    tpl_free(t);
}

/* Booleans, default_from, numbers written as given, and custom random
 * ranges: features the shipped templates do not use. */
static void
test_features(void)
{
    const char *text =
        "{\"parameters\":{"
        "\"flag\":{\"type\":\"boolean\",\"default\":true,\"targets\":[\"1.flag\"]},"
        "\"steps\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":50,\"default\":20,"
        "\"targets\":[\"1.steps\"]},"
        "\"seed\":{\"type\":\"integer\",\"minimum\":10,\"maximum\":12,\"default\":\"random\","
        "\"targets\":[\"1.seed\"]},"
        "\"cfg\":{\"type\":\"number\",\"maximum\":30,\"default_from\":\"steps\","
        "\"targets\":[\"1.cfg\"]},"
        "\"s\":{\"type\":\"enum\",\"enum\":[\"euler\",\"heun\"],\"default\":\"heun\","
        "\"targets\":[\"1.sampler_name\"]}},"
        "\"rules\":[{\"rule\":\"5 <= steps\",\"message\":\"too few\"},"
        "{\"rule\":\"cfg!=13\"}]," TGRAPH "}";
    char err[600];
    struct tpl *t = tpl_text(text, err, sizeof(err));
    json_t *g = NULL, *f = NULL, *in = NULL;
    struct req_error e;
    int k;

    if (t == NULL)
        fprintf(stderr, "  %s\n", err);
    CHECK(t != NULL);
#define IN1(key) json_object_get(json_object_get(json_object_get(g, "1"), "inputs"), key)
    CHECK(render_text(t, "{}", NULL, &g, &f, &e) == 0);
    CHECK(json_is_true(IN1("flag")));
    CHECK(json_integer_value(IN1("cfg")) == 20); /* copied from steps */
    CHECK(json_integer_value(IN1("seed")) >= 10 && json_integer_value(IN1("seed")) <= 12);
    CHECK_STR(json_string_value(IN1("sampler_name")), "heun");
    json_decref(g);
    json_decref(f);
    g = f = NULL;
    CHECK(render_text(t, "{\"flag\":false,\"cfg\":7.25,\"steps\":50}", NULL, &g, &f, &e) == 0);
    CHECK(json_is_false(IN1("flag")));
    CHECK(json_is_real(IN1("cfg")) && json_real_value(IN1("cfg")) == 7.25);
    json_decref(g);
    json_decref(f);
    g = f = NULL;
    CHECK(render_text(t, "{\"flag\":1}", NULL, &g, &f, &e) == -1);
    CHECK_STR(e.location, "input.flag");
    CHECK(str_has(e.message, "must be a boolean"));
    CHECK(render_text(t, "{\"steps\":4}", NULL, &g, &f, &e) == -1);
    CHECK_STR(e.location, "input.steps"); /* the first parameter the rule names */
    CHECK(str_has(e.message, "too few: rule \"5 <= steps\" is broken: 5 <= 4 is false"));
    CHECK(render_text(t, "{\"steps\":13}", NULL, &g, &f, &e) == -1);
    CHECK_STR(e.location, "input.cfg");
    CHECK(str_has(e.message, "rule \"cfg!=13\" is broken: 13 != 13 is false"));
    /* The derived default is checked against its own bounds. */
    CHECK(render_text(t, "{\"steps\":40}", NULL, &g, &f, &e) == -1);
    CHECK_STR(e.location, "input.cfg");
    CHECK(str_has(e.message, "(by default the value of \"steps\") must be <= 30"));
    CHECK(render_text(t, "{\"s\":\"euler_a\"}", NULL, &g, &f, &e) == -1);
    CHECK(str_has(e.message, "must be one of: euler, heun; got \"euler_a\""));
    /* Every draw stays in 10..12 and all three values come up. */
    {
        uint64_t rng = 3;
        int hit[3] = {0, 0, 0};
        in = json_object();
        for (k = 0; k < 60; k++) {
            json_int_t s;
            CHECK(tpl_render(t, in, NULL, test_rand, &rng, &g, &f, &e) == 0);
            s = json_integer_value(json_object_get(f, "seed"));
            CHECK(s >= 10 && s <= 12);
            hit[s - 10] = 1;
            json_decref(g);
            json_decref(f);
            g = f = NULL;
        }
        CHECK(hit[0] && hit[1] && hit[2]);
        CHECK(tpl_render(t, in, NULL, NULL, NULL, &g, &f, &e) == -1);
        CHECK(e.status == 500);
    }
#undef IN1
end:
    json_decref(in);
    json_decref(g);
    json_decref(f);
    tpl_free(t);
}

/* Long and non-ASCII field names stay valid UTF-8 when cut to fit. */
static void
test_error_text_utf8(void)
{
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    const struct tpl *t = tpl_find(set, "sdxl/txt2img");
    json_t *in = json_object(), *g = NULL, *f = NULL, *msg = NULL, *loc = NULL;
    char key[1200];
    struct req_error e;
    size_t i;

    for (i = 0; i + 2 < sizeof(key); i += 2) {
        key[i] = (char)0xC3;
        key[i + 1] = (char)0xA9; /* é */
    }
    key[i] = '\0';
    json_object_set_new(in, key, json_integer(1));
    CHECK(t != NULL);
    CHECK(tpl_render(t, in, NULL, test_rand, &(uint64_t){1}, &g, &f, &e) == -1);
    msg = json_string(e.message);
    loc = json_string(e.location);
    CHECK(msg != NULL && loc != NULL);
    CHECK(strncmp(e.location, "input.", 6) == 0);
end:
    json_decref(msg);
    json_decref(loc);
    json_decref(in);
    tpl_set_free(set);
}

/* ---- the folder ------------------------------------------------------------------ */

static void
test_broken_dir(void)
{
    struct tpl_set *set = tpl_load_dir(GOLDEN "/broken");
    size_t i;
    int target = 0, json = 0, name = 0;

    CHECK(tpl_count(set) == 2);
    CHECK(tpl_find(set, "good") != NULL);
    CHECK(tpl_find(set, "sub/nested") != NULL);
    CHECK_STR(tpl_summary(tpl_find(set, "good")), "A good one");
    CHECK_STR(tpl_file(tpl_find(set, "good")), GOLDEN "/broken/good.json");
    CHECK_STR(tpl_path(tpl_at(set, 0)), "good");
    CHECK(tpl_find(set, "warmup/plain") == NULL);
    CHECK(tpl_error_count(set) == 3);
    for (i = 0; i < tpl_error_count(set); i++) {
        const char *e = tpl_error_at(set, i);
        target |= strcmp(e, GOLDEN "/broken/bad-target.json: parameter \"steps\": "
                            "target \"99.steps\" names no node in the graph") == 0;
        json |= strncmp(e, GOLDEN "/broken/not-json.json: invalid JSON at line 1", 53) == 0;
        name |= strncmp(e, GOLDEN "/broken/bad name.json: file and folder names", 43) == 0;
    }
    if (!(target && json && name))
        for (i = 0; i < tpl_error_count(set); i++)
            fprintf(stderr, "  %s\n", tpl_error_at(set, i));
    CHECK(target && json && name);
    tpl_set_free(set);
    set = tpl_load_dir(GOLDEN "/no-such-folder");
    CHECK(tpl_count(set) == 0);
    CHECK(tpl_error_count(set) == 1);
    CHECK(str_has(tpl_error_at(set, 0), "no-such-folder: No such file"));
end:
    tpl_set_free(set);
}

/* ---- object_info -------------------------------------------------------------------- */

static void
test_object_info_choices(void)
{
    json_t *oi = object_info(), *v3 = NULL;
    const json_t *l;

    CHECK(oi != NULL);
    l = tpl_object_info_choices(oi, "KSampler.sampler_name");
    CHECK(json_array_size(l) == 42);
    CHECK_STR(json_string_value(json_array_get(l, 0)), "euler");
    l = tpl_object_info_choices(oi, "CheckpointLoaderSimple.ckpt_name");
    CHECK(json_array_size(l) == 2);
    l = tpl_object_info_choices(oi, "ImageScale.upscale_method"); /* V3 "COMBO" */
    CHECK(json_array_size(l) == 5);
    CHECK_STR(json_string_value(json_array_get(l, 4)), "lanczos");
    CHECK(tpl_object_info_choices(oi, "KSampler.steps") == NULL); /* INT */
    CHECK(tpl_object_info_choices(oi, "KSampler.model") == NULL);
    CHECK(tpl_object_info_choices(oi, "KSampler.nope") == NULL);
    CHECK(tpl_object_info_choices(oi, "Nope.sampler_name") == NULL);
    CHECK(tpl_object_info_choices(oi, "KSampler") == NULL);
    CHECK(tpl_object_info_choices(oi, ".x") == NULL);
    CHECK(tpl_object_info_choices(NULL, "KSampler.sampler_name") == NULL);
    v3 = json_loads("{\"X\":{\"input\":{\"optional\":{\"o\":[[\"a\"],{}],"
                    "\"c\":[\"COMBO\",{\"options\":[\"b\"]}],\"bad\":[\"COMBO\"]}}}}",
                    0, NULL);
    CHECK(json_array_size(tpl_object_info_choices(v3, "X.o")) == 1);
    CHECK(json_array_size(tpl_object_info_choices(v3, "X.c")) == 1);
    CHECK(tpl_object_info_choices(v3, "X.bad") == NULL);
end:
    json_decref(v3);
    json_decref(oi);
}

static void
test_schema(void)
{
    struct tpl_set *set = tpl_load_dir(WORKFLOWS);
    const struct tpl *t = tpl_find(set, "sdxl/txt2img-with-refiner");
    json_t *oi = object_info(), *s = NULL, *s0 = NULL, *ex = NULL, *g = NULL, *f = NULL;
    json_t *p;
    struct req_error e;
    char *md = NULL;

    CHECK(t != NULL);
    s = tpl_input_schema(t, oi);
    CHECK_STR(json_string_value(json_object_get(s, "type")), "object");
    CHECK(json_is_false(json_object_get(s, "additionalProperties")));
    CHECK(json_array_size(json_object_get(s, "required")) == 1);
    p = json_object_get(s, "properties");
    CHECK(json_object_size(p) == 14);
    CHECK_STR(json_string_value(json_object_get(json_object_get(p, "steps"), "type")),
              "integer");
    CHECK(json_integer_value(json_object_get(json_object_get(p, "steps"), "maximum")) == 100);
    CHECK(json_integer_value(json_object_get(json_object_get(p, "steps"), "default")) == 25);
    CHECK(json_array_size(json_object_get(json_object_get(p, "sampler_name"), "enum")) == 42);
    CHECK(json_object_get(json_object_get(p, "seed"), "default") == NULL);
    CHECK(str_has(json_string_value(json_object_get(json_object_get(p, "seed"),
                                                    "description")),
                  "random integer in 0..9007199254740991"));
    /* Without object_info: a plain string, and the description says whose. */
    s0 = tpl_input_schema(t, NULL);
    p = json_object_get(s0, "properties");
    CHECK(json_object_get(json_object_get(p, "sampler_name"), "enum") == NULL);
    CHECK(str_has(json_string_value(json_object_get(json_object_get(p, "sampler_name"),
                                                    "description")),
                  "KSamplerAdvanced.sampler_name"));
    /* A default the live list lacks is described, not declared. */
    {
        json_t *oi2 = json_deep_copy(oi), *s2, *ck;
        json_t *l = (json_t *)tpl_object_info_choices(oi2, "CheckpointLoaderSimple.ckpt_name");
        json_array_remove(l, 0);
        s2 = tpl_input_schema(t, oi2);
        ck = json_object_get(json_object_get(s2, "properties"), "checkpoint");
        CHECK(json_object_get(ck, "default") == NULL);
        CHECK(json_array_size(json_object_get(ck, "enum")) == 1);
        CHECK(str_has(json_string_value(json_object_get(ck, "description")),
                      "Default: sd_xl_base_1.0.safetensors (ComfyUI does not offer it"));
        ex = tpl_input_example(t, oi2);
        CHECK_STR(json_string_value(json_object_get(ex, "checkpoint")),
                  "sd_xl_refiner_1.0.safetensors");
        json_decref(ex);
        ex = NULL;
        json_decref(s2);
        json_decref(oi2);
    }
    /* The example is accepted by the template it documents. */
    ex = tpl_input_example(t, oi);
    CHECK(json_object_get(ex, "seed") == NULL);
    CHECK(json_is_string(json_object_get(ex, "prompt")));
    CHECK(tpl_render(t, ex, oi, test_rand, &(uint64_t){5}, &g, &f, &e) == 0);
    md = tpl_params_markdown(t, oi);
    CHECK(str_has(md, "| `steps` | integer | `25` | 1..100 |"));
    CHECK(str_has(md, "| `prompt` | string | **required** |"));
    CHECK(str_has(md, "| `seed` | integer | random |"));
    CHECK(str_has(md, "- `base_end_step <= steps`: the base model cannot stop after"));
end:
    free(md);
    json_decref(g);
    json_decref(f);
    json_decref(ex);
    json_decref(s);
    json_decref(s0);
    json_decref(oi);
    tpl_set_free(set);
}

UNIT_TESTS(template_tests) = {
    {"template: golden graphs", test_golden},
    {"template: refiner defaults = contract 6.2", test_refiner_defaults},
    {"template: filled input reproduces the graph", test_reproducible},
    {"template: every bound and one past it", test_bounds_sweep},
    {"template: invalid inputs give their 400", test_invalid_inputs},
    {"template: load-time checks", test_load_errors},
    {"template: booleans, default_from, rules, random", test_features},
    {"template: error text stays UTF-8", test_error_text_utf8},
    {"template: broken file does not hide the others", test_broken_dir},
    {"template: object_info combos", test_object_info_choices},
    {"template: input schema and example", test_schema},
    {NULL, NULL},
};
