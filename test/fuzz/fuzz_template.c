/* fuzz_template.c - workflow templates (src/template.h), two ways per input.
 *
 * 1. The input as a client's `input` object, rendered against each shipped
 *    template (comfy-workflows/sdxl/ *.json, loaded once, with the golden
 *    object_info of test/golden/).
 * 2. The input as a template file: tpl_from_json, then (if it loaded) its
 *    schema, example and Markdown, and renders with the defaults and with
 *    the object under the file's "$fuzz_input" key (keys starting with '$'
 *    are comments to the loader, so seeds can carry an input along).
 *
 * Invariants of a render:
 *   - failure: status 400 (500 never: a random source is given), location
 *     "input" or "input.<name>", non-empty message, and both make a JSON
 *     error body (valid UTF-8); nothing returned;
 *   - success: the filled input has exactly the schema's properties, keeps
 *     every value the client gave, and each value has the schema's type
 *     and bounds (drawn "random" seeds included); rendering the filled
 *     input again reproduces the same graph with no random source at all;
 *     for shipped templates the graph passes preq_check_graph (what
 *     POST /workflow does next).
 * A template that fails to load has a non-empty, valid UTF-8 reason (it is
 * listed in JSON by GET /workflows). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "request.h"
#include "template.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SHIPPED 16

static struct tpl_set *shipped_set;
static const struct tpl *shipped[MAX_SHIPPED];
static size_t n_shipped;
static json_t *object_info;
static json_t *shipped_schema[MAX_SHIPPED];

/* "Random" numbers that depend on the input only (replays are exact), with
 * the extremes mixed in: 0 and UINT64_MAX exercise the range reduction. */
struct rng {
    uint64_t s;
    unsigned n;
};

static uint64_t
fuzz_rand(void *arg)
{
    struct rng *r = arg;
    uint64_t z;

    switch (r->n++ % 4) {
    case 1: return 0;
    case 3: return UINT64_MAX;
    default: break;
    }
    z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *root = fuzz_repo_root("comfy-workflows/sdxl/txt2img.json");
    char path[PATH_MAX + 64];
    json_error_t jerr;
    size_t i;

    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    snprintf(path, sizeof(path), "%s/comfy-workflows", root);
    shipped_set = tpl_load_dir(path);
    for (i = 0; i < tpl_error_count(shipped_set); i++)
        fprintf(stderr, "fuzz_template: %s\n", tpl_error_at(shipped_set, i));
    for (i = 0; i < tpl_count(shipped_set) && n_shipped < MAX_SHIPPED; i++) {
        const struct tpl *t = tpl_at(shipped_set, i);
        if (strncmp(tpl_path(t), "sdxl/", 5) == 0)
            shipped[n_shipped++] = t;
    }
    if (n_shipped == 0) {
        fprintf(stderr, "fuzz_template: no templates under %s/sdxl "
                        "(set FUZZ_REPO_ROOT to the repository root)\n", path);
        exit(1);
    }
    /* ComfyUI's seed maxima exceed json_int_t: read as reals (as workflows.c). */
    snprintf(path, sizeof(path), "%s/test/golden/object_info.json", root);
    object_info = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
    if (object_info == NULL) {
        fprintf(stderr, "fuzz_template: %s: %s\n", path, jerr.text);
        exit(1);
    }
    for (i = 0; i < n_shipped; i++)
        shipped_schema[i] = tpl_input_schema(shipped[i], object_info);
    return 0;
}

