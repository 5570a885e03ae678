/* fuzz_request.c - POST /prompt and POST /workflow bodies (src/request.h).
 *
 * Each input is a request body, parsed three ways: a /prompt body with
 * PREPEND_FILENAMES on and no node limit, one with it off and at most 8
 * nodes, and a /workflow body (req_options.workflow = 1). Invariants:
 *   - success: the id is valid (preq_id_valid), equals the body's "id" when
 *     one was sent (else is a UUID); the webhooks are the body's and pass
 *     preq_url_ok; the graph is an object of nodes with a class_type string
 *     and an inputs object, within max_nodes, with an output (a node with a
 *     filename_prefix string or a Preview* class); every
 *     filename_prefix string kept its folder part and its last component
 *     starts with the id ("<id>_<base>" when prepending a non-empty base,
 *     else "<id>"), and contains no ".." and no leading '/'; workflow bodies
 *     yield an input object and no graph;
 *   - failure: status 4xx, non-empty location and message that make a JSON
 *     error body (valid UTF-8), nothing left to free;
 *   - preq_node_cmp is a consistent order over the graph's node ids. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "request.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int skip_emptyloc;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    skip_emptyloc = fuzz_known_skipped("emptyloc");
    return 0;
}

static int
sign(int x)
{
    return (x > 0) - (x < 0);
}

static int
is_uuid(const char *s)
{
    size_t i;

    if (strlen(s) != 36)
        return 0;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return s[14] == '4';
}

static void
check_failure(int rc, const struct prompt_req *r, const struct req_error *e,
              const char *what)
{
    FUZZ_CHECK(rc == -1, "%s: preq_parse returned %d", what, rc);
    FUZZ_CHECK(e->status >= 400 && e->status <= 499, "%s: status %d", what, e->status);
    FUZZ_CHECK(memchr(e->location, '\0', sizeof(e->location)) != NULL,
               "%s: unterminated location", what);
    FUZZ_CHECK(e->location[0] != '\0' || skip_emptyloc, "%s: empty location (%s)", what,
               e->message);
    FUZZ_CHECK(memchr(e->message, '\0', sizeof(e->message)) != NULL &&
                   e->message[0] != '\0',
               "%s: empty or unterminated message", what);
    if (fuzz_check_utf8()) {
        FUZZ_CHECK(fuzz_utf8_ok(e->location), "%s: location is not valid UTF-8: %s", what,
                   e->location);
        FUZZ_CHECK(fuzz_utf8_ok(e->message), "%s: message is not valid UTF-8: %s", what,
                   e->message);
        FUZZ_CHECK(fuzz_error_body_ok(e->message, e->location),
                   "%s: the error body cannot be built (location %s)", what, e->location);
    }
    FUZZ_CHECK(r->prompt == NULL && r->input == NULL && r->webhook == NULL &&
                   r->webhook_v2 == NULL,
               "%s: failure left something to free", what);
}

static void
check_webhook(const json_t *body, const char *field, const char *got)
{
    json_t *v = json_object_get(body, field);

    if (v == NULL) {
        FUZZ_CHECK(got == NULL, "%s set without being sent", field);
        return;
    }
    FUZZ_CHECK(got != NULL && json_is_string(v) && strcmp(got, json_string_value(v)) == 0,
               "%s differs from the body's", field);
    FUZZ_CHECK(preq_url_ok(got), "%s accepted but preq_url_ok says no", field);
}

/* The expected rewrite of one filename_prefix (orig) for id. */
static void
check_prefix(const char *node, const char *orig, const char *got, const char *id,
             int prepend)
{
    const char *slash = strrchr(orig, '/');
    size_t dirlen = slash != NULL ? (size_t)(slash - orig) + 1 : 0;
    const char *base = orig + dirlen;
    const char *gslash = strrchr(got, '/');
    const char *gbase = gslash != NULL ? gslash + 1 : got;
    size_t idlen = strlen(id);

    FUZZ_CHECK(strncmp(got, orig, dirlen) == 0 && (size_t)(gbase - got) == dirlen,
               "node %s: folder part of \"%s\" changed: \"%s\"", node, orig, got);
    FUZZ_CHECK(strncmp(gbase, id, idlen) == 0,
               "node %s: prefix \"%s\" does not start with id %s after its last '/'",
               node, got, id);
    if (prepend && *base != '\0')
        FUZZ_CHECK(gbase[idlen] == '_' && strcmp(gbase + idlen + 1, base) == 0,
                   "node %s: prefix \"%s\" is not <id>_%s", node, got, base);
    else
        FUZZ_CHECK(gbase[idlen] == '\0', "node %s: prefix \"%s\" is not the bare id",
                   node, got);
    FUZZ_CHECK(got[0] != '/' && got[0] != '\\' && strstr(got, "..") == NULL,
               "node %s: rewritten prefix \"%s\" leaves the output folder or has ..",
               node, got);
}

