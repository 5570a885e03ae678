/* request.h - parse and validate a POST /prompt body (pure: no I/O).
 *
 * Turns the client's JSON into a checked graph with its filename prefixes
 * rewritten, or into a 4xx answer whose `location` names the culprit. Kept
 * free of libevent and libcurl so it can be unit-tested and fuzzed. */
#ifndef SIDECAR_REQUEST_H
#define SIDECAR_REQUEST_H

#include <jansson.h>
#include <stddef.h>

#include "convert.h"

#define REQ_ID_MAX 128

struct req_error {
    int status;         /* HTTP status, e.g. 400 */
    char message[512];
    char location[256];
};

struct prompt_req {
    char id[REQ_ID_MAX + 1];
    json_t *prompt;   /* owned: the graph with filename prefixes rewritten */
    char *webhook;    /* owned, may be NULL: legacy v1 webhook URL */
    char *webhook_v2; /* owned, may be NULL: signed v2 webhook URL */
    json_t *input;    /* owned, workflow requests only: the "input" object */
    int has_convert;  /* convert_output was given */
    struct conv_opts convert;
};

struct req_options {
    int prepend_filenames; /* PREPEND_FILENAMES */
    size_t max_nodes;      /* 0 = no limit */
    int workflow;          /* body is {input, ...} for a template, not {prompt} */
};

/* Parse body (len bytes, need not be NUL-terminated). On success fills out
 * (caller frees with preq_free) and returns 0; on failure fills err and
 * returns -1, leaving nothing to free. */
int preq_parse(const char *body, size_t len, const struct req_options *opt,
               struct prompt_req *out, struct req_error *err);

/* Validate and rewrite an already-parsed graph in place (used for warmup
 * graphs and by preq_parse). id is the request id used in prefixes. */
int preq_check_graph(json_t *prompt, const char *id,
                     const struct req_options *opt, struct req_error *err);

void preq_free(struct prompt_req *r);

/* 1 if s looks like an absolute http or https URL with a host and no
 * whitespace or control characters. */
int preq_url_ok(const char *s);

/* 1 if s is an acceptable request id: 1..128 of [A-Za-z0-9._-]. */
int preq_id_valid(const char *s);

/* Order of ComfyUI node ids: numeric ids numerically and before the others,
 * the others by strcmp. Returns <0, 0, >0. */
int preq_node_cmp(const char *a, const char *b);

#endif
