/* test_openapi.c - the OpenAPI 3.1 document: every route, resolvable
 * $refs, unique operationIds, described responses, and workflow examples
 * that their own template accepts. Run from the repository root.
 * OPENAPI_DUMP=<file> writes the document for an external validator. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "openapi.h"
#include "unit.h"

#define JSON_MT "application/json"

static const char *const methods[] = {"get", "put", "post", "delete", "options",
                                      "head", "patch", "trace", NULL};

static uint64_t
fixed_rand(void *arg)
{
    (void)arg;
    return 12345;
}

/* Resolve a local "#/a/b/c" reference (no '~' escapes needed here). */
static json_t *
resolve(json_t *doc, const char *ref)
{
    char buf[400], *tok, *save = NULL;
    json_t *cur = doc;

    if (strncmp(ref, "#/", 2) != 0)
        return NULL;
    snprintf(buf, sizeof(buf), "%s", ref + 2);
    for (tok = strtok_r(buf, "/", &save); tok != NULL && cur != NULL;
         tok = strtok_r(NULL, "/", &save))
        cur = json_object_get(cur, tok);
    return cur;
}

/* Count $refs under v that do not resolve; print them. */
static int
bad_refs(json_t *doc, json_t *v)
{
    int bad = 0;

    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (strcmp(k, "$ref") == 0) {
                if (!json_is_string(x) || resolve(doc, json_string_value(x)) == NULL) {
                    fprintf(stderr, "  unresolved $ref %s\n", json_string_value(x));
                    bad++;
                }
            } else {
                bad += bad_refs(doc, x);
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) bad += bad_refs(doc, x);
    }
    return bad;
}

static json_t *
deref(json_t *doc, json_t *v)
{
    const char *r = json_string_value(json_object_get(v, "$ref"));

    return r != NULL ? resolve(doc, r) : v;
}

static json_t *
object_info(void)
{
    return json_load_file("test/golden/object_info.json", JSON_DECODE_INT_AS_REAL, NULL);
}

static void
test_document(void)
{
    struct tpl_set *set = tpl_load_dir("comfy-workflows");
    json_t *oi = object_info();
    json_t *doc = openapi_document(set, oi, "http://localhost:3000");
    json_t *paths, *ids = json_object(), *item;
    const char *path, *dump = getenv("OPENAPI_DUMP");
    int ops = 0;

    CHECK(doc != NULL);
    if (dump != NULL)
        json_dump_file(doc, dump, JSON_INDENT(2));
    CHECK_STR(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "info"), "title")),
              "comfy-sidecar");
    CHECK(json_is_string(json_object_get(json_object_get(doc, "info"), "version")));
    CHECK_STR(json_string_value(json_object_get(
                  json_array_get(json_object_get(doc, "servers"), 0), "url")),
              "http://localhost:3000");
    CHECK(bad_refs(doc, doc) == 0);
    paths = json_object_get(doc, "paths");
    CHECK(json_object_get(json_object_get(paths, "/prompt"), "post") != NULL);
    CHECK(json_object_get(json_object_get(paths, "/health"), "get") != NULL);
    CHECK(json_object_get(json_object_get(paths, "/ready"), "get") != NULL);
    CHECK(json_object_get(json_object_get(paths, "/docs/json"), "get") != NULL);
    CHECK(json_object_get(json_object_get(paths, "/openapi.json"), "get") != NULL);
    CHECK(json_object_get(paths, "/workflow/sdxl/txt2img-with-refiner") != NULL);
    CHECK(json_object_get(paths, "/workflow/sdxl/txt2img") != NULL);
    CHECK(json_object_get(paths, "/workflow/sdxl/img2img") != NULL);
    CHECK(json_object_size(paths) == 14);
    json_object_foreach(paths, path, item) {
        int m;
        CHECK(path[0] == '/');
        for (m = 0; methods[m] != NULL; m++) {
            json_t *op = json_object_get(item, methods[m]), *resp, *r;
            const char *id = json_string_value(json_object_get(op, "operationId"));
            const char *code;

            if (op == NULL)
                continue;
            ops++;
            CHECK(id != NULL);
            CHECK(json_object_get(ids, id) == NULL);
            json_object_set_new(ids, id, json_true());
            resp = json_object_get(op, "responses");
            CHECK(json_object_get(resp, "200") != NULL);
            json_object_foreach(resp, code, r) {
                CHECK(strlen(code) == 3);
                CHECK(json_is_string(json_object_get(deref(doc, r), "description")));
            }
        }
    }
    CHECK(ops == 15);