static void
check_graph(const json_t *orig_prompt, const struct prompt_req *r,
            const struct req_options *opt)
{
    const char *node_id, *prev = NULL;
    json_t *node;
    int outputs = 0;

    FUZZ_CHECK(json_is_object(r->prompt) && json_object_size(r->prompt) > 0,
               "accepted prompt is not a non-empty object");
    FUZZ_CHECK(opt->max_nodes == 0 || json_object_size(r->prompt) <= opt->max_nodes,
               "accepted %zu nodes with max_nodes %zu", json_object_size(r->prompt),
               opt->max_nodes);
    FUZZ_CHECK(json_object_size(r->prompt) == json_object_size(orig_prompt),
               "node count changed");
    json_object_foreach(r->prompt, node_id, node) {
        json_t *cls = json_object_get(node, "class_type");
        json_t *inputs = json_object_get(node, "inputs");
        json_t *fp = json_object_get(inputs, "filename_prefix");
        json_t *ofp = json_object_get(json_object_get(json_object_get(orig_prompt, node_id),
                                                      "inputs"),
                                      "filename_prefix");

        FUZZ_CHECK(json_is_object(node), "node %s is not an object", node_id);
        FUZZ_CHECK(json_is_string(cls) && json_string_length(cls) > 0,
                   "node %s has no class_type string", node_id);
        FUZZ_CHECK(json_is_object(inputs), "node %s has no inputs object", node_id);
        /* Output nodes: savers (a filename_prefix, below) and previews. */
        if (strncmp(json_string_value(cls), "Preview", 7) == 0)
            outputs++;
        if (json_is_string(fp)) {
            FUZZ_CHECK(json_is_string(ofp), "node %s: filename_prefix appeared", node_id);
            check_prefix(node_id, json_string_value(ofp), json_string_value(fp), r->id,
                         opt->prepend_filenames);
            outputs++;
        } else {
            FUZZ_CHECK(json_equal(fp, ofp) || (fp == NULL && ofp == NULL),
                       "node %s: a non-string filename_prefix changed", node_id);
        }
        /* preq_node_cmp orders node ids (comfy_msg uses it to pick the
         * first node error): reflexive and antisymmetric. */
        FUZZ_CHECK(preq_node_cmp(node_id, node_id) == 0, "cmp(%s, %s) != 0", node_id,
                   node_id);
        if (prev != NULL)
            FUZZ_CHECK(sign(preq_node_cmp(prev, node_id)) ==
                           -sign(preq_node_cmp(node_id, prev)),
                       "preq_node_cmp not antisymmetric on \"%s\", \"%s\"", prev, node_id);
        prev = node_id;
    }
    FUZZ_CHECK(outputs > 0, "accepted a graph without an output node");
}

