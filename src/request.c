/* request.c - POST /prompt body parsing and validation (see request.h).
 *
 * Owns the rules about what a client may send: the fields we know, the id
 * alphabet, the graph's shape, and the filename_prefix rewrite that puts the
 * request id in front of every output file name. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "request.h"
#include "utf8.h"
#include "util.h"

/* Fields comfyui-api accepts that we do not implement yet: refused with a
 * 400 naming them rather than silently dropped. */
static const char *const unimplemented[] = {
    "s3", "hf_upload", "azure_blob_upload", "http_upload", "credentials", NULL,
};

static void
set_err(struct req_error *err, int status, const char *loc, const char *fmt,
        ...) __attribute__((format(printf, 4, 5)));

static void
set_err(struct req_error *err, int status, const char *loc, const char *fmt,
        ...)
{
    va_list ap;

    err->status = status;
    snprintf(err->location, sizeof(err->location), "%s", loc);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    /* Quoted client text may have been cut mid-character. */
    utf8_fix(err->message);
    utf8_fix(err->location);
}

int
preq_url_ok(const char *s)
{
    const char *host;
    size_t i;

    if (strncasecmp(s, "http://", 7) == 0)
        host = s + 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        host = s + 8;
    else
        return 0;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
        return 0;
    for (i = 0; s[i] != '\0'; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return 0;
    return i <= 4096;
}

static int
take_url(json_t *root, const char *field, char **out, struct req_error *err)
{
    json_t *v = json_object_get(root, field);

    if (v == NULL)
        return 0;
    if (!json_is_string(v) || !preq_url_ok(json_string_value(v))) {
        set_err(err, 400, field, "\"%s\" must be an http:// or https:// URL", field);
        return -1;
    }
    *out = xstrdup(json_string_value(v));
    return 0;
}

int
preq_id_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
        if (n >= REQ_ID_MAX)
            return 0;
    }
    /* The id becomes part of file names, and ComfyUI's /view refuses any
     * name containing "..". */
    return n > 0 && strstr(s, "..") == NULL;
}

static int
all_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int
preq_node_cmp(const char *a, const char *b)
{
    int da = all_digits(a), db = all_digits(b);

    if (da && db) {
        size_t la, lb;

        while (*a == '0' && a[1] != '\0')
            a++;
        while (*b == '0' && b[1] != '\0')
            b++;
        la = strlen(a);
        lb = strlen(b);
        if (la != lb)
            return la < lb ? -1 : 1;
        return strcmp(a, b);
    }
    if (da != db)
        return da ? -1 : 1;
    return strcmp(a, b);
}

/* A prefix may name a subfolder but must stay inside the output folder;
 * and since ComfyUI's /view refuses any name containing "..", such a
 * prefix would make an image nobody can fetch. */
static int
prefix_safe(const char *p)
{
    return *p != '/' && *p != '\\' && strstr(p, "..") == NULL;
}

static json_t *
rewrite_prefix(const char *prefix, const char *id, int prepend)
{
    const char *slash = strrchr(prefix, '/');
    size_t dirlen = slash != NULL ? (size_t)(slash - prefix) + 1 : 0;
    const char *base = prefix + dirlen;
    size_t n = dirlen + strlen(id) + 1 + strlen(base) + 1;
    char *s = xmalloc(n);
    json_t *v;

    if (prepend && *base != '\0')
        snprintf(s, n, "%.*s%s_%s", (int)dirlen, prefix, id, base);
    else
        snprintf(s, n, "%.*s%s", (int)dirlen, prefix, id);
    v = json_string(s);
    free(s);
    return v;
}

int
preq_check_graph(json_t *prompt, const char *id, const struct req_options *opt,
                 struct req_error *err)
{
    const char *node_id;
    json_t *node;
    int outputs = 0;
    char loc[200];

