/* fuzz_comfy_msg.c - what ComfyUI sends us (src/comfy_msg.h).
 *
 * Every input goes through all four entry points, since the same bytes may
 * be a websocket text frame, a binary frame or a POST /prompt 400 body:
 *   - cmsg_parse: accepted only for {"type": string, "data": object}; the
 *     kind matches the type name; prompt_id, node and the numbers are the
 *     data's; an "executing" is either a node or the end; a rejected
 *     message leaves nothing owned;
 *   - cmsg_parse_preview: accepted only for types 1 and 4 of at least 8
 *     bytes; the image lies inside the frame and runs to its end; the ids
 *     are terminated strings ("" for type 1); the MIME type is one of two;
 *   - cmsg_validation_error: always returns an error body (it becomes our
 *     400 answer) with "error" and "location" strings, location "prompt"
 *     or "prompt.<...>", node_errors copied verbatim;
 *   - cmsg_execution_error on the parsed data (and on the whole document):
 *     always a body with error, location "prompt.<node>", error_type,
 *     node_id and node_type strings, for both interrupted and not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comfy_msg.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    return 0;
}

static const char *const kind_names[] = {
    [CMSG_STATUS] = "status",
    [CMSG_EXECUTION_START] = "execution_start",
    [CMSG_EXECUTION_CACHED] = "execution_cached",
    [CMSG_EXECUTING] = "executing",
    [CMSG_PROGRESS] = "progress",
    [CMSG_EXECUTED] = "executed",
    [CMSG_SUCCESS] = "execution_success",
    [CMSG_ERROR] = "execution_error",
    [CMSG_INTERRUPTED] = "execution_interrupted",
};

static int
str_in(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

static void
check_text(const uint8_t *data, size_t size)
{
    struct cmsg m;
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    json_t *type = json_object_get(doc, "type"), *d = json_object_get(doc, "data");
    int rc = cmsg_parse(data, size, &m);
    size_t k;

    if (!json_is_string(type) || !json_is_object(d)) {
        FUZZ_CHECK(rc == -1, "accepted a message without type string and data object");
        FUZZ_CHECK(m.root == NULL && m.data == NULL, "rejected message left a root");
        json_decref(doc);
        return;
    }
    FUZZ_CHECK(rc == 0, "refused a {type, data} message");
    FUZZ_CHECK(json_is_object(m.root) && m.data == json_object_get(m.root, "data"),
               "root/data mismatch");
    for (k = 1; k < sizeof(kind_names) / sizeof(kind_names[0]); k++)
        if (strcmp(json_string_value(type), kind_names[k]) == 0)
            break;
    if (k == CMSG_EXECUTING && m.kind == CMSG_OTHER)
        FUZZ_CHECK(!json_is_null(json_object_get(d, "node")) &&
                       !json_is_string(json_object_get(d, "node")),
                   "executing with a node or null demoted to OTHER");
    else if (k < sizeof(kind_names) / sizeof(kind_names[0]))
        FUZZ_CHECK(m.kind == (enum cmsg_kind)k, "type %s parsed as kind %d",
                   kind_names[k], m.kind);
    else
        FUZZ_CHECK(m.kind == CMSG_OTHER, "unknown type parsed as kind %d", m.kind);
    if (m.prompt_id != NULL)
        FUZZ_CHECK(strcmp(m.prompt_id, json_string_value(json_object_get(d, "prompt_id"))) == 0,
                   "prompt_id is not the data's");
    else
        FUZZ_CHECK(!json_is_string(json_object_get(d, "prompt_id")), "prompt_id lost");
    switch (m.kind) {
    case CMSG_EXECUTING:
        FUZZ_CHECK(m.node_null != (m.node != NULL), "executing: node_null %d, node %p",
                   m.node_null, (const void *)m.node);
        break;
    case CMSG_PROGRESS:
        if (json_is_integer(json_object_get(d, "value")))
            FUZZ_CHECK(m.value == (int)json_integer_value(json_object_get(d, "value")),
                       "progress value");
        break;
    case CMSG_EXECUTION_CACHED:
        FUZZ_CHECK(m.n_cached >= 0 &&
                       (size_t)m.n_cached == json_array_size(json_object_get(d, "nodes")),
                   "n_cached");
        break;
    case CMSG_ERROR: {
        const char *xt = json_string_value(json_object_get(d, "exception_type"));
        FUZZ_CHECK(m.blocked == (xt != NULL && strcmp(xt, "ExecutionBlocked") == 0),
                   "blocked flag");
        break;
    }
    default:
        break;
    }
    cmsg_clear(&m);
    FUZZ_CHECK(m.root == NULL && m.data == NULL && m.prompt_id == NULL, "cmsg_clear");
    json_decref(doc);
}

static void
check_exec_error(json_t *data, int interrupted)
{
    json_t *e = cmsg_execution_error(data, interrupted);
    const char *loc;
    char shown[200];

    if (e == NULL && !fuzz_check_utf8())
        return; /* the known finding: invalid UTF-8 after truncation */
    FUZZ_CHECK(e != NULL, "cmsg_execution_error(%s, %d) returned NULL (no 500 body); "
               "node_id %s",
               json_is_object(data) ? "object" : "non-object", interrupted,
               json_is_string(json_object_get(data, "node_id"))
                   ? fuzz_show(shown, sizeof(shown),
                               json_string_value(json_object_get(data, "node_id")),
                               json_string_length(json_object_get(data, "node_id")))
                   : "-");
    loc = json_string_value(json_object_get(e, "location"));
    FUZZ_CHECK(json_is_string(json_object_get(e, "error")) && loc != NULL &&
                   strncmp(loc, "prompt.", 7) == 0,
               "execution error body lacks error/location");
    FUZZ_CHECK(json_is_string(json_object_get(e, "error_type")) &&
                   json_is_string(json_object_get(e, "node_id")) &&
                   json_is_string(json_object_get(e, "node_type")),
               "execution error body lacks error_type/node_id/node_type");
    if (!interrupted)
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(e, "error_type")),
                          cmsg_is_oom(data) ? "out_of_memory" : "execution_error") == 0,
                   "error_type does not match cmsg_is_oom");
    json_decref(e);
}