end:
    json_decref(ids);
    json_decref(doc);
    json_decref(oi);
    tpl_set_free(set);
}

static void
test_workflow_operation(void)
{
    struct tpl_set *set = tpl_load_dir("comfy-workflows");
    json_t *oi = object_info();
    json_t *doc = openapi_document(set, oi, NULL);
    json_t *op, *req, *content, *example, *input, *resp, *g = NULL, *f = NULL;
    json_t *schemas;
    struct req_error err;
    size_t i;

    CHECK(json_object_get(doc, "servers") == NULL);
    schemas = json_object_get(json_object_get(doc, "components"), "schemas");
    op = json_object_get(json_object_get(json_object_get(doc, "paths"),
                                         "/workflow/sdxl/txt2img-with-refiner"),
                         "post");
    CHECK(op != NULL);
    CHECK_STR(json_string_value(json_object_get(op, "operationId")),
              "workflow_sdxl_txt2img_with_refiner");
    CHECK_STR(json_string_value(json_object_get(op, "summary")), "Text to Image (+Refiner)");
    CHECK(strstr(json_string_value(json_object_get(op, "description")),
                 "| `base_end_step` | integer | `20` | 0..100 |") != NULL);
    content = json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"),
                              "application/json");
    req = deref(doc, json_object_get(content, "schema"));
    CHECK(req != NULL);
    CHECK(json_is_false(json_object_get(req, "additionalProperties")));
    input = deref(doc, json_object_get(json_object_get(req, "properties"), "input"));
    CHECK(input != NULL);
    CHECK(json_equal(input, json_object_get(schemas, "sdxl.txt2img-with-refiner.Input")));
    CHECK(json_array_size(json_object_get(
              json_object_get(json_object_get(input, "properties"), "scheduler"), "enum")) == 9);
    /* The documented example is a body the route accepts. */
    example = json_object_get(json_object_get(json_object_get(content, "examples"), "defaults"),
                              "value");
    CHECK(json_is_object(json_object_get(example, "input")));
    CHECK(tpl_render(tpl_find(set, "sdxl/txt2img-with-refiner"),
                     json_object_get(example, "input"), oi, fixed_rand, NULL, &g, &f,
                     &err) == 0);
    /* 200 = the /prompt answer plus input; the error answers are all there. */
    resp = json_object_get(op, "responses");
    CHECK(json_object_get(resp, "404") != NULL);
    CHECK(json_object_get(resp, "400") != NULL);
    CHECK(json_object_get(resp, "413") != NULL);
    CHECK(json_object_get(resp, "502") != NULL);
    CHECK(json_object_get(json_object_get(deref(doc, json_object_get(resp, "503")),
                                          "headers"),
                          "Retry-After") != NULL);
    resp = deref(doc, json_object_get(
                          json_object_get(json_object_get(json_object_get(resp, "200"),
                                                          "content"),
                                          "application/json"),
                          "schema"));
    CHECK(json_array_size(json_object_get(resp, "allOf")) == 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(resp, "allOf"), 0),
                                                "$ref")),
              "#/components/schemas/PromptResponse");
    /* Every shipped template's example renders. */
    for (i = 0; i < tpl_count(set); i++) {
        json_t *ex = tpl_input_example(tpl_at(set, i), oi);
        json_decref(g);
        json_decref(f);
        g = f = NULL;
        CHECK(tpl_render(tpl_at(set, i), ex, oi, fixed_rand, NULL, &g, &f, &err) == 0);
        json_decref(ex);
    }