static void
check_success(const json_t *body, const struct prompt_req *r, const struct req_options *opt)
{
    json_t *id = json_object_get(body, "id");

    FUZZ_CHECK(json_is_object(body), "accepted a body that is not a JSON object");
    FUZZ_CHECK(memchr(r->id, '\0', sizeof(r->id)) != NULL, "id not terminated");
    FUZZ_CHECK(preq_id_valid(r->id), "accepted id \"%s\" is not valid", r->id);
    if (id != NULL)
        FUZZ_CHECK(json_is_string(id) && strcmp(json_string_value(id), r->id) == 0,
                   "id \"%s\" is not the body's", r->id);
    else
        FUZZ_CHECK(is_uuid(r->id), "generated id \"%s\" is not a UUID v4", r->id);
    check_webhook(body, "webhook", r->webhook);
    check_webhook(body, "webhook_v2", r->webhook_v2);
#ifdef SIDECAR_CONVERT_H
    {
        /* convert_output (conv_parse): given iff not null, values in range. */
        json_t *co = json_object_get(body, "convert_output");
        const char *f = json_string_value(json_object_get(co, "format"));
        const struct conv_opts *c = &r->convert;

        FUZZ_CHECK(r->has_convert == (co != NULL && !json_is_null(co)),
                   "has_convert %d for convert_output %s", r->has_convert,
                   co == NULL ? "absent" : "given");
        if (r->has_convert) {
            FUZZ_CHECK(f != NULL && strcmp(c->ext, f) == 0, "ext \"%s\"", c->ext);
            FUZZ_CHECK(c->format == (f[0] == 'j' ? CONV_JPEG : f[0] == 'w' ? CONV_WEBP
                                                                              : CONV_PNG),
                       "format %d for \"%s\"", (int)c->format, f);
            FUZZ_CHECK(c->quality >= 1 && c->quality <= 100 && c->alpha_quality >= 0 &&
                           c->alpha_quality <= 100 && c->effort >= 0 && c->effort <= 6 &&
                           c->compression >= 0 && c->compression <= 9 &&
                           c->quant_table >= 0 && c->quant_table <= 8,
                       "convert option out of range");
        }
    }
#endif
    if (opt->workflow) {
        json_t *in = json_object_get(body, "input");
        FUZZ_CHECK(r->prompt == NULL, "workflow body produced a prompt");
        FUZZ_CHECK(json_is_object(r->input), "workflow input is not an object");
        FUZZ_CHECK(in == NULL ? json_object_size(r->input) == 0 : json_equal(in, r->input),
                   "workflow input differs from the body's");
    } else {
        FUZZ_CHECK(r->input == NULL, "/prompt body produced an input");
        check_graph(json_object_get(body, "prompt"), r, opt);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct req_options opts[] = {
        {.prepend_filenames = 1, .max_nodes = 0, .workflow = 0},
        {.prepend_filenames = 0, .max_nodes = 8, .workflow = 0},
        {.prepend_filenames = 1, .max_nodes = 0, .workflow = 1},
    };
    static const char *const names[] = {"/prompt prepend", "/prompt max_nodes=8",
                                        "/workflow"};
    /* An independent parse of the body, to compare against what came out. */
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    size_t i;

    for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        struct prompt_req r;
        struct req_error e;
        int rc;

        memset(&e, 0, sizeof(e));
        rc = preq_parse((const char *)data, size, &opts[i], &r, &e);
        if (rc == 0) {
            check_success(body, &r, &opts[i]);
            preq_free(&r);
        } else {
            check_failure(rc, &r, &e, names[i]);
        }
    }
    /* The helpers on their own, with whatever string the body holds. */
    if (json_is_object(body)) {
        const char *s = json_string_value(json_object_get(body, "webhook"));
        if (s != NULL)
            (void)preq_url_ok(s);
        s = json_string_value(json_object_get(body, "id"));
        if (s != NULL && preq_id_valid(s))
            FUZZ_CHECK(strlen(s) <= REQ_ID_MAX && strstr(s, "..") == NULL,
                       "preq_id_valid accepted \"%s\"", s);
    }
    json_decref(body);
    return 0;
}