static void
check_validation_error(const uint8_t *data, size_t size)
{
    json_t *e = cmsg_validation_error(data, size);
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    const char *loc;
    char shown[300];

    if (e == NULL && !fuzz_check_utf8()) {
        json_decref(doc);
        return; /* the known finding: invalid UTF-8 in the text */
    }
    FUZZ_CHECK(e != NULL, "cmsg_validation_error returned NULL (no 400 body) for %s",
               fuzz_show(shown, sizeof(shown), data, size));
    loc = json_string_value(json_object_get(e, "location"));
    FUZZ_CHECK(json_is_string(json_object_get(e, "error")) && loc != NULL,
               "400 body lacks error/location");
    FUZZ_CHECK(strcmp(loc, "prompt") == 0 || strncmp(loc, "prompt.", 7) == 0,
               "location \"%s\" is not prompt[.<...>]", loc);
    if (json_is_object(doc) && json_is_object(json_object_get(doc, "node_errors")))
        FUZZ_CHECK(json_equal(json_object_get(e, "node_errors"),
                              json_object_get(doc, "node_errors")),
                   "node_errors not copied verbatim");
    json_decref(doc);
    json_decref(e);
}

static void
check_preview(const uint8_t *data, size_t size)
{
    struct cmsg_preview p;
    int rc = cmsg_parse_preview(data, size, &p);
    uint32_t type = size >= 4 ? (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
                                    (uint32_t)data[2] << 8 | data[3]
                              : 0;

    if (rc != 0) {
        FUZZ_CHECK(rc == -1, "cmsg_parse_preview returned %d", rc);
        FUZZ_CHECK(size < 8 || type != 1, "refused a type-1 frame of %zu bytes", size);
        return;
    }
    FUZZ_CHECK(size >= 8 && (type == 1 || type == 4), "accepted type %u, %zu bytes",
               type, size);
    FUZZ_CHECK(p.image >= data + 8 && p.image <= data + size &&
                   p.image + p.len == data + size,
               "image [%p, +%zu) outside the frame [%p, +%zu)", (const void *)p.image,
               p.len, (const void *)data, size);
    FUZZ_CHECK(str_in(p.prompt_id, sizeof(p.prompt_id)) && str_in(p.node, sizeof(p.node)),
               "ids not terminated");
    FUZZ_CHECK(p.mime != NULL &&
                   (strcmp(p.mime, "image/png") == 0 || strcmp(p.mime, "image/jpeg") == 0),
               "mime");
    if (type == 1)
        FUZZ_CHECK(p.prompt_id[0] == '\0' && p.node[0] == '\0', "type 1 with ids");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc;

    check_text(data, size);
    check_preview(data, size);
    check_validation_error(data, size);
    doc = json_loadb((const char *)data, size, 0, NULL);
    if (doc != NULL) {
        json_t *d = json_object_get(doc, "data");
        check_exec_error(json_is_object(d) ? d : doc, 0);
        check_exec_error(json_is_object(d) ? d : doc, 1);
        json_decref(doc);
    }
    /* A binary frame's type-4 metadata is itself JSON: feed it on. */
    if (size > 8)
        check_text(data + 8, size - 8);
    return 0;
}
