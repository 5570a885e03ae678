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
    CHECK(json_object_size(paths) == 8);
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
    CHECK(ops == 8);
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

    CHECK(json_object_size(json_object_get(doc, "paths")) == 5);
    CHECK(bad_refs(doc, doc) == 0);
end:
    json_decref(doc);
}

UNIT_TESTS(openapi_tests) = {
    {"openapi: every route, refs, ids, descriptions", test_document},
    {"openapi: workflow operation and examples", test_workflow_operation},
    {"openapi: operationIds stay unique", test_operation_ids_unique},
    {"openapi: no templates", test_no_templates},
    {NULL, NULL},
};