end:
    json_decref(g);
    json_decref(f);
    json_decref(doc);
    json_decref(oi);
    tpl_set_free(set);
}

static void
write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    if (fp != NULL) {
        fputs(text, fp);
        fclose(fp);
    }
}

/* "a-b" and "a_b" are distinct routes whose natural operationIds meet. */
static void
test_operation_ids_unique(void)
{
    char dir[] = "/tmp/tpl-openapi-XXXXXX", p1[64], p2[64];
    const char *body =
        "{\"parameters\":{},\"graph\":{\"1\":{\"class_type\":\"SaveImage\","
        "\"inputs\":{\"filename_prefix\":\"x\",\"images\":[\"2\",0]}},"
        "\"2\":{\"class_type\":\"EmptyImage\",\"inputs\":{\"width\":8}}}}";
    struct tpl_set *set = NULL;
    json_t *doc = NULL, *a, *b;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(p1, sizeof(p1), "%s/a-b.json", dir);
    snprintf(p2, sizeof(p2), "%s/a_b.json", dir);
    write_file(p1, body);
    write_file(p2, body);
    set = tpl_load_dir(dir);
    CHECK(tpl_count(set) == 2);
    doc = openapi_document(set, NULL, NULL);
    a = json_object_get(json_object_get(json_object_get(doc, "paths"), "/workflow/a-b"), "post");
    b = json_object_get(json_object_get(json_object_get(doc, "paths"), "/workflow/a_b"), "post");
    CHECK(a != NULL && b != NULL);
    CHECK(strcmp(json_string_value(json_object_get(a, "operationId")),
                 json_string_value(json_object_get(b, "operationId"))) != 0);
    /* No required parameter: the body's input may be left out. */
    CHECK(json_object_get(json_object_get(json_object_get(
                              json_object_get(doc, "components"), "schemas"),
                                          "a-b.Request"),
                          "required") == NULL);
end:
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    json_decref(doc);
    tpl_set_free(set);
}

static void
test_no_templates(void)
{
    json_t *doc = openapi_document(NULL, NULL, NULL);

    CHECK(json_object_size(json_object_get(doc, "paths")) == 11);
    CHECK(bad_refs(doc, doc) == 0);
end:
    json_decref(doc);
}


/* The body schema of an operation (dereferenced), or NULL. */
static json_t *
body_schema(json_t *doc, json_t *op)
{
    return deref(doc, json_object_get(
                          json_object_get(json_object_get(json_object_get(op, "requestBody"),
                                                          "content"),
                                          JSON_MT),
                          "schema"));
}

/* The schema of one response's content (dereferenced), or NULL. */
static json_t *
response_schema(json_t *doc, json_t *op, const char *code, const char *media)
{
    json_t *r = deref(doc, json_object_get(json_object_get(op, "responses"), code));

    return deref(doc, json_object_get(json_object_get(json_object_get(r, "content"), media),
                                      "schema"));
}

static json_t *
op_at(json_t *doc, const char *path, const char *method)
{
    return json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);
}