/* The schema's property for name: type and bounds must hold for v. */
static void
check_against_schema(const json_t *schema, const char *name, const json_t *v,
                     int given, const char *path)
{
    json_t *prop = json_object_get(json_object_get(schema, "properties"), name);
    const char *type = json_string_value(json_object_get(prop, "type"));
    json_t *min = json_object_get(prop, "minimum"), *max = json_object_get(prop, "maximum");
    json_t *en = json_object_get(prop, "enum");

    FUZZ_CHECK(prop != NULL && type != NULL, "%s: filled \"%s\" is not in the schema",
               path, name);
    if (strcmp(type, "string") == 0)
        FUZZ_CHECK(json_is_string(v), "%s: %s is not a string", path, name);
    else if (strcmp(type, "integer") == 0)
        FUZZ_CHECK(json_is_integer(v), "%s: %s is not an integer", path, name);
    else if (strcmp(type, "number") == 0)
        FUZZ_CHECK(json_is_number(v), "%s: %s is not a number", path, name);
    else if (strcmp(type, "boolean") == 0)
        FUZZ_CHECK(json_is_boolean(v), "%s: %s is not a boolean", path, name);
    if (json_is_integer(v) && json_is_integer(min))
        FUZZ_CHECK(json_integer_value(v) >= json_integer_value(min),
                   "%s: %s = %lld below minimum", path, name,
                   (long long)json_integer_value(v));
    else if (json_is_number(v) && json_is_number(min))
        FUZZ_CHECK(json_number_value(v) >= json_number_value(min),
                   "%s: %s below minimum", path, name);
    if (json_is_integer(v) && json_is_integer(max))
        FUZZ_CHECK(json_integer_value(v) <= json_integer_value(max),
                   "%s: %s = %lld above maximum", path, name,
                   (long long)json_integer_value(v));
    else if (json_is_number(v) && json_is_number(max))
        FUZZ_CHECK(json_number_value(v) <= json_number_value(max),
                   "%s: %s above maximum", path, name);
    /* Defaults missing from a live list are documented, not enforced; what
     * a client sends must be in the list. */
    if (given && json_is_array(en)) {
        size_t i;
        int found = 0;
        json_t *e;
        json_array_foreach(en, i, e) found |= json_equal(e, v);
        FUZZ_CHECK(found, "%s: %s accepted outside the schema's enum", path, name);
    }
}

/* Render and check; returns the graph (new reference) or NULL. */
static json_t *
render_checked(const struct tpl *t, json_t *input, const json_t *oi, const json_t *schema,
               uint64_t seed)
{
    struct rng rng = {seed, 0};
    struct req_error err;
    json_t *graph = (json_t *)1, *filled = (json_t *)1, *again = NULL, *filled2 = NULL;
    const char *path = tpl_path(t), *key;
    json_t *v;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = tpl_render(t, input, oi, fuzz_rand, &rng, &graph, &filled, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1, "%s: tpl_render returned %d", path, rc);
        FUZZ_CHECK(graph == NULL && filled == NULL, "%s: failure returned a graph", path);
        FUZZ_CHECK(err.status == 400, "%s: status %d (%s at %s)", path, err.status,
                   err.message, err.location);
        FUZZ_CHECK(memchr(err.location, '\0', sizeof(err.location)) != NULL &&
                       memchr(err.message, '\0', sizeof(err.message)) != NULL,
                   "%s: unterminated error", path);
        FUZZ_CHECK(strcmp(err.location, "input") == 0 ||
                       strncmp(err.location, "input.", 6) == 0,
                   "%s: location \"%s\" is not input[.name]", path, err.location);
        FUZZ_CHECK(err.message[0] != '\0', "%s: empty message", path);
        if (fuzz_check_utf8()) {
            FUZZ_CHECK(fuzz_utf8_ok(err.location) && fuzz_utf8_ok(err.message),
                       "%s: error is not valid UTF-8: %s / %s", path, err.location,
                       err.message);
            FUZZ_CHECK(fuzz_error_body_ok(err.message, err.location),
                       "%s: the error body cannot be built", path);
        }
        return NULL;
    }
    FUZZ_CHECK(json_is_object(graph) && json_is_object(filled), "%s: render output", path);
    FUZZ_CHECK(json_object_size(filled) ==
                   json_object_size(json_object_get(schema, "properties")),
               "%s: filled input has %zu keys, the schema %zu", path,
               json_object_size(filled),
               json_object_size(json_object_get(schema, "properties")));
    json_object_foreach(filled, key, v) {
        json_t *g = json_object_get(input, key);
        check_against_schema(schema, key, v, g != NULL, path);
        if (g != NULL)
            FUZZ_CHECK(json_equal(g, v), "%s: given %s changed", path, key);
    }
    /* The answer's input reproduces the image: same graph, nothing drawn. */
    memset(&err, 0, sizeof(err));
    rc = tpl_render(t, filled, NULL, NULL, NULL, &again, &filled2, &err);
    FUZZ_CHECK(rc == 0, "%s: the filled input does not render again: %s at %s", path,
               err.message, err.location);
    FUZZ_CHECK(json_equal(again, graph), "%s: the filled input renders another graph",
               path);
    FUZZ_CHECK(json_equal(filled2, filled), "%s: filled input not a fixed point", path);
    json_decref(again);
    json_decref(filled2);
    json_decref(filled);
    return graph;
}

