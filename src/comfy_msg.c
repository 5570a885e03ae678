/* comfy_msg.c - parsing of ComfyUI's websocket messages and error reports
 * (see comfy_msg.h). Owns no state: what ComfyUI says goes in, plain structs
 * and our JSON error bodies come out. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "comfy_msg.h"
#include "log.h"
#include "request.h"
#include "utf8.h"

static const struct {
    const char *name;
    enum cmsg_kind kind;
} kinds[] = {
    {"status", CMSG_STATUS},
    {"execution_start", CMSG_EXECUTION_START},
    {"execution_cached", CMSG_EXECUTION_CACHED},
    {"executing", CMSG_EXECUTING},
    {"progress", CMSG_PROGRESS},
    {"executed", CMSG_EXECUTED},
    {"execution_success", CMSG_SUCCESS},
    {"execution_error", CMSG_ERROR},
    {"execution_interrupted", CMSG_INTERRUPTED},
};

static int
int_field(json_t *o, const char *key, int dflt)
{
    json_t *v = json_object_get(o, key);

    if (json_is_integer(v))
        return (int)json_integer_value(v);
    if (json_is_real(v))
        return (int)json_real_value(v);
    return dflt;
}

int
cmsg_parse(const unsigned char *text, size_t len, struct cmsg *m)
{
    const char *type;
    json_t *node, *ts;
    size_t i;

    memset(m, 0, sizeof(*m));
    m->queue_remaining = -1;
    m->root = json_loadb((const char *)text, len, 0, NULL);
    type = json_string_value(json_object_get(m->root, "type"));
    m->data = json_object_get(m->root, "data");
    if (type == NULL || !json_is_object(m->data)) {
        cmsg_clear(m);
        return -1;
    }
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(type, kinds[i].name) == 0)
            m->kind = kinds[i].kind;
    m->prompt_id = json_string_value(json_object_get(m->data, "prompt_id"));
    ts = json_object_get(m->data, "timestamp");
    m->timestamp = json_is_integer(ts) ? (long long)json_integer_value(ts) : 0;
    switch (m->kind) {
    case CMSG_STATUS:
        m->queue_remaining = int_field(
            json_object_get(json_object_get(m->data, "status"), "exec_info"),
            "queue_remaining", -1);
        break;
    case CMSG_EXECUTION_CACHED:
        m->n_cached = (int)json_array_size(json_object_get(m->data, "nodes"));
        break;
    case CMSG_EXECUTING:
        node = json_object_get(m->data, "node");
        m->node_null = json_is_null(node);
        m->node = json_string_value(node);
        if (!m->node_null && m->node == NULL)
            m->kind = CMSG_OTHER; /* neither a node nor the end */
        break;
    case CMSG_PROGRESS:
        m->node = json_string_value(json_object_get(m->data, "node"));
        m->value = int_field(m->data, "value", 0);
        m->max = int_field(m->data, "max", 0);
        break;
    case CMSG_ERROR: {
        /* An execution blocker reports an error but execution goes on. */
        const char *xt = json_string_value(json_object_get(m->data, "exception_type"));
        m->blocked = xt != NULL && strcmp(xt, "ExecutionBlocked") == 0;
        break;
    }
    default:
        break;
    }
    return 0;
}

void
cmsg_clear(struct cmsg *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
    m->queue_remaining = -1;
}

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int
cmsg_parse_preview(const unsigned char *frame, size_t len, struct cmsg_preview *p)
{
    uint32_t type;

    memset(p, 0, sizeof(*p));
    if (len < 8)
        return -1;
    type = be32(frame);
    if (type == 1) {
        p->mime = be32(frame + 4) == 2 ? "image/png" : "image/jpeg";
        p->image = frame + 8;
        p->len = len - 8;
        return 0;
    }
    if (type == 4) {
        uint32_t mlen = be32(frame + 4);
        json_t *meta;
        const char *s;

        if (mlen > len - 8)
            return -1;
        meta = json_loadb((const char *)frame + 8, mlen, 0, NULL);
        if (!json_is_object(meta)) {
            json_decref(meta);
            return -1;
        }
        s = json_string_value(json_object_get(meta, "prompt_id"));
        snprintf(p->prompt_id, sizeof(p->prompt_id), "%s", s != NULL ? s : "");
        s = json_string_value(json_object_get(meta, "node_id"));
        snprintf(p->node, sizeof(p->node), "%s", s != NULL ? s : "");
        s = json_string_value(json_object_get(meta, "image_type"));
        p->mime = s != NULL && strcmp(s, "image/png") == 0 ? "image/png" : "image/jpeg";
        json_decref(meta);
        p->image = frame + 8 + mlen;
        p->len = len - 8 - mlen;
        return 0;
    }
    return -1;
}

int
cmsg_is_oom(json_t *data)
{
    const char *xt = json_string_value(json_object_get(data, "exception_type"));
    const char *xm = json_string_value(json_object_get(data, "exception_message"));

    return (xt != NULL && strstr(xt, "OutOfMemory") != NULL) ||
           (xm != NULL && strstr(xm, "CUDA out of memory") != NULL);
}