static int
array_has(json_t *a, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(a, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

/* (a) webhook and webhook_v2 are accepted; the answer is then 202. */
static void
test_webhook_fields(void)
{
    struct tpl_set *set = tpl_load_dir("comfy-workflows");
    json_t *oi = object_info();
    json_t *doc = openapi_document(set, oi, NULL);
    json_t *url, *acc, *props;
    const char *ops[] = {"/prompt", "/workflow/sdxl/txt2img", "/workflow/sdxl/img2img",
                         "/workflow/sdxl/txt2img-with-refiner", NULL};
    int i;

    url = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                          "WebhookUrl");
    CHECK(url != NULL);
    CHECK_STR(json_string_value(json_object_get(url, "type")), "string");
    CHECK(strncmp(json_string_value(json_object_get(url, "pattern")),
                  "^[Hh][Tt][Tt][Pp][Ss]?://", 24) == 0);
    for (i = 0; ops[i] != NULL; i++) {
        json_t *op = op_at(doc, ops[i], "post"), *req = body_schema(doc, op), *f;
        const char *fields[] = {"webhook", "webhook_v2", NULL};
        int k;

        CHECK(req != NULL);
        CHECK(json_is_false(json_object_get(req, "additionalProperties")));
        for (k = 0; fields[k] != NULL; k++) {
            f = json_object_get(json_object_get(req, "properties"), fields[k]);
            CHECK(f != NULL);
            CHECK_STR(json_string_value(json_object_get(f, "$ref")),
                      "#/components/schemas/WebhookUrl");
            CHECK(json_is_string(json_object_get(f, "description")));
        }
        CHECK(!array_has(json_object_get(req, "required"), "webhook"));
        /* 202 {id, status: "ok", prompt, input?} */
        acc = response_schema(doc, op, "202", JSON_MT);
        CHECK(acc != NULL);
        if (i > 0) {
            /* allOf [Accepted, {required: [input], input: the template's Input}] */
            CHECK(json_array_size(json_object_get(acc, "allOf")) == 2);
            CHECK(array_has(json_object_get(json_array_get(json_object_get(acc, "allOf"), 1),
                                            "required"), "input"));
            acc = deref(doc, json_array_get(json_object_get(acc, "allOf"), 0));
        }
        props = json_object_get(acc, "properties");
        CHECK(array_has(json_object_get(acc, "required"), "id"));
        CHECK(array_has(json_object_get(acc, "required"), "status"));
        CHECK(array_has(json_object_get(acc, "required"), "prompt"));
        CHECK_STR(json_string_value(json_object_get(json_object_get(props, "status"), "const")),
                  "ok");
        CHECK(json_object_get(props, "input") != NULL);
        /* 200 can also be the event stream (Accept: text/event-stream). */
        CHECK(response_schema(doc, op, "200", "text/event-stream") != NULL);
        CHECK(response_schema(doc, op, "200", JSON_MT) != NULL);
    }
end:
    json_decref(doc);
    json_decref(oi);
    tpl_set_free(set);
}

/* (b) 409, 429 (Retry-After, queue_full, retry_after) and 504 on every
 * generation route. */
static void
test_conflict_limit_timeout_responses(void)
{
    struct tpl_set *set = tpl_load_dir("comfy-workflows");
    json_t *doc = openapi_document(set, NULL, NULL);
    json_t *err = json_object_get(json_object_get(json_object_get(doc, "components"),
                                                  "schemas"),
                                  "Error");
    const char *ops[] = {"/prompt", "/workflow/sdxl/txt2img", "/workflow/sdxl/img2img",
                         "/workflow/sdxl/txt2img-with-refiner", NULL};
    int i;

    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(err, "properties"), "retry_after"), "type")),
              "integer");
    CHECK(strstr(json_string_value(json_object_get(
                     json_object_get(json_object_get(err, "properties"), "error_type"),
                     "description")),
                 "queue_full") != NULL);
    for (i = 0; ops[i] != NULL; i++) {
        json_t *resp = json_object_get(op_at(doc, ops[i], "post"), "responses");
        json_t *r409 = deref(doc, json_object_get(resp, "409"));
        json_t *r429 = deref(doc, json_object_get(resp, "429"));
        json_t *r504 = deref(doc, json_object_get(resp, "504"));
        const char *d;

        CHECK(r409 != NULL && r429 != NULL && r504 != NULL);
        d = json_string_value(json_object_get(r409, "description"));
        CHECK(d != NULL && strstr(d, "cancelled") != NULL && strstr(d, "id_in_use") != NULL);
        d = json_string_value(json_object_get(r429, "description"));
        CHECK(d != NULL && strstr(d, "queue_full") != NULL && strstr(d, "retry_after") != NULL);
        CHECK(json_object_get(json_object_get(r429, "headers"), "Retry-After") != NULL);
        d = json_string_value(json_object_get(r504, "description"));
        CHECK(d != NULL && strstr(d, "queue_timeout") != NULL &&
              strstr(d, "execution_timeout") != NULL && strstr(d, "hang") != NULL);
        CHECK_STR(json_string_value(json_object_get(
                      response_schema(doc, op_at(doc, ops[i], "post"), "429", JSON_MT),
                      "type")),
                  "object");
    }