static void
fuzz_input(const uint8_t *data, size_t size, uint64_t seed)
{
    json_t *input = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    size_t i;

    if (input == NULL)
        return;
    for (i = 0; i < n_shipped; i++) {
        json_t *graph = render_checked(shipped[i], input, object_info, shipped_schema[i],
                                       seed + i);
        if (graph != NULL) {
            struct req_options opt;
            struct req_error err;

            memset(&opt, 0, sizeof(opt));
            opt.prepend_filenames = 1;
            FUZZ_CHECK(preq_check_graph(graph, "fuzz-id", &opt, &err) == 0,
                       "%s: rendered graph refused by preq_check_graph: %s at %s",
                       tpl_path(shipped[i]), err.message, err.location);
            json_decref(graph);
        }
    }
    json_decref(input);
}

static void
fuzz_template(const uint8_t *data, size_t size, uint64_t seed)
{
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    char err[600];
    struct tpl *t;
    json_t *schema, *example, *g, *in;
    char *md;

    if (root == NULL)
        return;
    memset(err, 0, sizeof(err));
    t = tpl_from_json("fuzz/template", "fuzz/template.json", root, err, sizeof(err));
    if (t == NULL) {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL,
                   "tpl_from_json failed without a reason");
        FUZZ_CHECK(!fuzz_check_utf8() || fuzz_utf8_ok(err),
                   "load error is not valid UTF-8: %s", err);
        json_decref(root);
        return;
    }
    FUZZ_CHECK(json_is_object(tpl_graph(t)), "loaded template has no graph");
    FUZZ_CHECK(json_equal(tpl_graph(t), json_object_get(root, "graph")),
               "template graph differs from the file's");
    /* Documentation: must exist and be JSON-serialisable. */
    schema = tpl_input_schema(t, object_info);
    FUZZ_CHECK(json_is_object(schema), "no schema");
    md = json_dumps(schema, JSON_COMPACT);
    FUZZ_CHECK(md != NULL, "schema does not serialise");
    free(md);
    example = tpl_input_example(t, object_info);
    FUZZ_CHECK(json_is_object(example), "no example");
    json_decref(example);
    md = tpl_params_markdown(t, object_info);
    FUZZ_CHECK(md != NULL && fuzz_utf8_ok(md), "Markdown missing or not UTF-8");
    free(md);

    /* Defaults, without and with the live lists. */
    g = render_checked(t, NULL, object_info, schema, seed);
    json_decref(g);
    json_decref(schema);
    schema = tpl_input_schema(t, NULL);
    g = render_checked(t, NULL, NULL, schema, seed ^ 1);
    json_decref(g);
    in = json_object_get(root, "$fuzz_input");
    if (in != NULL) {
        g = render_checked(t, in, NULL, schema, seed ^ 2);
        json_decref(g);
    }
    json_decref(schema);
    tpl_free(t);
    json_decref(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t seed = fuzz_hash(data, size);

    fuzz_input(data, size, seed);
    fuzz_template(data, size, seed);
    return 0;
}