    if (!json_is_object(prompt)) {
        set_err(err, 400, "prompt", "\"prompt\" must be an object of nodes");
        return -1;
    }
    if (json_object_size(prompt) == 0) {
        set_err(err, 400, "prompt", "\"prompt\" has no nodes");
        return -1;
    }
    if (opt->max_nodes > 0 && json_object_size(prompt) > opt->max_nodes) {
        set_err(err, 400, "prompt", "\"prompt\" has %zu nodes, more than the %zu allowed",
                json_object_size(prompt), opt->max_nodes);
        return -1;
    }
    json_object_foreach(prompt, node_id, node) {
        json_t *cls, *inputs, *fp;

        snprintf(loc, sizeof(loc), "prompt.%.150s", node_id);
        if (!json_is_object(node)) {
            set_err(err, 400, loc, "node \"%.150s\" must be an object", node_id);
            return -1;
        }
        cls = json_object_get(node, "class_type");
        if (!json_is_string(cls) || json_string_length(cls) == 0) {
            snprintf(loc, sizeof(loc), "prompt.%.150s.class_type", node_id);
            set_err(err, 400, loc, "node \"%.150s\" needs a \"class_type\" string",
                    node_id);
            return -1;
        }
        inputs = json_object_get(node, "inputs");
        if (inputs == NULL) {
            /* ComfyUI tolerates a node without inputs only if it needs none;
             * let it decide, but give it the object it expects. */
            json_object_set_new(node, "inputs", json_object());
            inputs = json_object_get(node, "inputs");
        } else if (!json_is_object(inputs)) {
            snprintf(loc, sizeof(loc), "prompt.%.150s.inputs", node_id);
            set_err(err, 400, loc, "\"inputs\" of node \"%.150s\" must be an object",
                    node_id);
            return -1;
        }
        /* ComfyUI's output nodes: savers have a filename_prefix (counted
         * below); the preview nodes (PreviewImage, PreviewAny...) do not. */
        if (strncmp(json_string_value(cls), "Preview", 7) == 0)
            outputs++;
        fp = json_object_get(inputs, "filename_prefix");
        if (json_is_string(fp)) {
            const char *p = json_string_value(fp);

            if (!prefix_safe(p)) {
                snprintf(loc, sizeof(loc), "prompt.%.150s.inputs.filename_prefix",
                         node_id);
                set_err(err, 400, loc,
                        "filename_prefix \"%.100s\" must stay inside the output "
                        "folder (no leading / and no ..)", p);
                return -1;
            }
            json_object_set_new(inputs, "filename_prefix",
                                rewrite_prefix(p, id, opt->prepend_filenames));
            outputs++;
        }
    }
    if (outputs == 0) {
        set_err(err, 400, "prompt",
                "Prompt must contain a node with a \"filename_prefix\" input, such "
                "as \"SaveImage\", or a preview node: nothing would come out of it");
        return -1;
    }
    return 0;
}

int
preq_parse(const char *body, size_t len, const struct req_options *opt,
           struct prompt_req *out, struct req_error *err)
{
    json_error_t jerr;
    json_t *root = NULL, *v;
    const char *key;
    int i, rc = -1;

    memset(out, 0, sizeof(*out));
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_err(err, 400, "body", "request body is not valid JSON: %s (line %d, column %d)",
                jerr.text, jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        set_err(err, 400, "body", "request body must be a JSON object");
        goto out;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, opt->workflow ? "input" : "prompt") == 0 ||
            strcmp(key, "id") == 0 || strcmp(key, "webhook") == 0 ||
            strcmp(key, "webhook_v2") == 0 || strcmp(key, "convert_output") == 0)
            continue;
        for (i = 0; unimplemented[i] != NULL; i++)
            if (strcmp(key, unimplemented[i]) == 0)
                break;
        if (*key == '\0')
            set_err(err, 400, "body", "a field has an empty name");
        else if (unimplemented[i] != NULL)
            set_err(err, 400, key, "\"%s\" is not supported by this server yet",
                    key);
        else
            set_err(err, 400, key, "unknown field \"%.100s\"", key);
        /* Report the unknown key even if it is not printable: location is
         * JSON-escaped when the answer is written. */
        goto out;
    }
    v = json_object_get(root, "id");
    if (v != NULL) {
        if (!json_is_string(v) || !preq_id_valid(json_string_value(v))) {
            set_err(err, 400, "id",
                    "\"id\" must be a string of 1 to %d letters, digits, "
                    "'-', '_' and '.' (no \"..\")", REQ_ID_MAX);
            goto out;
        }
        snprintf(out->id, sizeof(out->id), "%s", json_string_value(v));
    } else {
        util_uuid4(out->id);
    }
    if (take_url(root, "webhook", &out->webhook, err) < 0 ||
        take_url(root, "webhook_v2", &out->webhook_v2, err) < 0)
        goto out;
    v = json_object_get(root, "convert_output");
    if (v != NULL && !json_is_null(v)) {
        if (conv_parse(v, &out->convert, err) < 0)
            goto out;
        out->has_convert = 1;
    }
    if (opt->workflow) {
        /* The template renders and checks the graph; an absent input means
         * "all defaults". */
        v = json_object_get(root, "input");
        if (v != NULL && !json_is_object(v)) {
            set_err(err, 400, "input", "\"input\" must be an object");
            goto out;
        }
        out->input = v != NULL ? json_incref(v) : json_object();
        rc = 0;
        goto out;
    }
    v = json_object_get(root, "prompt");
    if (v == NULL || json_is_null(v)) {
        set_err(err, 400, "prompt", "\"prompt\" is required");
        goto out;
    }
    if (preq_check_graph(v, out->id, opt, err) < 0)
        goto out;
    out->prompt = json_incref(v);
    rc = 0;
out:
    if (rc < 0)
        preq_free(out);
    json_decref(root);
    return rc;
}

void
preq_free(struct prompt_req *r)
{
    json_decref(r->prompt);
    r->prompt = NULL;
    json_decref(r->input);
    r->input = NULL;
    free(r->webhook);
    free(r->webhook_v2);
    r->webhook = r->webhook_v2 = NULL;
}
