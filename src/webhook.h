/* webhook.h - delivery of job results to webhooks: comfyui-api's legacy
 * `webhook` (one unsigned output.complete per image) and `webhook_v2` (one
 * prompt.complete or prompt.failed, signed per Standard Webhooks), with a
 * time limit per attempt and retries with exponential backoff and jitter. */
#ifndef SIDECAR_WEBHOOK_H
#define SIDECAR_WEBHOOK_H

#include <stddef.h>

struct event_base;
struct httpc;
struct config;
struct job;
struct hooks;

/* -1 with a message naming WEBHOOK_SECRET if it is not base64. */
struct hooks *hooks_new(struct event_base *base, struct httpc *http,
                        const struct config *cfg, char *err, size_t errlen);

/* Abandon deliveries still in progress (logged) and free. */
void hooks_free(struct hooks *h);

/* Deliver the job's result to url when it finishes (v2: 1 = webhook_v2,
 * 0 = legacy webhook). The job is kept in the history until delivery ends;
 * its status shows the delivery. url is copied. */
void hook_start(struct hooks *h, struct job *job, int v2, const char *url);

int hooks_pending(const struct hooks *h);

/* The Standard Webhooks signature "v1,<base64 HMAC-SHA256(key,
 * "<msg_id>.<ts>.<body>")>" into out. key is the decoded secret. Pure. */
int hook_sign(const unsigned char *key, size_t keylen, const char *msg_id,
              long long ts, const char *body, size_t len, char *out,
              size_t outlen);

/* The URL as logged: scheme, host and path, without user info or query. */
void hook_url_for_log(const char *url, char *out, size_t outlen);

#endif