/* The first node error, in node order, names the field to blame. */
json_t *
cmsg_validation_error(const unsigned char *body, size_t len)
{
    json_t *root = json_loadb((const char *)body, len, 0, NULL);
    json_t *e, *node_errors, *out;
    const char *type = "", *message = "", *details = "";
    const char *first_node = NULL, *key;
    char location[300] = "prompt", text[1024];
    json_t *v;

    if (root == NULL || !json_is_object(root)) {
        char esc[600];
        snprintf(text, sizeof(text), "ComfyUI rejected the prompt: %s",
                 log_escape(esc, sizeof(esc), body != NULL ? (const char *)body : "",
                            len > 500 ? 500 : len));
        out = json_pack("{s:s, s:s}", "error", utf8_fix(text), "location", "prompt");
        json_decref(root);
        return out;
    }
    e = json_object_get(root, "error");
    if (json_is_object(e)) {
        type = json_string_value(json_object_get(e, "type"));
        message = json_string_value(json_object_get(e, "message"));
        details = json_string_value(json_object_get(e, "details"));
    } else if (json_is_string(e)) {
        message = json_string_value(e);
    }
    type = type != NULL ? type : "";
    message = message != NULL ? message : "";
    details = details != NULL ? details : "";
    snprintf(text, sizeof(text), "ComfyUI rejected the prompt: %s%s%s", message,
             *details != '\0' ? ": " : "", details);

    node_errors = json_object_get(root, "node_errors");
    json_object_foreach(node_errors, key, v) {
        if (first_node == NULL || preq_node_cmp(key, first_node) < 0)
            first_node = key;
    }
    if (first_node != NULL) {
        json_t *ne = json_object_get(node_errors, first_node);
        json_t *e0 = json_array_get(json_object_get(ne, "errors"), 0);
        const char *cls = json_string_value(json_object_get(ne, "class_type"));
        const char *m = json_string_value(json_object_get(e0, "message"));
        const char *d = json_string_value(json_object_get(e0, "details"));
        const char *input = json_string_value(
            json_object_get(json_object_get(e0, "extra_info"), "input_name"));
        size_t n = strlen(text);

        if (input != NULL)
            snprintf(location, sizeof(location), "prompt.%.100s.inputs.%.100s",
                     first_node, input);
        else
            snprintf(location, sizeof(location), "prompt.%.100s", first_node);
        snprintf(text + n, sizeof(text) - n, "; node %s (%s): %s%s%s", first_node,
                 cls != NULL ? cls : "?", m != NULL ? m : "error",
                 d != NULL && *d != '\0' ? ": " : "", d != NULL ? d : "");
    } else if (strncmp(details, "Node ID '#", 10) == 0) {
        /* invalid_prompt names the node only in its details. */
        size_t l = strcspn(details + 10, "'");
        snprintf(location, sizeof(location), "prompt.%.*s", (int)l, details + 10);
    }
    out = json_pack("{s:s, s:s, s:s}", "error", utf8_fix(text), "location",
                    utf8_fix(location), "error_type", type);
    if (json_is_object(node_errors))
        json_object_set(out, "node_errors", node_errors);
    json_decref(root);
    return out;
}

json_t *
cmsg_execution_error(json_t *data, int interrupted)
{
    const char *node = json_string_value(json_object_get(data, "node_id"));
    const char *cls = json_string_value(json_object_get(data, "node_type"));
    const char *xtype = json_string_value(json_object_get(data, "exception_type"));
    const char *xmsg = json_string_value(json_object_get(data, "exception_message"));
    char location[200], text[1024], first[600];
    json_t *out;

    node = node != NULL ? node : "?";
    cls = cls != NULL ? cls : "?";
    snprintf(location, sizeof(location), "prompt.%.150s", node);
    if (interrupted) {
        snprintf(text, sizeof(text),
                 "the prompt was interrupted in ComfyUI at node %s (%s)", node, cls);
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "error", utf8_fix(text), "location",
                         utf8_fix(location), "error_type", "execution_interrupted",
                         "node_id", node, "node_type", cls);
    }
    xmsg = xmsg != NULL ? xmsg : "";
    xtype = xtype != NULL ? xtype : "";
    /* The message's first line is the exception; what follows is a tip. */
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(xmsg, "\n"), xmsg);
    if (cmsg_is_oom(data))
        snprintf(text, sizeof(text),
                 "ComfyUI ran out of memory at node %s (%s): %s", node, cls, first);
    else
        snprintf(text, sizeof(text), "ComfyUI failed at node %s (%s): %s%s%s",
                 node, cls, xtype, *xtype != '\0' ? ": " : "", first);
    out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "error", utf8_fix(text),
                    "location", utf8_fix(location), "error_type",
                    cmsg_is_oom(data) ? "out_of_memory" : "execution_error",
                    "node_id", node, "node_type", cls, "exception_type", xtype,
                    "exception_message", xmsg);
    return out;
}