end:
    json_decref(doc);
    tpl_set_free(set);
}

/* (c) the job routes, /interrupt, /metrics and the pages. */
static void
test_job_and_page_routes(void)
{
    json_t *doc = openapi_document(NULL, NULL, NULL);
    json_t *op, *s, *params;
    size_t i;
    int has_images = 0, has_previews = 0;

    /* GET and DELETE /prompt/{id}, with the path parameter */
    params = json_object_get(json_object_get(json_object_get(doc, "paths"), "/prompt/{id}"),
                             "parameters");
    CHECK(json_array_size(params) == 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(params, 0), "in")), "path");
    CHECK_STR(json_string_value(json_object_get(json_array_get(params, 0), "name")), "id");
    CHECK(json_is_true(json_object_get(json_array_get(params, 0), "required")));
    op = op_at(doc, "/prompt/{id}", "get");
    CHECK(op != NULL);
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(op,
                                                                               "parameters"),
                                                               0),
                                                "name")),
              "images");
    s = response_schema(doc, op, "200", JSON_MT);
    CHECK(s != NULL);
    CHECK(json_array_size(json_object_get(json_object_get(json_object_get(s, "properties"),
                                                          "status"),
                                          "enum")) == 5);
    CHECK(array_has(json_object_get(json_object_get(json_object_get(s, "properties"),
                                                    "status"),
                                    "enum"),
                    "cancelled"));
    CHECK(json_object_get(json_object_get(s, "properties"), "queue_position") != NULL);
    CHECK(json_object_get(json_object_get(s, "properties"), "progress") != NULL);
    CHECK(json_object_get(json_object_get(s, "properties"), "webhook") != NULL);
    CHECK(json_object_get(json_object_get(s, "properties"), "images") != NULL);
    CHECK(json_object_get(json_object_get(op, "responses"), "404") != NULL);
    op = op_at(doc, "/prompt/{id}", "delete");
    CHECK(op != NULL);
    CHECK(response_schema(doc, op, "200", JSON_MT) == s);
    CHECK(json_object_get(json_object_get(op, "responses"), "404") != NULL);
    CHECK(json_object_get(json_object_get(op, "responses"), "409") != NULL);
    /* the event stream */
    op = op_at(doc, "/prompt/{id}/events", "get");
    CHECK(op != NULL);
    CHECK(response_schema(doc, op, "200", "text/event-stream") != NULL);
    CHECK(response_schema(doc, op, "200", JSON_MT) == NULL);
    json_array_foreach(json_object_get(op, "parameters"), i, s) {
        has_images |= strcmp(json_string_value(json_object_get(s, "name")), "images") == 0;
        has_previews |= strcmp(json_string_value(json_object_get(s, "name")), "previews") == 0;
    }
    CHECK(has_images && has_previews);
    /* POST /interrupt {id}: 200 success, 404 failed */
    op = op_at(doc, "/interrupt", "post");
    CHECK(op != NULL);
    s = body_schema(doc, op);
    CHECK(array_has(json_object_get(s, "required"), "id"));
    s = response_schema(doc, op, "200", JSON_MT);
    CHECK(s != NULL && s == response_schema(doc, op, "404", JSON_MT));
    CHECK(array_has(json_object_get(json_object_get(json_object_get(s, "properties"),
                                                    "interrupted"),
                                    "enum"),
                    "success"));
    CHECK(array_has(json_object_get(json_object_get(json_object_get(s, "properties"),
                                                    "interrupted"),
                                    "enum"),
                    "failed"));
    /* /metrics, /, /docs */
    CHECK(response_schema(doc, op_at(doc, "/metrics", "get"), "200", "text/plain") != NULL);
    CHECK(response_schema(doc, op_at(doc, "/", "get"), "200", "text/html") != NULL);
    CHECK(json_object_get(json_object_get(op_at(doc, "/", "get"), "responses"), "404") != NULL);
    CHECK(response_schema(doc, op_at(doc, "/docs", "get"), "200", "text/html") != NULL);
    CHECK(bad_refs(doc, doc) == 0);
