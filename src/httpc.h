/* httpc.h - outbound HTTP on the libevent loop (libcurl multi interface).
 *
 * The only module that knows libcurl. Every call is asynchronous; the done
 * callback runs on the libevent thread after the transfer finished, failed,
 * timed out or hit its size limit - exactly once, unless the call was
 * cancelled first. Nothing here blocks the loop. */
#ifndef SIDECAR_HTTPC_H
#define SIDECAR_HTTPC_H

#include <stddef.h>

struct event_base;
struct httpc;
struct httpc_call;

struct httpc_result {
    int ok;              /* 1 if an HTTP response was received (any status) */
    long status;         /* HTTP status, 0 if none */
    const char *error;   /* human-readable reason when !ok (or truncated) */
    int too_big;         /* body exceeded max_body; body holds the prefix */
    int timed_out;       /* the per-call timeout fired */
    unsigned char *body; /* response body, NUL-terminated, may be NULL if empty */
    size_t body_len;
    const char *content_type; /* may be NULL */
    double total_time_s; /* curl's total time */
    long retry_after_s;  /* Retry-After in seconds, -1 if absent */
    int blocked;         /* allow_addr refused a connection */
    int too_many_redirects;
};

/* The callback may take ownership of res->body by setting it to NULL; else it
 * is freed after the callback returns. res itself is borrowed. The call
 * handle is invalid once the callback starts. */
typedef void (*httpc_done_cb)(struct httpc_result *res, void *arg);

struct sockaddr;

/* One part of a multipart/form-data body (copied). */
struct httpc_part {
    const char *name;
    const char *filename;     /* NULL for a plain field */
    const char *content_type; /* NULL: curl's default */
    const void *data;
    size_t len;
};

struct httpc_request {
    const char *method;       /* "GET", "POST", ... */
    const char *url;
    const char *content_type; /* for the body; NULL = none */
    const void *body;         /* copied; may be NULL */
    size_t body_len;
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated; may be NULL */
    long timeout_ms;          /* whole transfer; 0 = no limit */
    long connect_timeout_ms;  /* 0 = 10 s */
    size_t max_body;          /* response cap; 0 = 64 MiB */
    const struct httpc_part *parts; /* multipart/form-data body instead of body */
    size_t n_parts;
    int max_redirects;        /* > 0: follow up to this many (http/https only) */
    /* Every connection (redirects included) goes to an address this accepts,
     * checked after DNS and before connecting; NULL = any. */
    int (*allow_addr)(const struct sockaddr *sa, void *arg);
    void *allow_arg;
};

struct httpc *httpc_new(struct event_base *base);

/* Free: cancels every pending call without calling its callback. */
void httpc_free(struct httpc *h);

/* Start a request. Returns a handle usable with httpc_cancel until the
 * callback starts, or NULL if it could not even be started (then cb is NOT
 * called). Never calls cb synchronously. */
struct httpc_call *httpc_start(struct httpc *h, const struct httpc_request *req,
                               httpc_done_cb cb, void *arg);

/* Abort a pending call; its callback will not be called. Safe to call from
 * inside another call's callback. */
void httpc_cancel(struct httpc_call *call);

/* Number of calls in flight (for metrics and tests). */
int httpc_pending(const struct httpc *h);

#endif