end:
    json_decref(doc);
}

/* Every enum property with a default has the default in its enum; every
 * example value of an enum property is in the enum. Returns the number of
 * violations (printed). */
static int
inconsistent_defaults(json_t *doc)
{
    json_t *schemas = json_object_get(json_object_get(doc, "components"), "schemas");
    json_t *paths = json_object_get(doc, "paths"), *item, *sch, *p;
    const char *name, *prop, *path;
    int bad = 0;

    json_object_foreach(schemas, name, sch) {
        json_object_foreach(json_object_get(sch, "properties"), prop, p) {
            json_t *e = json_object_get(p, "enum"), *d = json_object_get(p, "default"), *v;
            size_t i;
            int found = 0;

            if (e == NULL || d == NULL)
                continue;
            json_array_foreach(e, i, v) found |= json_equal(v, d);
            if (!found) {
                fprintf(stderr, "  %s.%s: default not in enum\n", name, prop);
                bad++;
            }
        }
    }
    json_object_foreach(paths, path, item) {
        json_t *op = json_object_get(item, "post"), *req, *input, *ex, *v;

        if (strncmp(path, "/workflow/", 10) != 0 || op == NULL)
            continue;
        req = body_schema(doc, op);
        input = deref(doc, json_object_get(json_object_get(req, "properties"), "input"));
        ex = json_object_get(
            json_object_get(json_object_get(
                                json_object_get(json_object_get(json_object_get(
                                                                    op, "requestBody"),
                                                                "content"),
                                                JSON_MT),
                                "examples"),
                            "defaults"),
            "value");
        json_object_foreach(json_object_get(ex, "input"), prop, v) {
            json_t *e = json_object_get(json_object_get(json_object_get(input, "properties"),
                                                        prop),
                                        "enum"), *x;
            size_t i;
            int found = 0;

            if (e == NULL)
                continue;
            json_array_foreach(e, i, x) found |= json_equal(x, v);
            if (!found) {
                fprintf(stderr, "  %s example: %s not in enum\n", path, prop);
                bad++;
            }
        }
    }
    return bad;
}

/* (d) a live list without the template's default: no default, a valid
 * example, and the descriptions say why. */
static void
test_default_not_installed(void)
{
    struct tpl_set *set = tpl_load_dir("comfy-workflows");
    json_t *oi = object_info(), *doc = NULL, *doc2 = NULL, *input, *ck, *sampler, *op, *ex;
    json_t *ckpts;
    const char *d;
    struct req_error err;
    json_t *g = NULL, *f = NULL;

    CHECK(oi != NULL);
    /* The golden object_info has the shipped checkpoints: all consistent. */
    doc = openapi_document(set, oi, NULL);
    CHECK(inconsistent_defaults(doc) == 0);
    input = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                            "sdxl.txt2img.Input");
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(input, "properties"), "checkpoint"),
                  "default")),
              "sd_xl_base_1.0.safetensors");
    /* ComfyUI has only my_base.safetensors. */
    ckpts = json_object_get(json_object_get(json_object_get(json_object_get(
                                                                oi, "CheckpointLoaderSimple"),
                                                            "input"),
                                            "required"),
                            "ckpt_name");
    CHECK(json_is_array(json_array_get(ckpts, 0)));
    CHECK(json_array_set_new(ckpts, 0, json_pack("[s]", "my_base.safetensors")) == 0);
    doc2 = openapi_document(set, oi, NULL);
    CHECK(bad_refs(doc2, doc2) == 0);
    CHECK(inconsistent_defaults(doc2) == 0);
    input = json_object_get(json_object_get(json_object_get(doc2, "components"), "schemas"),
                            "sdxl.txt2img.Input");
    ck = json_object_get(json_object_get(input, "properties"), "checkpoint");
    CHECK(json_array_size(json_object_get(ck, "enum")) == 1);
    CHECK_STR(json_string_value(json_array_get(json_object_get(ck, "enum"), 0)),
              "my_base.safetensors");
    CHECK(json_object_get(ck, "default") == NULL);
    d = json_string_value(json_object_get(ck, "description"));
    CHECK(d != NULL);
    CHECK(strstr(d, "Checkpoint of the model") == d);
    CHECK(strstr(d, "`sd_xl_base_1.0.safetensors`") != NULL);
    CHECK(strstr(d, "not installed") != NULL);
    CHECK(strstr(d, "does not offer it right now") == NULL); /* one note, not two */
    /* other enum properties keep their defaults */
    sampler = json_object_get(json_object_get(input, "properties"), "sampler_name");
    CHECK_STR(json_string_value(json_object_get(sampler, "default")), "euler");
    /* the example uses an installed checkpoint, and the template accepts it */
    op = op_at(doc2, "/workflow/sdxl/txt2img", "post");
    ex = json_object_get(json_object_get(json_object_get(json_object_get(json_object_get(
                                                                             json_object_get(
                                                                                 op,
                                                                                 "requestBody"),
                                                                             "content"),
                                                                         JSON_MT),
                                                         "examples"),
                                         "defaults"),
                         "value");
    CHECK_STR(json_string_value(json_object_get(json_object_get(ex, "input"), "checkpoint")),
              "my_base.safetensors");
    CHECK(tpl_render(tpl_find(set, "sdxl/txt2img"), json_object_get(ex, "input"), oi,
                     fixed_rand, NULL, &g, &f, &err) == 0);
    /* the operation's description says it under the parameter table */
    d = json_string_value(json_object_get(op, "description"));
    CHECK(strstr(d, "**Not installed in ComfyUI:** `sd_xl_base_1.0.safetensors`, the default "
                    "of `checkpoint`") != NULL);
    /* every template with that enum says it; a free string parameter
     * (refiner_checkpoint) has no list to contradict */
    d = json_string_value(json_object_get(op_at(doc2, "/workflow/sdxl/txt2img-with-refiner",
                                                "post"),
                                          "description"));
    CHECK(strstr(d, "the default of `checkpoint`") != NULL);
    CHECK(strstr(d, "the default of `refiner_checkpoint`") == NULL);
    d = json_string_value(json_object_get(op_at(doc2, "/workflow/sdxl/img2img", "post"),
                                          "description"));
    CHECK(strstr(d, "the default of `checkpoint`") != NULL);
    /* with the shipped checkpoints there is nothing to say */
    d = json_string_value(json_object_get(op_at(doc, "/workflow/sdxl/txt2img", "post"),
                                          "description"));
    CHECK(strstr(d, "Not installed") == NULL);
end:
    json_decref(g);
    json_decref(f);
    json_decref(doc);
    json_decref(doc2);
    json_decref(oi);
    tpl_set_free(set);
}

UNIT_TESTS(openapi_tests) = {
    {"openapi: every route, refs, ids, descriptions", test_document},
    {"openapi: workflow operation and examples", test_workflow_operation},
    {"openapi: operationIds stay unique", test_operation_ids_unique},
    {"openapi: no templates", test_no_templates},
    {"openapi: webhook fields and the 202 answer", test_webhook_fields},
    {"openapi: 409, 429 and 504 answers", test_conflict_limit_timeout_responses},
    {"openapi: job routes, /interrupt, /metrics, pages", test_job_and_page_routes},
    {"openapi: a template default ComfyUI lacks", test_default_not_installed},
    {NULL, NULL},
};
